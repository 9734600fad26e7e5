// Templates and warm pools: the supervisor's side of the featherweight-process fast path.
//
// A Template is one sandboxed process tree per (tenant, image), started once through the
// containment pipeline (spawn): a keeper (pid 1 of the template's namespaces, reaps, never runs
// app code) and the template proper, which has run the app's init and forks instances on request.
// An instance inherits the sandbox and the warmed memory, gets its own channel (and its own
// cgroup, or stays in the template's), drops every fd, turns non-dumpable, sets up its restricted
// io_uring ring, stacks a per-instance seccomp filter, and parks on its channel. A warm pool keeps
// `pool_size` such parked instances: a start is then one message into a parked instance's channel
// (a futex wake), no fork. See docs/fwp.md for the design and the measured costs.
//
// Single-threaded and loop-driven, like plumed: nothing here blocks. The controller registers the
// fds it needs with a Poller (poller.h: plumed implements it on its io_uring loop; PollLoop is a
// poll(2) driver for tests and benchmarks) and reports what happens through Events callbacks,
// which run inside Poller callbacks.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "plume/base/sys_error.h"
#include "plume/base/unique_fd.h"
#include "plume/fwp/cgroup.h"
#include "plume/fwp/channel.h"
#include "plume/fwp/poller.h"
#include "plume/fwp/process_usage.h"
#include "plume/fwp/sandbox_spec.h"
#include "plume/fwp/spawner.h"

namespace plume::fwp {

class SpawnService;
class TenantNamespaces;

// Where an instance is metered and limited.
enum class InstanceCgroups : uint8_t {
  own,     // <cgroup_parent>/<instance>: created and joined while parked (pool) or before the
           // first message (fork path); ~0.5 ms per v1 hierarchy, off a pooled start's path
  shared,  // stays in the template's cgroup (the caller's choice of the tenant's or a template
           // group): nothing to do per instance
};

// How each instance is fenced off from its siblings, its template and the keeper, which share its
// uid and pid namespace (docs/fwp.md "Instance isolation"):
enum class InstanceIsolation : uint8_t {
  // A per-instance seccomp filter: signals only to itself; no io_uring_setup/register, ptrace,
  // process_vm_*, kcmp, pidfd_getfd. Works on any kernel and under any image filter; loading it
  // costs a BPF JIT per instance (about 0.3 ms of CPU on a VM).
  seccomp_filter,
  // A per-instance Landlock domain scoped for signals and abstract unix sockets (Linux 6.12+): one
  // syscall per instance. Only sound when the image's filter already refuses io_uring, ptrace,
  // process_vm_*, kcmp and pidfd_getfd (Plume's default profile without io_uring does). Falls
  // back to seccomp_filter where the kernel's Landlock has no scopes.
  landlock_scope,
  none,  // tests of the layers underneath only
};

struct TemplateSpec {
  std::string name;  // "<tenant>/<image>": logs, instance names
  // From the supervisor: id maps, uid/gid, rootfs, rlimits, the image's compiled seccomp filter
  // (it must allow io_uring when io_uring_ops is not empty), and the template's cgroup
  // (cgroup_procs_files / cgroup_dir_fd). argv, env and granted_fds are completed by start():
  // env gains PLUME_FWP_ROLE=template; fds 0-3 become /dev/null, stdout, stderr, control socket.
  // sandbox.join_namespaces_of: the tenant's TenantNamespaces::pidfd() to share its namespaces
  // (then `cgroups` and `template_cgroup` are required: the template's processes are ended
  // through its cgroup, no longer by the end of a pid namespace of their own); -1: its own.
  SandboxSpec sandbox;
  // The tenant's namespaces to join, in place of sandbox.join_namespaces_of (the same
  // requirements). One still `starting` holds the keeper's spawn back until its holder runs;
  // starts made meanwhile are queued. One that `failed` leaves the template namespaces of its
  // own. Must outlive the Template.
  TenantNamespaces* tenant_namespaces = nullptr;
  // Clones the keeper without waiting (SpawnService::spawn_async; plumed's helper): the
  // caller's loop must run the service's on_answers() when its answer_fd() is readable, and a
  // spawn that fails there reaches Events::failed, not start()'s result. It must outlive the
  // Template. Null: spawn() here.
  SpawnService* spawner = nullptr;
  // The app on the host, exec'd through an fd (it need not be inside the rootfs; needs /proc in
  // the sandbox, which the pipeline mounts). Empty: sandbox.argv[0] is exec'd inside the rootfs.
  std::string binary;
  int stdout_fd = -1;  // given to the template and every instance; -1: /dev/null
  int stderr_fd = -1;
  // Each instance gets pipes of its own as stdout and stderr instead (Instance::take_stdout),
  // made with its FORK (for a pool instance, off the start path).
  bool capture_output = false;
  ChannelGeometry channel;            // each instance's channel
  std::vector<uint8_t> io_uring_ops;  // IORING_OP_* an instance's ring may carry; empty: no ring
  uint32_t io_uring_entries = 64;
  // What keeps an instance from its siblings and its template beyond the image's own filter.
  InstanceIsolation isolation = InstanceIsolation::seccomp_filter;
  size_t pool_size = 0;               // parked instances kept ready
  // The template moves its code (each read-only segment of 256 KiB or more on a 2 MiB boundary:
  // plume_add_app(... HUGE_TEXT ...) links apps so) onto a transparent huge page, which fork()
  // copies as one entry and every instance then finds mapped (libplume's prefault.h). A template
  // fork is ~9% faster here; the template holds 2 MiB more (shared with its instances, so each
  // parked instance's PSS grows by 2 MiB / (instances + 1)). For images whose starts fork: a
  // small pool or none.
  bool huge_text = false;
  // Of those, how many poll their channel instead of sleeping on it (spinning standbys, at
  // SCHED_IDLE: only on CPU time nobody else wants; see libplume's spinning_park.h). A start
  // takes one first: no wake-up on its path. Each costs an otherwise idle CPU while parked, and
  // backs off to sleeping while its CPU is contended. Needs CAP_SYS_NICE here or RLIMIT_NICE 20
  // lent to the keeper (to bring a spinner back to SCHED_OTHER); without either they park
  // asleep (spinning_allowed()). At most pool_size.
  size_t spinning_standbys = 0;
  size_t max_refills_in_flight = 2;   // pool FORKs outstanding at once (starts go first)
  // A start's refill FORK waits this long (an instance's exit refills at once). Sent at once, it
  // woke the template on the CPU the started instance was just woken on, and the template's fork
  // (~0.6 ms in a VM) ran before the instance: measured through plumed, the first instruction
  // waited for the whole fork. Longer than a scheduler tick (4 ms at HZ=250) because arming the
  // earliest timer of a CPU reprograms its timer hardware, a VM exit in a guest: with 500 µs the
  // arming cost a pooled start ~7 µs on the 2-vCPU VM.
  std::chrono::microseconds refill_delay{5000};
  // The template forks, and pool instances set themselves up, at this nice value, so that a
  // refill does not take the CPU from instances just started; each instance returns to nice 0
  // before it parks (or, forked for a start, at once). Needs RLIMIT_NICE 20 (back to nice 0,
  // never below), which start() gives the keeper. 0: all at normal priority.
  int refill_nice = 10;
  // A start wakes the pooled instance on the supervisor's CPU rather than an idle one (see
  // steer_wakeup_to in template_pool.cc); the instance widens its affinity again at once.
  bool steer_wakeups = true;
  InstanceCgroups cgroup_mode = InstanceCgroups::shared;
  CgroupManager* cgroups = nullptr;   // required for `own`; used for stats when set
  std::string cgroup_parent;          // `own`: instance groups go under it ("<tenant>")
  CgroupLimits instance_limits;       // `own`: each instance group's limits
  std::string template_cgroup;        // the template's group (relative): stats/OOM, and teardown
                                      // when sharing the tenant's namespaces
};

enum class InstanceState : uint8_t {
  forking,  // FORK sent, no answer yet
  parked,   // in the pool, waiting for its first message
  running,  // its first message was sent
  exited,   // reaped; see InstanceExit
};
enum class StartPath : uint8_t { pool, fork };

enum class ExitCause : uint8_t {
  exit,           // it exited (code)
  signal,         // a signal killed it (a crash: SIGSEGV, ...)
  oom,            // SIGKILLed by the OOM killer of its cgroup
  limit,          // SIGXCPU / SIGXFSZ, or killed by the supervisor (kill())
  lost,           // its template tree died before it could be observed, or the fork failed
};
const char* exit_cause_name(ExitCause cause);

struct InstanceExit {
  ExitCause cause = ExitCause::exit;
  int code = 0;    // exit code (cause exit)
  int signal = 0;  // the fatal signal (signal, oom, limit)
  uint64_t cpu_ns = 0;             // user + system, from the reaper's rusage
  uint64_t max_rss_bytes = 0;
  uint64_t memory_peak_bytes = 0;  // from its own cgroup, when it has one
  int err = 0;                     // lost: why (errno of the fork, ESRCH when the tree died)
};

// One instance, as the controller tracks it. Owned by the Template; the pointer stays valid until
// Template::forget(id) or the Template's destruction.
class Instance {
 public:
  uint64_t id() const { return id_; }
  const std::string& name() const { return name_; }
  InstanceState state() const { return state_; }
  StartPath path() const { return path_; }
  pid_t pid() const { return pid_; }        // in plumed's pid namespace; -1 while forking
  pid_t ns_pid() const { return ns_pid_; }  // in the template's pid namespace
  int pidfd() const { return pidfd_.get(); }
  const std::string& cgroup() const { return cgroup_; }  // relative; empty when shared
  // A pool instance: it announced it is set up and parked. One forked for a start: from its FORK.
  bool ready() const { return ready_; }
  bool spins() const { return spins_; }     // forked as a spinning standby
  const std::optional<InstanceExit>& exit() const { return exit_; }
  // The kernel's figures for it while it runs (process_usage, checked against its pidfd);
  // nullopt before it has a pid and once it has exited. Where it has no cgroup of its own, this
  // is what its CPU time and memory are until its template reports its rusage.
  std::optional<ProcessUsage> usage_now() const;
  // CLOCK_MONOTONIC ns when its first message went into its channel (the doorbell); 0 before.
  uint64_t rung_at_ns() const { return rung_at_ns_; }
  // The supervisor's end of its channel (side a). Messages are the app's; the instance's
  // readiness record is consumed by recv() below, never seen by the caller.
  Channel& channel() { return *channel_; }
  // Receives the next app message (skipping the readiness record), waiting up to `timeout`.
  ChannelResult<size_t> recv(std::span<std::byte> buf, std::chrono::nanoseconds timeout);
  // Receives the next app message if one is there now (skipping the readiness record). Unlike
  // recv(), never touches the doorbell: for a caller that waits with Channel::begin_async_wait().
  // Errors: empty, buffer_too_small, corrupt.
  ChannelResult<size_t> try_recv(std::span<std::byte> buf);
  // How many more messages queue() takes now: the free slots of its channel, less what waits
  // for the start message. Errors: corrupt.
  ChannelResult<uint32_t> send_capacity();
  // Whether queue() holds messages back still (a fork-path start not set up yet): they go into
  // the channel without a wake-up of the supervisor's, so room cannot be waited for on its bell.
  bool holds_messages_back() const { return !first_sent_; }
  // Sends one message to the instance.
  ChannelResult<void> send(std::span<const std::byte> msg) { return channel_->send(msg); }
  // Sends one message after the start message: now when that is in the channel, otherwise as
  // soon as it is (a fork-path start holds its first message until the instance is set up).
  ChannelResult<void> queue(std::span<const std::byte> msg);
  // With TemplateSpec::capture_output: the read ends (non-blocking) of the pipes that are its
  // stdout and stderr, for the caller to take and drain; invalid otherwise or once taken. A pipe
  // reads EOF when the instance (and any child of it holding the pipe) has exited.
  UniqueFd take_stdout() { return std::move(stdout_); }
  UniqueFd take_stderr() { return std::move(stderr_); }

 private:
  friend class Template;
  bool consume_ready();  // true when the readiness record has been seen (reads it if queued)
  uint64_t id_ = 0;
  std::string name_;
  InstanceState state_ = InstanceState::forking;
  StartPath path_ = StartPath::fork;
  pid_t pid_ = -1;
  pid_t ns_pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd memfd_;  // kept until the template has forked with it
  uint32_t channel_serial_ = 0;     // how the FORK names its channel to the template
  uint32_t staged_generation_ = 0;  // the template incarnation holding the channel (0: none)
  UniqueFd stdout_, stderr_;                // capture_output: our read ends
  UniqueFd stdout_peer_, stderr_peer_;      // ... and the write ends, kept until the FORK is sent
  std::optional<Channel> channel_;
  std::string cgroup_;
  bool ready_ = false;
  bool dead_ = false;          // its pidfd became readable
  bool fork_sent_ = false;     // a FORK for it is with the template (or keeper)
  bool refill_ = false;        // forked for the pool
  bool spins_ = false;         // forked for the pool as a spinning standby
  int parks_on_cpu_ = -1;      // the CPU it was asked to park pinned to (kFlagParkOnCpu)
  bool killed_ = false;        // the supervisor sent it a fatal signal
  int pending_signal_ = 0;     // kill() before its pidfd arrived: sent once it has one
  bool forgotten_ = false;     // exited and dropped by the caller (or never started): collect
  bool want_start_ = false;    // a start is waiting on it (fork path): send first_ once possible
  bool first_sent_ = false;    // first_ is in the channel already
  uint64_t rung_at_ns_ = 0;
  std::vector<std::byte> first_;
  std::vector<std::vector<std::byte>> after_first_;  // queue()d before first_ was delivered
  std::optional<InstanceExit> exit_;
};

struct TemplateStats {
  uint32_t generation = 0;   // template incarnations started (1 after the first hello)
  uint64_t starts = 0;
  uint64_t pool_hits = 0;    // starts served by a parked instance
  uint64_t pool_misses = 0;  // starts that forked
  uint64_t forks = 0;        // FORKs answered with an instance
  uint64_t fork_failures = 0;
  uint64_t exits = 0;
  uint64_t template_restarts = 0;
  uint64_t protocol_errors = 0;  // records from the template that failed validation
  // Channels a start (or refill) had to create itself because none was made ahead: each one
  // doubles the number kept made ahead (spare_channel_target()).
  uint64_t channels_made_on_demand = 0;
  uint64_t init_ns = 0;          // the app's init in the current template
  // The current template's code is on a transparent huge page (spec().huge_text, when it took).
  bool text_on_huge_pages = false;
};

class Template {
 public:
  struct Events {
    std::function<void()> template_ready;                               // hello (each generation)
    std::function<void(const ExitStatus&)> template_exited;             // it will be restarted
    std::function<void(Instance&)> instance_exited;                     // exit() is set
    std::function<void(const std::string& what)> failed;                // the tree is gone for good
  };

  // Spawns the keeper through the containment pipeline and registers its fds with `poller`. The
  // template is ready (hello) later, in the loop; starts made before are queued, not refused.
  static SysResult<std::unique_ptr<Template>> start(TemplateSpec spec, Poller& poller,
                                                    Events events);
  // SIGKILLs the keeper (the kernel then kills the whole pid namespace), unwatches every fd and
  // removes the instance cgroups it created. Does not block beyond reaping the keeper.
  ~Template();
  Template(const Template&) = delete;
  Template& operator=(const Template&) = delete;

  // Starts an instance whose first message is `first_message` (the start request). With a parked
  // instance in the pool: one channel send (the doorbell), no fork. Otherwise: a FORK to the
  // template (queued while it restarts); the message is delivered once the instance exists (and,
  // for InstanceCgroups::own, has joined its cgroup). Fails only when the message is too big or a
  // channel cannot be created, never because the pool is empty.
  SysResult<Instance*> start_instance(std::span<const std::byte> first_message);

  // Sends `sig` through the instance's pidfd. SIGKILL/SIGXCPU from here count as cause `limit`.
  // One not forked yet gets it once it is; but SIGKILL ends an instance whose FORK is still
  // queued (the template is starting or restarting) without a fork, from the loop.
  SysResult<void> kill(uint64_t id, int sig);
  Instance* instance(uint64_t id);
  // Resizes the warm pool: a larger one refills from the loop, as after a start; parked instances
  // beyond a smaller one are killed (the oldest first: the coldest), and so is a refill that
  // lands beyond it. Spinning standbys never outnumber the pool, and a pool shrunk below them
  // keeps that many for good (they come from a host-wide budget, settled at start()).
  void set_pool_size(size_t pool_size);
  // InstanceCgroups::own: the limits of each instance's group from now on, written also to the
  // groups of the instances that have one (parked or running). The first error is returned; the
  // other groups are still written.
  SysResult<void> set_instance_limits(const CgroupLimits& limits);
  // Drops an exited instance's record (at the controller's next safe point; the pointer stays
  // valid until the current callback returns).
  void forget(uint64_t id);
  // Instances not yet exited, pool included.
  size_t live_instances() const;
  // Parked instances, and those of them that announced readiness.
  size_t pool_parked() const { return pool_.size(); }
  std::vector<const Instance*> parked() const;  // the pool's instances, oldest first
  // Whether spec().spinning_standbys are forked as such (else they park asleep like the rest).
  bool spinning_allowed() const { return spinning_allowed_; }
  // How many of the pool are kept as spinning standbys: spec().spinning_standbys (at most the
  // pool) where spinning_allowed(), else 0.
  size_t spinning_standbys() const {
    return spinning_allowed_ ? std::min(spec_.spinning_standbys, spec_.pool_size) : 0;
  }
  size_t pool_ready();  // checks each parked instance's channel for its readiness record

  bool ready() const { return phase_ == Phase::ready; }
  pid_t keeper_pid() const { return keeper_.pid; }  // plumed's pid namespace
  pid_t template_pid() const { return template_pid_; }
  int template_pidfd() const { return template_pidfd_.get(); }
  const TemplateStats& stats() const { return stats_; }
  const TemplateSpec& spec() const { return spec_; }
  // Channels are made ahead, refill_delay after a start, so that a start only takes one. How
  // many are kept: 4, doubled (up to 64) each time a start found none, so that a template
  // started faster than 4 per refill_delay stops creating channels on its start path; halved
  // after each refill_delay in which starts took fewer than a quarter, and back to 4 after one
  // in which they took none (so the supervisor wakes once after a burst to give them back).
  // Each is staged with the template as it is made (a STAGE record carries its memfd), so the
  // FORK that uses it carries no descriptor, and the template has it mapped already
  // (template_protocol.h).
  static constexpr size_t kMinSpareChannels = 4, kMaxSpareChannels = 64;
  size_t spare_channels() const { return spare_channels_.size(); }
  size_t spare_channel_target() const { return spare_channel_target_; }

 private:
  // waiting_namespaces: the tenant's namespace holder is still starting (TemplateSpec::
  // tenant_namespaces); spawning: the keeper is being exec'd; waiting_hello: a template runs its
  // init (the first, or one forked on `restart`); ready; restarting: the template died, its
  // keeper's `template_exited` is not read yet; dead: the tree is gone for good.
  enum class Phase : uint8_t { waiting_namespaces, spawning, waiting_hello, ready, restarting, dead };
  Template(TemplateSpec spec, Poller& poller, Events events);
  SysResult<void> begin();  // watches its timer and eventfd; spawns the keeper, or waits to
  void namespaces_settled();  // may destroy this Template (Events::failed)
  SysResult<void> spawn_keeper();
  void adopt_keeper(Process keeper);
  void keeper_spawn_failed(const std::string& why);  // may destroy this Template (Events::failed)
  void on_exec_status();
  void on_keeper_exit();
  void on_control();
  void on_template_exit();
  void on_hello(int fd, uint32_t generation, uint64_t init_ns, pid_t ns_pid, bool huge_text);
  void on_forked(uint64_t id, int err, pid_t ns_pid, int fd);
  void on_exited(pid_t ns_pid, int wait_status, uint64_t cpu_ns, uint64_t max_rss_kb);
  void on_template_exited(int wait_status);
  void on_instance_pidfd(uint64_t id);
  bool held_by_another_instance(pid_t pid) const;  // a live instance's process already
  SysResult<Instance*> new_instance(StartPath path);
  SysResult<void> send_fork(Instance& inst);
  struct SpareChannel;
  SysResult<SpareChannel> make_spare_channel();
  // Sends a STAGE record for the channel unless the live template holds it (call when ready).
  SysResult<void> stage(int memfd, uint32_t serial, uint32_t& staged_generation);
  void unstage(uint32_t serial);  // for a staged channel whose FORK will not be sent
  // Whether the live template holds a channel staged in `staged_generation` (0: never staged).
  bool held_by_template(uint32_t staged_generation) const {
    return staged_generation != 0 && staged_generation == stats_.generation &&
           phase_ == Phase::ready;
  }
  void deliver_first(Instance& inst);
  size_t spinning_standbys_parked_or_forking() const;
  bool spinning_allowed_ = false;  // see start(): a spinner can be brought back to SCHED_OTHER
  void refill();
  void trim_pool();  // kills parked instances beyond spec_.pool_size, the oldest first
  void kick_refill();  // refill from the loop, refill_delay after the start, not inside it
  void top_up_channels();  // keeps spare_channel_target_ made ahead: a start does not create one
  void pump_queued_forks();
  void finish(Instance& inst, InstanceExit exit);
  void lose_all(const std::string& why);
  bool shares_namespaces() const;  // joined a tenant's namespaces (sandbox.join_namespaces_of)
  void end_processes();            // SIGKILLs the template's cgroup and its instances' own ones
  void collect();  // erases forgotten instances; only where no Instance reference is held
  void protocol_error(const std::string& what);

  TemplateSpec spec_;
  Poller& poller_;
  Events events_;
  Phase phase_ = Phase::spawning;
  Process keeper_;
  uint64_t keeper_request_ = 0;  // the spawn helper's ticket while it clones the keeper
  uint64_t namespaces_waiter_ = 0;  // while waiting_namespaces (TenantNamespaces::when_settled)
  UniqueFd control_;         // our end of the control socket
  bool control_watched_ = false;  // from the keeper's adoption
  UniqueFd refill_kick_;     // timerfd: a refill is due (keeps FORKs off the start call)
  bool refill_armed_ = false;
  // An instance SIGKILLed before its FORK was sent (queued while the template starts) is ended
  // from the loop (kill() may be called from inside a callback of the caller's): kill() rings
  // this eventfd, and end_killed_before_fork() looks for such instances.
  UniqueFd kills_due_;
  void end_killed_before_fork();
  UniqueFd template_pidfd_;  // from hello
  pid_t template_pid_ = -1;
  ino_t pid_ns_ = 0;         // the keeper's pid namespace, to check pidfds against
  uint64_t template_oom_kills_ = 0;  // `shared`: the template group's OOM kills seen so far
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Instance>> instances_;
  std::deque<uint64_t> pool_;         // parked, oldest first
  struct SpareChannel {
    Channel::Created made;
    uint32_t serial = 0;
    uint32_t staged_generation = 0;  // see Instance::staged_generation_
  };
  std::deque<SpareChannel> spare_channels_;
  uint32_t next_channel_serial_ = 1;  // wraps, skipping 0; only ever compared for equality
  size_t spare_channel_target_ = kMinSpareChannels;
  size_t spares_taken_ = 0;  // since the last top-up: below a quarter of the target halves it
  std::deque<uint64_t> queued_forks_; // instances waiting for a template to fork them
  size_t refills_in_flight_ = 0;
  size_t forks_in_flight_ = 0;
  TemplateStats stats_;
};

}  // namespace plume::fwp
