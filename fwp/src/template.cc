// Template: the keeper's spawn, the control protocol (with every field from the template checked)
// and instance lifecycle. The warm pool and the start path: template_pool.cc.
#include "plume/fwp/template.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <utility>

#include <cerrno>

#include "pidfd_info.h"
#include "plume/base/log.h"
#include "plume/fwp/spawn_service.h"
#include "plume/fwp/tenant_namespaces.h"
#include "template_wire.h"

namespace plume::fwp {
namespace {

// `cap` in our effective set (raw capget: one call, no libcap state).
bool holds_capability(int cap) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  return (data[cap / 32].effective >> (cap % 32)) & 1u;
}

// Whether spawn() can lend a child this hard limit (see RlimitLoan in spawner.cc). The spawn
// helper, when there is one, is a fork of ours with the same limits and capabilities.
bool can_lend_hard_limit(int resource, rlim_t hard) {
  rlimit own{};
  if (::getrlimit(resource, &own) != 0) return false;
  return own.rlim_max >= hard || holds_capability(CAP_SYS_RESOURCE);
}

ino_t pid_ns_of(pid_t pid) {
  struct stat st {};
  const std::string path = "/proc/" + std::to_string(pid) + "/ns/pid";
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_ino;
}

ExitStatus decode(int wait_status) {
  ExitStatus s;
  s.exited = WIFEXITED(wait_status);
  s.code = s.exited ? WEXITSTATUS(wait_status) : 0;
  s.signal = WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0;
  s.core_dumped = WIFSIGNALED(wait_status) && WCOREDUMP(wait_status);
  return s;
}

}  // namespace

const char* exit_cause_name(ExitCause cause) {
  switch (cause) {
    case ExitCause::exit: return "exit";
    case ExitCause::signal: return "signal";
    case ExitCause::oom: return "oom";
    case ExitCause::limit: return "limit";
    case ExitCause::lost: return "lost";
  }
  return "unknown";
}

Template::Template(TemplateSpec spec, Poller& poller, Events events)
    : spec_(std::move(spec)), poller_(poller), events_(std::move(events)) {}

SysResult<std::unique_ptr<Template>> Template::start(TemplateSpec spec, Poller& poller,
                                                     Events events) {
  if (const char* why = spec.channel.check(); why != nullptr && *why != '\0')
    return fail(plain_error("template", std::string("channel geometry: ") + why));
  if (spec.cgroup_mode == InstanceCgroups::own && spec.cgroups == nullptr)
    return fail(plain_error("template", "InstanceCgroups::own needs a CgroupManager"));
  if (spec.sandbox.seccomp == nullptr)
    return fail(plain_error("template", "the sandbox needs the image's compiled seccomp filter"));
  const bool joins = spec.sandbox.join_namespaces_of >= 0 || spec.tenant_namespaces != nullptr;
  if (joins && (spec.cgroups == nullptr || spec.template_cgroup.empty()))
    return fail(plain_error("template", "joining a tenant's namespaces needs the template's cgroup (to end its processes)"));
  std::unique_ptr<Template> t(new Template(std::move(spec), poller, std::move(events)));
  if (auto r = t->begin(); !r) return fail(r.error());
  return t;
}

SysResult<void> Template::begin() {
  // Before anything can start an instance: a start kicks it.
  refill_kick_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!refill_kick_) return fail(sys_error("timerfd_create", spec_.name));
  poller_.watch(refill_kick_.get(), [this] {
    uint64_t n;
    (void)!::read(refill_kick_.get(), &n, sizeof n);
    refill_armed_ = false;
    refill();
    top_up_channels();
    collect();
  });
  kills_due_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!kills_due_) return fail(sys_error("eventfd", spec_.name));
  poller_.watch(kills_due_.get(), [this] {
    uint64_t n;
    (void)!::read(kills_due_.get(), &n, sizeof n);
    end_killed_before_fork();
  });
  TenantNamespaces* ns = spec_.tenant_namespaces;
  if (ns != nullptr && ns->state() == TenantNamespaces::State::starting) {
    // The keeper must be cloned into the holder's namespaces: not before the holder runs.
    phase_ = Phase::waiting_namespaces;
    namespaces_waiter_ = ns->when_settled([this] { namespaces_settled(); });
    return {};
  }
  if (ns != nullptr) spec_.sandbox.join_namespaces_of = ns->pidfd();  // -1 if it failed: our own
  return spawn_keeper();
}

void Template::namespaces_settled() {
  namespaces_waiter_ = 0;
  spec_.sandbox.join_namespaces_of = spec_.tenant_namespaces->pidfd();  // -1 if it failed: our own
  if (auto r = spawn_keeper(); !r) keeper_spawn_failed(r.error().message());  // may destroy this: last
}

SysResult<void> Template::spawn_keeper() {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
    return fail(sys_error("socketpair", spec_.name));
  control_.reset(pair[0]);
  UniqueFd theirs(pair[1]);
  // Our end never blocks plumed: a template that stops reading only fills its own queue.
  if (::fcntl(control_.get(), F_SETFL, O_NONBLOCK) != 0) return fail(sys_error("fcntl", spec_.name));
  UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull) return fail(sys_error("open", "/dev/null"));
  UniqueFd binary;
  SandboxSpec sb = spec_.sandbox;
  if (!spec_.binary.empty()) {
    binary.reset(::open(spec_.binary.c_str(), O_RDONLY | O_CLOEXEC));
    if (!binary) return fail(sys_error("open", spec_.binary));
    // Granted as fd 4; the keeper closes it first thing.
    if (sb.argv.empty()) sb.argv.push_back("/proc/self/fd/4");
    else sb.argv[0] = "/proc/self/fd/4";
  }
  if (sb.argv.empty()) return fail(plain_error("template", "no binary and no argv"));
  if (sb.name.empty()) sb.name = spec_.name;
  sb.env.push_back("PLUME_FWP_ROLE=template");
  sb.granted_fds = {devnull.get(), spec_.stdout_fd >= 0 ? spec_.stdout_fd : devnull.get(),
                    spec_.stderr_fd >= 0 ? spec_.stderr_fd : devnull.get(), theirs.get()};
  if (binary) sb.granted_fds.push_back(binary.get());

  // RLIMIT_NICE 20 lets instances come back from the template's nice to 0 (never below). Raising
  // a hard limit takes CAP_SYS_RESOURCE in the initial user namespace, which the sandboxed child
  // no longer has (and prlimit on it is refused), so spawn() lends it for the clone.
  // Spinning standbys use it too: they can then leave SCHED_IDLE for nice 0 themselves.
  const bool lower = (spec_.refill_nice > 0 && spec_.refill_nice < 20) || spec_.spinning_standbys > 0;
  const bool nice_ok = lower && can_lend_hard_limit(RLIMIT_NICE, 20);
  if (nice_ok) sb.rlimits.push_back({RLIMIT_NICE, 20, 20});
  // A spinning standby at SCHED_IDLE must be brought back to SCHED_OTHER for its handler: by
  // itself (RLIMIT_NICE 20) or by us after the doorbell (CAP_SYS_NICE). Neither: none spins.
  spinning_allowed_ = nice_ok || holds_capability(CAP_SYS_NICE);
  if (spec_.spinning_standbys > 0 && !spinning_allowed_) {
    log::warn("fwp.template.no_spinning", {{"template", spec_.name},
                                           {"why", "neither CAP_SYS_NICE nor RLIMIT_NICE 20 to lend: "
                                                   "spinning standbys park asleep"}});
  }

  // Through the helper, the keeper is cloned while the caller's loop goes on (its descriptors
  // travel with the request). An outcome known at once (no helper, or it just died) is taken
  // here, as spawn()'s.
  std::optional<Result<Process, SpawnError>> at_once;
  if (spec_.spawner != nullptr) {
    auto sent = spec_.spawner->spawn_async(sb, [this](Result<Process, SpawnError> proc) {
      keeper_request_ = 0;
      if (proc) return adopt_keeper(std::move(*proc));
      keeper_spawn_failed(proc.error().message());  // may destroy this Template: last
    });
    keeper_request_ = sent.ticket;
    at_once = std::move(sent.answered);
  } else {
    at_once.emplace(spawn(sb));
  }
  if (at_once) {
    if (!*at_once) return fail(plain_error("spawn", at_once->error().message()));
    adopt_keeper(std::move(**at_once));
  }

  wire::Msg config;
  config.type = wire::Type::config;
  config.slots = spec_.channel.slots;
  config.slot_size = spec_.channel.slot_size;
  if (!spec_.io_uring_ops.empty()) {
    config.ring_entries = spec_.io_uring_entries;
    for (uint8_t op : spec_.io_uring_ops) config.ring_ops.add(op);
  }
  switch (spec_.isolation) {
    case InstanceIsolation::seccomp_filter: config.flags = wire::kFlagInstanceFilter; break;
    case InstanceIsolation::landlock_scope:
      config.flags = wire::kFlagInstanceLandlock | wire::kFlagInstanceFilter;
      break;
    case InstanceIsolation::none: config.flags = 0; break;
  }
  if (spec_.huge_text) config.flags |= wire::kFlagHugeText;
  config.template_nice = nice_ok && spec_.refill_nice > 0 && spec_.refill_nice < 20 ? spec_.refill_nice : 0;
  if (int err = wire::send_msg(control_.get(), config); err != 0)
    return fail(SysError{"sendmsg", err, spec_.name + " config"});

  phase_ = Phase::spawning;
  return {};
}

void Template::adopt_keeper(Process keeper) {
  keeper_ = std::move(keeper);
  pid_ns_ = pid_ns_of(keeper_.pid);
  poller_.watch(keeper_.status_fd.get(), [this] { on_exec_status(); });
  poller_.watch(keeper_.pidfd.get(), [this] { on_keeper_exit(); });
  // Only now: the template's hello is checked against the keeper (its parent); until then the
  // control socket just queues it.
  poller_.watch(control_.get(), [this] { on_control(); });
  control_watched_ = true;
}

void Template::keeper_spawn_failed(const std::string& why) {
  log::error("fwp.template.spawn_failed", {{"template", spec_.name}, {"error", why}});
  phase_ = Phase::dead;
  lose_all("spawn failed: " + why);
  if (events_.failed) events_.failed("spawn failed: " + why);
}

Template::~Template() {
  // Still being cloned: the helper's answer will find nobody, and its keeper is ended then.
  if (keeper_request_ != 0 && spec_.spawner != nullptr) spec_.spawner->cancel(keeper_request_);
  if (namespaces_waiter_ != 0) spec_.tenant_namespaces->forget(namespaces_waiter_);
  if (keeper_.status_fd) poller_.unwatch(keeper_.status_fd.get());
  if (keeper_.pidfd) poller_.unwatch(keeper_.pidfd.get());
  if (control_watched_) poller_.unwatch(control_.get());
  if (refill_kick_) poller_.unwatch(refill_kick_.get());
  if (kills_due_) poller_.unwatch(kills_due_.get());
  if (template_pidfd_) poller_.unwatch(template_pidfd_.get());
  for (auto& [id, inst] : instances_) {
    if (inst->pidfd_) poller_.unwatch(inst->pidfd_.get());
  }
  // In namespaces of its own the keeper is pid 1, and its death kills every process in them; in a
  // tenant's shared ones (TemplateSpec::sandbox.join_namespaces_of) the cgroup is what holds
  // the template's processes together.
  if ((keeper_.pidfd || keeper_request_ != 0) && shares_namespaces()) end_processes();
  if (keeper_.pidfd && phase_ != Phase::dead) {
    ::syscall(SYS_pidfd_send_signal, keeper_.pidfd.get(), SIGKILL, nullptr, 0);
    (void)reap(keeper_.pidfd.get(), true);
  }
  if (spec_.cgroups != nullptr) {
    for (auto& [id, inst] : instances_) {
      if (inst->cgroup_.empty()) continue;
      (void)spec_.cgroups->kill_all(inst->cgroup_);
      (void)spec_.cgroups->remove(inst->cgroup_);
    }
  }
}

bool Template::shares_namespaces() const { return spec_.sandbox.join_namespaces_of >= 0; }

void Template::end_processes() {
  if (spec_.cgroups == nullptr) return;
  (void)spec_.cgroups->kill_all(spec_.template_cgroup);
  for (auto& [id, inst] : instances_) {
    if (!inst->cgroup_.empty() && inst->state_ != InstanceState::exited) (void)spec_.cgroups->kill_all(inst->cgroup_);
  }
}

void Template::on_exec_status() {
  if (!pidfd_readable(keeper_.status_fd.get())) return;  // spurious: never block the loop
  auto failed = read_exec_status(keeper_.status_fd.get());
  poller_.unwatch(keeper_.status_fd.get());
  keeper_.status_fd.reset();
  keeper_.sync_fd.reset();
  if (failed) return keeper_spawn_failed(failed->message());  // its pidfd reports the exit; the cause is this
  if (phase_ == Phase::spawning) phase_ = Phase::waiting_hello;
}

void Template::on_keeper_exit() {
  if (!pidfd_readable(keeper_.pidfd.get())) return;
  poller_.unwatch(keeper_.pidfd.get());
  auto status = reap(keeper_.pidfd.get());
  const bool was_dead = phase_ == Phase::dead;
  phase_ = Phase::dead;
  std::string why = "keeper exited";
  if (status) {
    why += status->exited ? " with code " + std::to_string(status->code)
                          : " by signal " + std::to_string(status->signal);
  }
  log::warn("fwp.template.keeper_exit", {{"template", spec_.name}, {"why", why}});
  // Sharing the tenant's pid namespace, the template and its instances outlive their keeper:
  // end them, as the end of a namespace of their own would.
  if (shares_namespaces()) end_processes();
  lose_all(why);
  if (!was_dead && events_.failed) events_.failed(why);
}

void Template::on_control() {
  for (int budget = 256; budget > 0; --budget) {  // bounded work per wake-up
    wire::Msg m;
    int fd = -1;
    const int err = wire::recv_msg(control_.get(), m, &fd, true);
    if (err == EAGAIN) break;
    if (err == EPIPE) {  // the keeper is gone; its pidfd says how
      poller_.unwatch(control_.get());
      return;
    }
    if (err != 0) {
      protocol_error("bad record (" + std::to_string(err) + ")");
      continue;
    }
    UniqueFd owned(fd);
    switch (m.type) {
      case wire::Type::hello:
        on_hello(owned.release(), m.generation, m.init_ns, m.pid, (m.flags & wire::kFlagHugeText) != 0);
        break;
      case wire::Type::forked: on_forked(m.instance_id, m.err, m.pid, owned.release()); break;
      case wire::Type::exited:
        on_exited(m.pid, m.wait_status, m.utime_ns + m.stime_ns, m.maxrss_kb);
        break;
      case wire::Type::template_exited: on_template_exited(m.wait_status); break;
      default: protocol_error("unexpected record type " + std::to_string(static_cast<int>(m.type)));
    }
    if (phase_ == Phase::dead) break;
  }
  pump_queued_forks();
  collect();
}

void Template::collect() {
  std::erase_if(instances_, [](const auto& kv) { return kv.second->forgotten_; });
}

void Template::protocol_error(const std::string& what) {
  ++stats_.protocol_errors;
  log::warn("fwp.template.protocol", {{"template", spec_.name}, {"error", what}});
}

void Template::on_hello(int fd, uint32_t generation, uint64_t init_ns, pid_t ns_pid, bool huge_text) {
  UniqueFd pidfd(fd);
  if (phase_ != Phase::waiting_hello && phase_ != Phase::restarting && phase_ != Phase::spawning) {
    return protocol_error("hello while ready");
  }
  auto info = pidfd ? pidfd_info(pidfd.get()) : SysResult<PidfdInfo>(fail(plain_error("hello", "no pidfd")));
  if (!info || info->pid <= 0 || info->ns_pids.size() < 2 || info->ns_pids.back() != ns_pid ||
      pid_ns_of(info->pid) != pid_ns_ || info->pid == keeper_.pid || parent_pid(info->pid) != keeper_.pid) {
    return protocol_error("hello: the pidfd is not a live child of the keeper");
  }
  template_pidfd_ = std::move(pidfd);
  template_pid_ = info->pid;
  poller_.watch(template_pidfd_.get(), [this] { on_template_exit(); });
  phase_ = Phase::ready;
  stats_.generation = generation;
  stats_.init_ns = init_ns;
  stats_.text_on_huge_pages = huge_text;
  log::info("fwp.template.ready", {{"template", spec_.name}, {"pid", std::to_string(template_pid_)},
                                   {"generation", std::to_string(generation)},
                                   {"init_ns", std::to_string(init_ns)}});
  // Asked for and not had (no 2 MiB-aligned segment, no huge page, an older kernel): it works
  // as without, and the operator should know why template forks are not faster.
  if (spec_.huge_text && !huge_text)
    log::warn("fwp.template.huge_text", {{"template", spec_.name},
                                         {"error", "the app's code is not on a huge page (not linked with "
                                                   "plume_add_app HUGE_TEXT, or no transparent huge page to be had)"}});
  // FORKs the previous template took with it are lost; those the keeper answered were requeued.
  std::vector<Instance*> taken;
  for (auto& [id, inst] : instances_) {
    if (generation > 1 && inst->state_ == InstanceState::forking && inst->fork_sent_)
      taken.push_back(inst.get());
  }
  for (Instance* inst : taken) {
    inst->fork_sent_ = false;
    --forks_in_flight_;
    if (inst->refill_) --refills_in_flight_;
    finish(*inst, InstanceExit{ExitCause::lost, 0, 0, 0, 0, 0, ESRCH});
  }
  if (events_.template_ready) events_.template_ready();
  pump_queued_forks();
  refill();
  top_up_channels();
}

void Template::on_template_exit() {
  // The keeper reaps it and sends template_exited with the status; this only stops new FORKs.
  if (!template_pidfd_ || !pidfd_readable(template_pidfd_.get())) return;
  poller_.unwatch(template_pidfd_.get());
  template_pidfd_.reset();
  if (phase_ == Phase::ready) phase_ = Phase::restarting;
}

void Template::on_template_exited(int wait_status) {
  // The keeper says so once it has reaped the template. The template shares the socket and is
  // tenant code after init: while its pidfd says it runs, the record is a lie.
  if (template_pidfd_ && !pidfd_readable(template_pidfd_.get())) {
    return protocol_error("template_exited while the template runs (pid " +
                          std::to_string(template_pid_) + ")");
  }
  if (template_pidfd_) {
    poller_.unwatch(template_pidfd_.get());
    template_pidfd_.reset();
  }
  const ExitStatus status = decode(wait_status);
  if (phase_ == Phase::waiting_hello || phase_ == Phase::spawning) {
    // It died before hello: the app's init failed. Restarting would only fail again (after a
    // restart too: an init that fails the second time, on a file it removed say, would
    // otherwise restart in a loop as fast as it can fail).
    const std::string why = "template died before it was ready (init failed): " +
                            (status.exited ? "code " + std::to_string(status.code)
                                           : "signal " + std::to_string(status.signal));
    log::error("fwp.template.init_failed", {{"template", spec_.name}, {"why", why}});
    phase_ = Phase::dead;
    ::syscall(SYS_pidfd_send_signal, keeper_.pidfd.get(), SIGKILL, nullptr, 0);
    lose_all(why);
    if (events_.failed) events_.failed(why);
    return;
  }
  // The keeper forks a new template on `restart`: until its hello, its init runs.
  phase_ = Phase::waiting_hello;
  ++stats_.template_restarts;
  template_pid_ = -1;
  log::warn("fwp.template.exit", {{"template", spec_.name},
                                  {"code", std::to_string(status.code)},
                                  {"signal", std::to_string(status.signal)}});
  if (events_.template_exited) events_.template_exited(status);
  wire::Msg restart;
  restart.type = wire::Type::restart;
  if (int err = wire::send_msg(control_.get(), restart); err != 0)
    protocol_error("restart: sendmsg: " + std::to_string(err));
}

void Template::on_forked(uint64_t id, int err, pid_t ns_pid, int fd) {
  UniqueFd pidfd(fd);
  auto it = instances_.find(id);
  if (it == instances_.end() || it->second->state_ != InstanceState::forking || !it->second->fork_sent_)
    return protocol_error("forked: no FORK pending for instance " + std::to_string(id));
  Instance& inst = *it->second;
  inst.fork_sent_ = false;
  inst.staged_generation_ = 0;  // a FORK consumes its channel in the template, forked or not
  --forks_in_flight_;
  if (inst.refill_) --refills_in_flight_;
  if (err != 0) {
    if (err == EAGAIN && phase_ != Phase::dead) {  // reached the keeper between templates
      queued_forks_.push_back(id);
      return;
    }
    ++stats_.fork_failures;
    return finish(inst, InstanceExit{ExitCause::lost, 0, 0, 0, 0, 0, err});
  }
  auto info = pidfd ? pidfd_info(pidfd.get()) : SysResult<PidfdInfo>(fail(plain_error("forked", "no pidfd")));
  // The template's child, or the keeper's once a dying template left it behind (in a tenant's
  // shared pid namespace, another image's process would pass every other check).
  ino_t ns = 0;
  pid_t parent = -1;
  if (info && info->pid > 0) {
    ns = pid_ns_of(info->pid);
    parent = parent_pid(info->pid);
  }
  if (info && info->pid > 0 && parent <= 0) {
    // /proc/<pid> vanished between the reads, or showed parent 0 (a task being released): the
    // instance already exited and was reaped. Ask the pidfd again, which now says so (Pid: -1),
    // rather than taking it for a forged pidfd.
    info = pidfd_info(pidfd.get());
  }
  const bool child_of_ours = parent > 0 && (parent == template_pid_ || parent == keeper_.pid);
  // A zombie (it ran its message and exited before this answer was read) shows no namespaces
  // any more; its parent vouches for it.
  const bool in_our_ns = ns == pid_ns_ || (ns == 0 && child_of_ours);
  const bool ours = info && !info->ns_pids.empty() && info->ns_pids.back() == ns_pid && ns_pid > 1 &&
                    (info->pid < 0 || (in_our_ns && child_of_ours && info->pid != template_pid_ &&
                                       info->pid != keeper_.pid));
  // A pidfd of a process that already exited has Pid: -1 and no NSpid; accept it by its word.
  const bool gone = info && info->pid < 0;
  // A sibling's pidfd passes every check above: the template can open one for any child of its.
  const bool taken = ours && info->pid > 0 && held_by_another_instance(info->pid);
  if (!info || taken || (!ours && !gone)) {
    ++stats_.fork_failures;
    if (taken) {
      protocol_error("forked: the pidfd is another live instance's (pid " +
                     std::to_string(info->pid) + ")");
    } else {
      const char* where = ns == pid_ns_ ? "ours" : ns == 0 ? "unreadable" : "another";
      protocol_error("forked: the pidfd is not a fresh child of the template (pid " +
                     std::to_string(info ? info->pid : 0) + ", parent " + std::to_string(parent) +
                     ", namespace " + where + ")");
    }
    return finish(inst, InstanceExit{ExitCause::lost, 0, 0, 0, 0, 0, EBADMSG});
  }
  ++stats_.forks;
  inst.pidfd_ = std::move(pidfd);
  inst.pid_ = info->pid;
  inst.ns_pid_ = ns_pid;
  inst.memfd_.reset();  // the instance has its mapping; nobody else needs the fd
  poller_.watch(inst.pidfd_.get(), [this, id] { on_instance_pidfd(id); });
  if (spec_.cgroup_mode == InstanceCgroups::own && !gone) {
    inst.cgroup_ = spec_.cgroup_parent + "/i" + std::to_string(id);
    auto made = spec_.cgroups->create(inst.cgroup_, spec_.instance_limits);
    auto joined = made ? spec_.cgroups->attach(inst.cgroup_, inst.pid_) : SysResult<void>(fail(made.error()));
    if (!joined) {
      log::error("fwp.instance.cgroup", {{"instance", inst.name_}, {"error", joined.error().message()}});
      inst.killed_ = true;
      ::syscall(SYS_pidfd_send_signal, inst.pidfd_.get(), SIGKILL, nullptr, 0);
      return;  // reported as `limit` when reaped; never runs a request outside its cgroup
    }
  }
  if (inst.want_start_) {
    deliver_first(inst);
  } else {
    inst.state_ = InstanceState::parked;
    pool_.push_back(id);
    trim_pool();  // a refill sent before the pool was made smaller
  }
  if (inst.pending_signal_ != 0) {  // kill() came while it was being forked
    int sig = std::exchange(inst.pending_signal_, 0);
    ::syscall(SYS_pidfd_send_signal, inst.pidfd_.get(), sig, nullptr, 0);
  }
  refill();
}

SysResult<void> Template::set_instance_limits(const CgroupLimits& limits) {
  spec_.instance_limits = limits;
  SysResult<void> first{};
  if (spec_.cgroup_mode != InstanceCgroups::own || spec_.cgroups == nullptr) return first;
  for (auto& [id, inst] : instances_) {
    if (inst->cgroup_.empty() || inst->dead_) continue;
    if (auto r = spec_.cgroups->set_limits(inst->cgroup_, limits); !r && first) first = r;
  }
  return first;
}

std::optional<ProcessUsage> Instance::usage_now() const {
  if (pid_ <= 0 || !pidfd_ || dead_) return std::nullopt;  // finish() marks an exited one dead
  auto usage = process_usage(pid_);
  // Read by pid: the figures are this instance's only if it had not exited by the end of the
  // read (a pid is reused only once its process has been reaped).
  if (!usage || pidfd_readable(pidfd_.get())) return std::nullopt;
  return usage;
}

bool Template::held_by_another_instance(pid_t pid) const {
  // As on_exited looks instances up by pid. A dead one (its reaper's `exited` not read yet) no
  // longer holds its pid: that may be a new process's already.
  for (const auto& [id, holder] : instances_) {
    if (holder->pid_ == pid && !holder->dead_ && holder->pidfd_ &&
        !pidfd_readable(holder->pidfd_.get())) {
      return true;
    }
  }
  return false;
}

void Template::on_instance_pidfd(uint64_t id) {
  auto it = instances_.find(id);
  if (it == instances_.end()) return;
  Instance& inst = *it->second;
  if (inst.dead_ || !inst.pidfd_ || !pidfd_readable(inst.pidfd_.get())) return;
  poller_.unwatch(inst.pidfd_.get());
  inst.dead_ = true;  // the status comes from its reaper (template or keeper), in order
}

void Template::on_exited(pid_t ns_pid, int wait_status, uint64_t cpu_ns, uint64_t max_rss_kb) {
  // The reaper reports a pid of its namespace. Several records may share a pid over time; the
  // one it concerns is already dead (pidfd readable), which also rejects invented records.
  Instance* inst = nullptr;
  for (auto& [id, candidate] : instances_) {
    Instance& c = *candidate;
    if (c.ns_pid_ != ns_pid || c.state_ == InstanceState::exited || !c.pidfd_) continue;
    if (c.dead_ || pidfd_readable(c.pidfd_.get())) {
      inst = &c;
      break;
    }
  }
  if (inst == nullptr) return;  // a process of the instance's own, or a stale record
  const ExitStatus status = decode(wait_status);
  InstanceExit exit;
  exit.code = status.code;
  exit.signal = status.signal;
  exit.cpu_ns = cpu_ns;
  exit.max_rss_bytes = max_rss_kb * 1024;
  if (status.exited) {
    exit.cause = ExitCause::exit;
  } else if (status.signal == SIGXCPU || status.signal == SIGXFSZ || inst->killed_) {
    exit.cause = ExitCause::limit;
  } else {
    exit.cause = ExitCause::signal;
  }
  if (spec_.cgroups != nullptr && status.signal == SIGKILL && !inst->killed_) {
    if (!inst->cgroup_.empty()) {
      auto st = spec_.cgroups->stats(inst->cgroup_);
      if (st && st->oom_kills > 0) exit.cause = ExitCause::oom;
    } else if (!spec_.template_cgroup.empty()) {
      auto st = spec_.cgroups->stats(spec_.template_cgroup);
      if (st && st->oom_kills > template_oom_kills_) {
        template_oom_kills_ = st->oom_kills;
        exit.cause = ExitCause::oom;
      }
    }
  }
  if (spec_.cgroups != nullptr && !inst->cgroup_.empty()) {
    if (auto st = spec_.cgroups->stats(inst->cgroup_); st) exit.memory_peak_bytes = st->memory_peak_bytes;
  }
  finish(*inst, exit);
}

void Template::finish(Instance& inst, InstanceExit exit) {
  if (inst.state_ == InstanceState::exited) return;
  const bool was_parked = inst.state_ == InstanceState::parked;
  const bool started = inst.state_ == InstanceState::running || inst.want_start_;
  inst.state_ = InstanceState::exited;
  inst.exit_ = exit;
  if (inst.pidfd_ && !inst.dead_) poller_.unwatch(inst.pidfd_.get());
  inst.dead_ = true;
  // A channel staged for a FORK never sent: the template would hold it (and map it next) forever.
  if (!inst.fork_sent_ && held_by_template(inst.staged_generation_)) unstage(inst.channel_serial_);
  inst.staged_generation_ = 0;
  inst.memfd_.reset();
  if (was_parked) std::erase(pool_, inst.id_);
  std::erase(queued_forks_, inst.id_);
  if (!inst.cgroup_.empty() && spec_.cgroups != nullptr) {
    if (auto r = spec_.cgroups->remove(inst.cgroup_); !r)
      log::warn("fwp.instance.cgroup_remove", {{"instance", inst.name_}, {"error", r.error().message()}});
  }
  ++stats_.exits;
  log::debug("fwp.instance.exit", {{"instance", inst.name_}, {"cause", exit_cause_name(exit.cause)},
                                   {"code", std::to_string(exit.code)},
                                   {"signal", std::to_string(exit.signal)}});
  // An instance nobody started (the pool's) is not the supervisor's business.
  if (!started) inst.forgotten_ = true;
  if (events_.instance_exited && started) events_.instance_exited(inst);
  if (phase_ == Phase::ready) refill();
}

void Template::lose_all(const std::string& why) {
  log::warn("fwp.template.lost", {{"template", spec_.name}, {"why", why}});
  // Unwatched before it is closed: a watch left behind would call back into a destroyed
  // Template once the template's exit made the (kernel-held) pidfd readable.
  if (template_pidfd_) poller_.unwatch(template_pidfd_.get());
  template_pidfd_.reset();
  std::vector<Instance*> live;
  for (auto& [id, inst] : instances_) {
    if (inst->state_ != InstanceState::exited) live.push_back(inst.get());
  }
  forks_in_flight_ = 0;
  refills_in_flight_ = 0;
  for (Instance* inst : live) {
    inst->fork_sent_ = false;
    finish(*inst, InstanceExit{ExitCause::lost, 0, SIGKILL, 0, 0, 0, ESRCH});
  }
}

SysResult<void> Template::kill(uint64_t id, int sig) {
  Instance* inst = instance(id);
  if (inst == nullptr) return fail(SysError{"kill", ESRCH, "instance " + std::to_string(id)});
  if (inst->state_ == InstanceState::exited) return fail(SysError{"kill", ESRCH, inst->name_});
  if (sig == SIGKILL || sig == SIGXCPU) inst->killed_ = true;
  if (!inst->pidfd_) {  // still being forked: delivered as soon as its pidfd arrives
    inst->pending_signal_ = sig;
    // Or never forked at all, if its FORK is still queued by then.
    if (sig == SIGKILL && !inst->fork_sent_) {
      const uint64_t one = 1;
      (void)!::write(kills_due_.get(), &one, sizeof one);
    }
    return {};
  }
  if (::syscall(SYS_pidfd_send_signal, inst->pidfd_.get(), sig, nullptr, 0) != 0)
    return fail(sys_error("pidfd_send_signal", inst->name_));
  return {};
}

void Template::end_killed_before_fork() {
  // Found first, ended after: finish() calls the caller back, which may start instances.
  std::vector<Instance*> due;
  for (auto& [id, inst] : instances_) {
    // One whose FORK went out meanwhile gets the signal with its pidfd, as any instance in flight.
    if (inst->state_ != InstanceState::exited && inst->pending_signal_ == SIGKILL && !inst->fork_sent_ && !inst->pidfd_)
      due.push_back(inst.get());
  }
  for (Instance* inst : due) finish(*inst, InstanceExit{ExitCause::limit, 128 + SIGKILL, SIGKILL, 0, 0, 0, 0});
  collect();
}

Instance* Template::instance(uint64_t id) {
  auto it = instances_.find(id);
  return it == instances_.end() ? nullptr : it->second.get();
}

void Template::forget(uint64_t id) {
  auto it = instances_.find(id);
  if (it != instances_.end() && it->second->state_ == InstanceState::exited) it->second->forgotten_ = true;
}

size_t Template::live_instances() const {
  size_t n = 0;
  for (const auto& [id, inst] : instances_) n += inst->state_ != InstanceState::exited;
  return n;
}

}  // namespace plume::fwp
