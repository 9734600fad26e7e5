// An instance's life after the template forked it, and the public calls a handler makes.
#include <fcntl.h>
#include <sched.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "instance_filter.h"
#include "instance_scope.h"
#include "prefault.h"
#include "runtime.h"
#include "spinning_park.h"

namespace {

// A standalone run's instance. An instance of a template keeps its own in run_instance's frame:
// a global here would be one more copy-on-write page fault between fork() and the handler.
plume_instance g_standalone;

using plume::fwp::ChannelError;

long channel_errno(ChannelError e) {
  switch (e) {
    case ChannelError::timeout: return -ETIMEDOUT;
    case ChannelError::buffer_too_small:
    case ChannelError::too_big: return -EMSGSIZE;
    case ChannelError::full:
    case ChannelError::empty: return -EAGAIN;
    case ChannelError::corrupt: return -EPIPE;
  }
  return -EPIPE;
}

// The image's opcodes, R_DISABLED → restrictions → enabled. Returns 0 or an errno. Not inlined:
// its 4 KiB restriction table would widen run_instance's frame, and every instance, ring or not,
// would take a page fault on a stack page it never uses.
[[gnu::noinline]] int setup_ring(plume_instance& self, const plume::fwp::wire::Msg& config) {
  io_uring_params p{};
  p.flags = IORING_SETUP_R_DISABLED;
  if (int r = io_uring_queue_init_params(config.ring_entries, &self.ring, &p); r < 0) return -r;
  io_uring_restriction res[256];
  unsigned n = 0;
  for (unsigned op = 0; op < 256; ++op) {
    if (!config.ring_ops.has(static_cast<uint8_t>(op))) continue;
    res[n] = io_uring_restriction{};
    res[n].opcode = IORING_RESTRICTION_SQE_OP;
    res[n].sqe_op = static_cast<uint8_t>(op);
    ++n;
  }
  // No IORING_RESTRICTION_REGISTER_OP entries: every io_uring_register opcode is refused from now.
  if (int r = io_uring_register_restrictions(&self.ring, res, n); r < 0) return -r;
  if (int r = io_uring_enable_rings(&self.ring); r < 0) return -r;
  self.has_ring = true;
  return 0;
}

[[noreturn]] void die(const char* what, int err) {
  plume::libplume::diag(what, err);
  _exit(125);
}

}  // namespace

namespace plume::libplume {

void run_instance(const plume_app& app, const fwp::wire::Msg& config, uint64_t instance_id,
                  InstanceChannel channel_in, FromTemplate from_template, Parking parking,
                  uint64_t forked_at_ns) {
  const int scope_fd = from_template.scope_fd;
  const ParkMode park = parking.mode;
  const bool for_pool = park != ParkMode::none;
  // 1. Descriptors: the channel is mapped (or its inherited mapping checked), then every fd but
  //    stdio goes (the control socket, the template's other fds, other instances' staged memfds).
  uint64_t steps[8] = {};  // PLUME_FWP_TRACE: when each step ended
  int nsteps = 0;
  auto step = [&] { steps[nsteps++] = now_ns(); };
  step();  // the child runs
  const bool trace = from_template.trace;
  rusage ru0{};
  if (trace) ::getrusage(RUSAGE_SELF, &ru0);
  // Forked for a start: no longer background work. A pool instance does so before it parks.
  if (!for_pool && config.template_nice > 0) (void)::setpriority(PRIO_PROCESS, 0, 0);
  const fwp::ChannelGeometry geometry{config.slots, config.slot_size, 0};
  // Forked for a start, it uses the channel at once: see Channel::Attach::direct; the template
  // checked the header of the mapping it premapped (Channel::Attach::inherited).
  using Attach = fwp::Channel::Attach;
  const auto b = fwp::ChannelSide::b;
  auto channel = channel_in.premapped != nullptr
                     ? fwp::Channel::adopt(channel_in.premapped, channel_in.memfd, geometry, b,
                                           for_pool ? Attach::checked : Attach::inherited)
                     : fwp::Channel::attach(channel_in.memfd, geometry, b,
                                            for_pool ? Attach::checked : Attach::direct);
  if (!channel) die("instance: channel attach", channel.error().err);
  plume_instance self;  // lives as long as this frame, i.e. until the process exits
  self.channel.emplace(std::move(*channel));
  self.role = PLUME_ROLE_INSTANCE;
  self.id = instance_id;
  self.forked_at_ns = forked_at_ns;
  step();
  // The Landlock domain first: its ruleset is one of the fds about to go.
  if (scope_fd >= 0) {
    if (int err = enter_instance_scope(scope_fd); err != 0) die("instance: landlock", err);
  }
  // Open-ended: a descriptor an app's atfork handler opened in this child, or its signal
  // handler in the template, may sit above any bound the template could pass.
  if (::syscall(SYS_close_range, 3u, ~0u, 0u) != 0) die("instance: close_range", errno);
  // 2. Not dumpable, so that /proc/<pid>/mem, ptrace and process_vm_* by same-uid siblings fail:
  //    fork() copied the flag from the template (run_template), no syscall here.
  step();
  // 3. The ring, before the filter that refuses io_uring_setup.
  if (config.ring_entries != 0) {
    if (int err = setup_ring(self, config); err != 0) die("instance: io_uring setup", err);
  }
  step();
  // 4. The final filter (unless it entered its Landlock domain above): nobody but itself to
  //    signal, no more rings.
  if (scope_fd < 0 && (config.flags & fwp::wire::kFlagInstanceFilter)) {
    if (int err = load_instance_filter(::getpid()); err != 0) die("instance: seccomp", err);
  }
  step();
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  // 5. A pool instance parks for a while: it takes its page faults now, not after the doorbell
  //    (an instance forked for a start goes straight on). Then it announces readiness and sleeps
  //    on the channel until the first message arrives.
  // The supervisor may pin a parked instance to its own CPU just before the doorbell (a cheaper
  // wake-up than an idle CPU); this mask, taken before readiness is announced, is restored.
  cpu_set_t parked_mask;
  // (Never a spinner: it is already running elsewhere, and its start skips the syscall.)
  const bool have_mask = park == ParkMode::asleep && ::sched_getaffinity(0, sizeof parked_mask, &parked_mask) == 0;
  if (for_pool) {
    prefault_for_parking(reinterpret_cast<uintptr_t>(app.handler));
    if (config.template_nice > 0) (void)::setpriority(PRIO_PROCESS, 0, 0);
  }
  // Pinned where the supervisor is, so that it need not steer this wake-up itself (see
  // steer_wakeup_to); only to a CPU the instance may use anyway.
  if (have_mask && parking.cpu >= 0 && parking.cpu < CPU_SETSIZE && CPU_ISSET(parking.cpu, &parked_mask)) {
    cpu_set_t there;
    CPU_ZERO(&there);
    CPU_SET(parking.cpu, &there);
    (void)::sched_setaffinity(0, sizeof there, &there);
  }
  // Only a pool instance announces its readiness, and wakes the supervisor for it. Nobody waits
  // for a forked one's (its first message is queued already, and plumed learns its pid from the
  // template): the controller counts it ready from its FORK (template_protocol.h, version 3).
  if (for_pool) {
    const fwp::wire::Ready ready{0x59445252, ::getpid()};
    (void)self.channel->send(std::as_bytes(std::span(&ready, 1)), /*wake=*/true);
  }
  step();
  if (trace) {
    rusage ru1{};
    ::getrusage(RUSAGE_SELF, &ru1);
    std::fprintf(stderr,
                 "libplume: instance %llu setup us after fork(): child %.1f attach %.1f "
                 "fds+dumpable %.1f ring %.1f filter %.1f ready %.1f; page faults: %ld before "
                 "the first step, %ld during setup\n",
                 static_cast<unsigned long long>(instance_id),
                 static_cast<double>(steps[0] - forked_at_ns) / 1e3,
                 static_cast<double>(steps[1] - forked_at_ns) / 1e3,
                 static_cast<double>(steps[2] - forked_at_ns) / 1e3,
                 static_cast<double>(steps[3] - forked_at_ns) / 1e3,
                 static_cast<double>(steps[4] - forked_at_ns) / 1e3,
                 static_cast<double>(steps[5] - forked_at_ns) / 1e3, ru0.ru_minflt,
                 ru1.ru_minflt - ru0.ru_minflt);
  }
  if (park == ParkMode::spinning) {
    if (!park_spinning(*self.channel, trace)) die("instance: channel", EPIPE);
  } else if (!park_asleep(*self.channel)) {
    die("instance: channel", EPIPE);
  }
  if (have_mask) (void)::sched_setaffinity(0, sizeof parked_mask, &parked_mask);
  self.channel->set_spin(std::chrono::microseconds(5));
  plume_exit(&self, app.handler(&self));
}

plume_instance* standalone_instance() { return &g_standalone; }

}  // namespace plume::libplume

extern "C" {

plume_role plume_get_role(const plume_instance* self) { return self->role; }
uint64_t plume_instance_id(const plume_instance* self) { return self->id; }
uint64_t plume_forked_at_ns(const plume_instance* self) { return self->forked_at_ns; }

long plume_recv(plume_instance* self, void* buf, size_t cap, int64_t timeout_ns) {
  if (!self->channel) {
    ssize_t n;
    do n = ::read(0, buf, cap); while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    return n == 0 ? -EPIPE : n;
  }
  const auto span = std::span(static_cast<std::byte*>(buf), cap);
  for (;;) {
    const auto wait = timeout_ns < 0 ? std::chrono::nanoseconds(std::chrono::hours(1))
                                     : std::chrono::nanoseconds(timeout_ns);
    auto r = self->channel->recv(span, wait);
    if (r) return static_cast<long>(*r);
    if (r.error() == ChannelError::timeout && timeout_ns < 0) continue;
    return channel_errno(r.error());
  }
}

int plume_send_timeout(plume_instance* self, const void* msg, size_t len, int64_t timeout_ns) {
  if (!self->channel) {
    const char* p = static_cast<const char*>(msg);
    while (len > 0) {
      const ssize_t n = ::write(1, p, len);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return -errno;
      p += n;
      len -= static_cast<size_t>(n);
    }
    return 0;
  }
  const auto span = std::span(static_cast<const std::byte*>(msg), len);
  for (;;) {
    // A year at a time: send_wait's bound, which "forever" goes past.
    const auto wait = timeout_ns < 0 ? std::chrono::nanoseconds(std::chrono::hours(24 * 365))
                                     : std::chrono::nanoseconds(timeout_ns);
    auto r = self->channel->send_wait(span, wait);
    if (r) return 0;
    if (r.error() == ChannelError::timeout && timeout_ns < 0) continue;
    return static_cast<int>(channel_errno(r.error()));
  }
}

int plume_send(plume_instance* self, const void* msg, size_t len) { return plume_send_timeout(self, msg, len, -1); }

size_t plume_max_message(const plume_instance* self) {
  return self->channel ? self->channel->max_message() : 65536;
}

io_uring* plume_ring(plume_instance* self) { return self->has_ring ? &self->ring : nullptr; }

void plume_exit(plume_instance*, int code) {
  std::fflush(nullptr);
  _exit(code);
}

}  // extern "C"
