// The start path and the warm pool: a start takes a parked instance (one channel send: the
// doorbell) or falls back to a FORK; the pool refills from the loop, a bounded number of FORKs at
// a time so that starts never queue behind more than max_refills_in_flight pool forks.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "plume/base/log.h"
#include "plume/fwp/template.h"
#include "template_protocol.h"
#include "template_wire.h"

namespace plume::fwp {
namespace {

// A parked instance wakes where it last ran. If that CPU is idle, the wake-up pays for bringing
// it out of idle (about 70 µs for a halted vCPU here, a C-state exit on metal) while this CPU,
// about to go back to its loop, runs it at once (wake-up preemption). So the instance is pinned
// here before the doorbell, and libplume restores the mask it parked with before the handler
// runs. Done here it costs the start a sched_setaffinity of another process (4–10 µs in this VM);
// so a pool instance is asked to park pinned to the CPU its FORK was sent from
// (kFlagParkOnCpu), and this is only called when the loop has moved since. An instance that
// never restores its mask only stays on one CPU, as it could have asked itself. Best effort: a
// CPU outside the instance's cpuset (EINVAL) leaves the wake-up to the scheduler.
void steer_wakeup_to(pid_t pid, int cpu) {
  if (cpu < 0 || pid <= 0) return;
  const size_t ncpus = static_cast<size_t>(cpu) + 1;
  cpu_set_t* set = CPU_ALLOC(ncpus);
  if (set == nullptr) return;
  const size_t bytes = CPU_ALLOC_SIZE(ncpus);
  CPU_ZERO_S(bytes, set);
  CPU_SET_S(static_cast<size_t>(cpu), bytes, set);
  (void)::sched_setaffinity(pid, bytes, set);
  CPU_FREE(set);
}

}  // namespace

bool Instance::consume_ready() {
  if (ready_) return true;
  if (!channel_) return false;
  wire::Ready r;
  std::byte buf[sizeof r];
  auto got = channel_->try_recv(buf);
  if (!got) return false;
  // The instance's first record must be its readiness; anything else is a broken instance,
  // treated as ready so its messages still flow (the record itself is dropped).
  ready_ = true;
  return true;
}

ChannelResult<size_t> Instance::recv(std::span<std::byte> buf, std::chrono::nanoseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ready_) {
    auto w = channel_->wait_readable(
        std::max(std::chrono::nanoseconds(0), deadline - std::chrono::steady_clock::now()));
    if (!w) return fail(w.error());
    (void)consume_ready();
  }
  return channel_->recv(buf, std::max(std::chrono::nanoseconds(0),
                                      deadline - std::chrono::steady_clock::now()));
}

ChannelResult<size_t> Instance::try_recv(std::span<std::byte> buf) {
  if (!channel_) return fail(ChannelError::empty);
  if (!ready_ && !consume_ready()) return fail(channel_->broken() ? ChannelError::corrupt : ChannelError::empty);
  return channel_->try_recv(buf);
}

ChannelResult<uint32_t> Instance::send_capacity() {
  if (!channel_) return 0u;
  auto free = channel_->send_capacity();
  if (!free.ok() || first_sent_) return free;
  // Held until the instance is set up: the start message and what was queued behind it.
  const size_t held = 1 + after_first_.size();
  return free.value() > held ? static_cast<uint32_t>(free.value() - held) : 0u;
}

std::vector<const Instance*> Template::parked() const {
  std::vector<const Instance*> out;
  out.reserve(pool_.size());
  for (uint64_t id : pool_) out.push_back(instances_.at(id).get());
  return out;
}

size_t Template::pool_ready() {
  size_t n = 0;
  for (uint64_t id : pool_) n += instances_.at(id)->consume_ready();
  return n;
}

SysResult<Template::SpareChannel> Template::make_spare_channel() {
  auto created = Channel::create(spec_.channel);
  if (!created) return fail(created.error());
  SpareChannel spare{std::move(*created), next_channel_serial_, 0};
  next_channel_serial_ = next_channel_serial_ == UINT32_MAX ? 1 : next_channel_serial_ + 1;
  // Staged now, off any start path; one that cannot be (no template yet, a full socket) is
  // staged by the FORK that uses it.
  if (phase_ == Phase::ready)
    (void)stage(spare.made.memfd.get(), spare.serial, spare.staged_generation);
  return spare;
}

SysResult<void> Template::stage(int memfd, uint32_t serial, uint32_t& staged_generation) {
  if (held_by_template(staged_generation)) return {};
  wire::Msg m;
  m.type = wire::Type::stage;
  m.channel = serial;
  if (int err = wire::send_msg(control_.get(), m, memfd); err != 0)
    return fail(SysError{"sendmsg", err, spec_.name + " stage channel " + std::to_string(serial)});
  staged_generation = stats_.generation;
  return {};
}

void Template::unstage(uint32_t serial) {
  wire::Msg m;
  m.type = wire::Type::unstage;
  m.channel = serial;
  // Lost only if the socket is full or broken: the template then holds the memfd until it dies.
  if (int err = wire::send_msg(control_.get(), m); err != 0)
    log::warn("fwp.template.unstage", {{"template", spec_.name},
                                       {"channel", std::to_string(serial)},
                                       {"error", std::strerror(err)}});
}

void Template::top_up_channels() {
  // A new template incarnation holds none of the channels made for the last one.
  if (phase_ == Phase::ready) {
    for (SpareChannel& spare : spare_channels_) {
      if (!stage(spare.made.memfd.get(), spare.serial, spare.staged_generation)) break;
    }
  }
  // Fewer than a quarter of them taken since the last top-up: keep half as many; none taken:
  // the minimum. The quarter leaves room to grow without doubling straight back.
  if (spares_taken_ < spare_channel_target_ / 4 && spare_channel_target_ > kMinSpareChannels) {
    const size_t half = std::max(spare_channel_target_ / 2, kMinSpareChannels);
    spare_channel_target_ = spares_taken_ == 0 ? kMinSpareChannels : half;
    while (spare_channels_.size() > spare_channel_target_) {
      SpareChannel& newest = spare_channels_.back();
      if (held_by_template(newest.staged_generation)) unstage(newest.serial);
      spare_channels_.pop_back();
    }
  }
  spares_taken_ = 0;
  // A quiet template is not topped up again by starts: look again after another refill_delay.
  if (spare_channel_target_ > kMinSpareChannels) kick_refill();
  while (spare_channels_.size() < spare_channel_target_) {
    auto spare = make_spare_channel();
    if (!spare) return;  // new_instance creates one itself, and reports the error
    spare_channels_.push_back(std::move(*spare));
  }
}

SysResult<Instance*> Template::new_instance(StartPath path) {
  if (spare_channels_.empty()) {
    // ~20 µs (memfd, seals, mapping, first pages) on the start path: keep more made ahead.
    auto spare = make_spare_channel();
    if (!spare) return fail(spare.error());
    spare_channels_.push_back(std::move(*spare));
    ++stats_.channels_made_on_demand;
    spare_channel_target_ = std::min(2 * spare_channel_target_, kMaxSpareChannels);
  }
  SpareChannel spare = std::move(spare_channels_.front());
  spare_channels_.pop_front();
  ++spares_taken_;
  auto inst = std::make_unique<Instance>();
  inst->id_ = next_id_++;
  inst->name_ = spec_.name + "#" + std::to_string(inst->id_);
  inst->path_ = path;
  inst->memfd_ = std::move(spare.made.memfd);
  inst->channel_serial_ = spare.serial;
  inst->staged_generation_ = spare.staged_generation;
  inst->channel_.emplace(std::move(spare.made.endpoint));
  if (spec_.capture_output) {
    // Ours non-blocking (drained from the loop), theirs blocking (a writer waits for room).
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return fail(sys_error("pipe2", inst->name_ + " stdout"));
    inst->stdout_.reset(out[0]);
    inst->stdout_peer_.reset(out[1]);
    if (::pipe2(err, O_CLOEXEC) != 0) return fail(sys_error("pipe2", inst->name_ + " stderr"));
    inst->stderr_.reset(err[0]);
    inst->stderr_peer_.reset(err[1]);
    (void)::fcntl(out[0], F_SETFL, O_NONBLOCK);
    (void)::fcntl(err[0], F_SETFL, O_NONBLOCK);
  }
  Instance* raw = inst.get();
  instances_.emplace(raw->id_, std::move(inst));
  return raw;
}

SysResult<void> Template::send_fork(Instance& inst) {
  wire::Msg m;
  m.type = wire::Type::fork;
  m.instance_id = inst.id_;
  m.flags = inst.want_start_ ? 0 : wire::kFlagForPool;
  // Only a pool instance announces its readiness (template_protocol.h, version 3).
  if (inst.want_start_) inst.ready_ = true;
  if (!inst.want_start_ && inst.spins_) m.flags |= wire::kFlagSpinWhileParked;
  // A sleeping pool instance parks pinned to this CPU: the start that takes it, usually from the
  // same CPU, then skips steer_wakeup_to's sched_setaffinity (~4 µs of the start here).
  if (!inst.want_start_ && !inst.spins_ && spec_.steer_wakeups) {
    const int cpu = ::sched_getcpu();
    if (cpu >= 0) {
      m.flags |= wire::kFlagParkOnCpu;
      m.park_cpu = cpu;
      inst.parks_on_cpu_ = cpu;
    }
  }
  if (inst.want_start_ && inst.first_sent_) m.flags |= wire::kFlagMessageQueued;
  m.channel = inst.channel_serial_;
  // Records are read in order: a STAGE sent now reaches the template before its FORK.
  auto staged = stage(inst.memfd_.get(), inst.channel_serial_, inst.staged_generation_);
  if (!staged) return fail(staged.error());
  if (int err = wire::send_msg(control_.get(), m, inst.stdout_peer_.get(), inst.stderr_peer_.get());
      err != 0)
    return fail(SysError{"sendmsg", err, inst.name_ + " fork"});
  inst.stdout_peer_.reset();  // the instance holds them now: EOF comes when it is gone
  inst.stderr_peer_.reset();
  inst.fork_sent_ = true;
  ++forks_in_flight_;
  if (inst.refill_) ++refills_in_flight_;
  return {};
}

void Template::pump_queued_forks() {
  while (phase_ == Phase::ready && !queued_forks_.empty()) {
    Instance* inst = instance(queued_forks_.front());
    // One SIGKILLed while queued is not forked at all: end_killed_before_fork ends it.
    if (inst == nullptr || inst->state_ != InstanceState::forking || inst->fork_sent_ ||
        inst->pending_signal_ == SIGKILL) {
      queued_forks_.pop_front();
      continue;
    }
    auto sent = send_fork(*inst);
    if (!sent) {
      if (sent.error().err == EAGAIN) return;  // the socket is full: the next wake-up retries
      queued_forks_.pop_front();
      finish(*inst, InstanceExit{ExitCause::lost, 0, 0, 0, 0, 0, sent.error().err});
      continue;
    }
    queued_forks_.pop_front();
  }
}

void Template::deliver_first(Instance& inst) {
  inst.state_ = InstanceState::running;
  inst.want_start_ = false;
  if (inst.first_sent_) return;
  inst.first_sent_ = true;
  // A fresh channel is empty: the first message always fits (its size was checked at start).
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  inst.rung_at_ns_ = static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
  (void)inst.channel_->send(inst.first_);
  inst.first_.clear();
  inst.first_.shrink_to_fit();
  for (const auto& msg : inst.after_first_) (void)inst.channel_->send(msg);
  inst.after_first_.clear();
}

ChannelResult<void> Instance::queue(std::span<const std::byte> msg) {
  if (msg.size() > channel_->geometry().max_message()) return fail(ChannelError::too_big);
  if (first_sent_) return channel_->send(msg);
  after_first_.emplace_back(msg.begin(), msg.end());
  return {};
}

SysResult<Instance*> Template::start_instance(std::span<const std::byte> first_message) {
  if (first_message.size() > spec_.channel.max_message())
    return fail(SysError{"start", EMSGSIZE, spec_.name + ": first message larger than a slot"});
  if (phase_ == Phase::dead) return fail(SysError{"start", ESRCH, spec_.name + ": template is gone"});
  ++stats_.starts;
  // Warm path: a ready spinning standby (no wake-up at all), else the most recently parked ready
  // instance, else the oldest parked one (it finishes its setup, then finds the message waiting:
  // still no fork). Newest first: a process parked for long is cold (caches, TLB, and in a
  // paravirtualised guest its shadow page tables), and waking it costs several times more:
  // ~9 µs after 2 ms parked, ~29 µs after 50 ms on this VM.
  if (!pool_.empty()) {
    auto pick = pool_.end();
    for (auto it = pool_.end(); it != pool_.begin();) {
      --it;
      Instance& candidate = *instances_.at(*it);
      if (!candidate.consume_ready()) continue;
      if (pick == pool_.end()) pick = it;
      if (candidate.spins_) {
        pick = it;
        break;
      }
    }
    if (pick == pool_.end()) pick = pool_.begin();
    Instance& inst = *instances_.at(*pick);
    pool_.erase(pick);
    // Only a ready instance has saved the mask it restores (see libplume's run_instance). A
    // spinner is running on another CPU already: pinning it here would only move it.
    if (inst.ready_ && !inst.spins_ && spec_.steer_wakeups) {
      if (const int here = ::sched_getcpu(); here != inst.parks_on_cpu_) steer_wakeup_to(inst.pid_, here);
    }
    inst.path_ = StartPath::pool;
    inst.first_.assign(first_message.begin(), first_message.end());
    deliver_first(inst);
    // Out of SCHED_IDLE: the spinner does it itself where it has RLIMIT_NICE 20, else only this
    // can; and one kept off a busy CPU (at SCHED_IDLE, it might wait long for a turn) runs soon.
    // After the doorbell: a running spinner sees the message meanwhile.
    if (inst.spins_) {
      const sched_param zero{};
      (void)::sched_setscheduler(inst.pid_, SCHED_OTHER, &zero);
    }
    ++stats_.pool_hits;
    kick_refill();
    return &inst;
  }
  // Cold(er) path: a template fork; queued while the template is not ready, never refused.
  ++stats_.pool_misses;
  auto made = new_instance(StartPath::fork);
  if (!made) return fail(made.error());
  Instance& inst = **made;
  inst.want_start_ = true;
  inst.first_.assign(first_message.begin(), first_message.end());
  if (spec_.cgroup_mode == InstanceCgroups::shared) {
    // Nothing to do between fork and handler: the message waits in the channel, so the instance
    // runs straight from its setup into the handler, without a round trip through plumed.
    deliver_first(inst);
    inst.state_ = InstanceState::forking;
    inst.want_start_ = true;
  }
  if (phase_ == Phase::ready && queued_forks_.empty()) {
    if (auto sent = send_fork(inst); !sent) {
      if (sent.error().err != EAGAIN) {
        instances_.erase(inst.id_);
        kick_refill();
        return fail(sent.error());
      }
      queued_forks_.push_back(inst.id_);
    }
  } else {
    queued_forks_.push_back(inst.id_);
  }
  kick_refill();  // tops up the spare channels this start used; after the FORK, not before it
  return &inst;
}

void Template::kick_refill() {
  if (refill_armed_) return;
  // refill_delay after the start, never 0 (a zero it_value disarms a timerfd).
  const auto delay = std::max(spec_.refill_delay, std::chrono::microseconds(1));
  itimerspec when{};
  when.it_value.tv_sec = static_cast<time_t>(delay.count() / 1000000);
  when.it_value.tv_nsec = static_cast<long>(delay.count() % 1000000) * 1000;
  if (::timerfd_settime(refill_kick_.get(), 0, &when, nullptr) != 0) {
    refill();  // cannot fail with a valid timerfd; never lose a refill if it does
    return;
  }
  refill_armed_ = true;
}

size_t Template::spinning_standbys_parked_or_forking() const {
  if (spinning_standbys() == 0) return 0;
  size_t n = 0;
  for (const auto& [id, inst] : instances_) {
    const bool waiting = inst->state_ == InstanceState::forking || inst->state_ == InstanceState::parked;
    if (inst->spins_ && waiting && !inst->dead_) ++n;
  }
  return n;
}

void Template::refill() {
  if (phase_ != Phase::ready) return;
  size_t spinning = spinning_standbys_parked_or_forking();
  while (pool_.size() + refills_in_flight_ < spec_.pool_size &&
         refills_in_flight_ < spec_.max_refills_in_flight) {
    auto made = new_instance(StartPath::pool);
    if (!made) return;  // out of memfds: the next event retries
    Instance& inst = **made;
    inst.refill_ = true;
    inst.spins_ = spinning < spinning_standbys();
    spinning += inst.spins_ ? 1 : 0;
    if (auto sent = send_fork(inst); !sent) {
      instances_.erase(inst.id_);
      return;
    }
  }
}

void Template::set_pool_size(size_t pool_size) {
  spec_.spinning_standbys = std::min(spec_.spinning_standbys, pool_size);
  spec_.pool_size = pool_size;
  trim_pool();
  refill();
}

void Template::trim_pool() {
  while (pool_.size() > spec_.pool_size) {
    const uint64_t id = pool_.front();
    pool_.pop_front();  // no start can take it from now on
    Instance& inst = *instances_.at(id);
    // Never started, so its exit is the pool's own business (finish() forgets it).
    if (auto killed = kill(id, SIGKILL); !killed)
      log::warn("fwp.pool.trim", {{"instance", inst.name_}, {"error", killed.error().message()}});
  }
}

}  // namespace plume::fwp
