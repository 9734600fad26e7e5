// spawn(): the parent half of the containment pipeline. Everything that allocates happens here,
// before clone3; the child (pipeline.cc) only makes system calls.
#include "plume/fwp/spawner.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#include "exec_status.h"
#include "id_map.h"
#include "pipeline.h"
#include "privileges.h"
#include "rootfs.h"

namespace plume::fwp {
namespace {

constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

SpawnError spawn_error(Step step, int err, std::string detail) {
  return SpawnError{step, err, std::move(detail)};
}

// Pointers into the spec's strings, null-terminated, as execve wants them.
std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

const char* find_path(const std::vector<std::string>& env) {
  for (const std::string& e : env) {
    if (e.rfind("PATH=", 0) == 0) return e.c_str() + 5;
  }
  return kDefaultPath;
}

// Who reaps the children spawn() makes. By default the caller: they are its own. For the spawn
// helper they are its parent's (CLONE_PARENT), so it hands their pidfds back instead.
struct Reaping {
  std::vector<UniqueFd>* hand_back = nullptr;  // null: reap here
  // The helper leaves the release to its caller where it can (not when joining: the worker's pid
  // is only known after it), so the child starts its steps once the caller has its answer,
  // instead of competing with the answer's delivery for the CPUs.
  bool* released = nullptr;
  detail::SiblingPids* written = nullptr;  // the helper's record of what it cloned
  bool siblings() const { return hand_back != nullptr; }
};

// A child that is gone or going (reported, exiting, or killed): reaped here, or handed back.
void settle_child(UniqueFd pidfd, const Reaping& reaping) {
  if (reaping.siblings()) {
    reaping.hand_back->push_back(std::move(pidfd));
  } else {
    (void)reap(pidfd.get(), /*block=*/true);
  }
}

// Kills a child that a parent-side step gave up on, and settles it, so no zombie is left behind.
void abandon_child(UniqueFd pidfd, const Reaping& reaping) {
  ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
  settle_child(std::move(pidfd), reaping);
}

// Raises this process's hard limits, for the length of a clone, to the spec's where they are
// higher: a child in a new user namespace can lower its limits but never raise a hard one, so it
// can only be lent what it needs (RLIMIT_NICE 20 for a template whose instances renice to 0).
// Needs CAP_SYS_RESOURCE; without it the child's own setrlimit reports the step.
class RlimitLoan {
 public:
  explicit RlimitLoan(const std::vector<Rlimit>& wanted) {
    for (const Rlimit& r : wanted) {
      rlimit own{};
      if (::getrlimit(r.resource, &own) != 0 || own.rlim_max >= r.hard) continue;
      const rlimit raised{own.rlim_cur, r.hard};
      if (::setrlimit(r.resource, &raised) == 0) saved_.push_back({r.resource, own.rlim_cur, own.rlim_max});
    }
  }
  ~RlimitLoan() {
    for (const Rlimit& r : saved_) {
      const rlimit own{r.soft, r.hard};
      (void)::setrlimit(r.resource, &own);
    }
  }
  RlimitLoan(const RlimitLoan&) = delete;
  RlimitLoan& operator=(const RlimitLoan&) = delete;

 private:
  std::vector<Rlimit> saved_;
};

// A joining spawn's first child reports the worker's pid and exits: settle it, and pin the worker
// (its parent's child, by CLONE_PARENT) with a pidfd. A first child that failed (setns
// refused, say) wrote its exec-status record instead.
Result<std::pair<pid_t, UniqueFd>, SpawnError> take_joined_worker(UniqueFd first_pidfd, int report_fd,
                                                                  int status_fd, const Reaping& reaping) {
  pid_t worker = 0;
  size_t have = 0;
  while (have < sizeof worker) {
    const ssize_t n = ::read(report_fd, reinterpret_cast<char*>(&worker) + have, sizeof worker - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += static_cast<size_t>(n);
  }
  settle_child(std::move(first_pidfd), reaping);
  if (have != sizeof worker || worker <= 0) {
    if (auto e = detail::read_record(status_fd)) return fail(std::move(*e));
    return fail(spawn_error(Step::join_namespaces, EIO, "no worker pid from the joining child"));
  }
  UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, worker, 0)));
  if (!fd) return fail(spawn_error(Step::join_namespaces, errno, "pidfd_open of the worker"));
  return std::pair<pid_t, UniqueFd>(worker, std::move(fd));
}

std::optional<SpawnError> validate(const SandboxSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    return spawn_error(Step::execve, EINVAL, "empty argv in spec " + spec.name);
  }
  if (spec.seccomp == nullptr || spec.seccomp->program.empty()) {
    return spawn_error(Step::seccomp, EINVAL, "no compiled seccomp filter in spec " + spec.name);
  }
  if (spec.seccomp->program.size() > USHRT_MAX) {
    return spawn_error(Step::seccomp, E2BIG, "seccomp program " + spec.seccomp->source);
  }
  if (spec.rootfs.staging_dir.empty()) {
    return spawn_error(Step::rootfs, EINVAL, "no staging directory in spec " + spec.name);
  }
  if (spec.cwd.empty() || spec.cwd[0] != '/') {
    return spawn_error(Step::rootfs, EINVAL, "cwd must be absolute: " + spec.cwd);
  }
  return std::nullopt;
}

}  // namespace

const char* step_name(Step step) {
  switch (step) {
    case Step::clone: return "clone";
    case Step::id_maps: return "id_maps";
    case Step::cgroup_attach: return "cgroup_attach";
    case Step::sync: return "sync";
    case Step::cgroup_namespace: return "cgroup_namespace";
    case Step::set_ids: return "set_ids";
    case Step::loopback: return "loopback";
    case Step::hostname: return "hostname";
    case Step::rootfs: return "rootfs";
    case Step::rlimits: return "rlimits";
    case Step::capabilities: return "capabilities";
    case Step::no_new_privs: return "no_new_privs";
    case Step::seccomp: return "seccomp";
    case Step::close_fds: return "close_fds";
    case Step::execve: return "execve";
    case Step::signals: return "signals";
    case Step::join_namespaces: return "join_namespaces";
  }
  return "unknown";
}

std::string SpawnError::message() const {
  std::string m = step_name(step);
  if (!detail.empty()) m += ": " + detail;
  if (err != 0) {
    m += ": ";
    m += std::strerror(err);
  }
  return m;
}

namespace {

using detail::release_child;

Result<Process, SpawnError> spawn_with(const SandboxSpec& spec, const Reaping& reaping) {
  if (auto e = validate(spec)) return fail(std::move(*e));

  // Everything the child will touch, prepared while allocation is still allowed.
  std::vector<char*> argv = c_strings(spec.argv);
  std::vector<char*> envp = c_strings(spec.env);
  std::vector<char> exec_buf(PATH_MAX + 1);
  std::vector<int> scratch_fds(spec.granted_fds.size());
  detail::RootfsStorage rootfs_storage;

  detail::ChildPlan plan;
  plan.uid = spec.uid;
  plan.gid = spec.gid;
  plan.hostname = spec.name.c_str();
  plan.hostname_len = spec.name.size();
  detail::prepare_rootfs(spec.rootfs, plan.rootfs, rootfs_storage);
  plan.cwd = spec.cwd.c_str();
  plan.rlimits = spec.rlimits.data();
  plan.n_rlimits = spec.rlimits.size();
  plan.cap_last_cap = detail::cap_last_cap();
  plan.seccomp.len = static_cast<unsigned short>(spec.seccomp->program.size());
  plan.seccomp.filter = const_cast<sock_filter*>(spec.seccomp->program.data());
  plan.granted_fds = spec.granted_fds.data();
  plan.scratch_fds = scratch_fds.data();
  plan.n_granted = spec.granted_fds.size();
  int floor = static_cast<int>(spec.granted_fds.size());
  for (int fd : spec.granted_fds) floor = std::max(floor, fd + 1);
  plan.fd_floor = std::max(floor, 3);
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.path_list = find_path(spec.env);
  plan.exec_buf = exec_buf.data();
  plan.exec_buf_size = exec_buf.size();

  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    return fail(spawn_error(Step::clone, errno, "pipe2 exec-status"));
  }
  UniqueFd status_read(status_pipe[0]);
  UniqueFd status_write(status_pipe[1]);
  int sync_pipe[2];
  if (::pipe2(sync_pipe, O_CLOEXEC) != 0) {
    return fail(spawn_error(Step::clone, errno, "pipe2 release"));
  }
  UniqueFd sync_read(sync_pipe[0]);
  UniqueFd sync_write(sync_pipe[1]);
  plan.status_fd = status_write.get();
  plan.status_read_fd = status_read.get();
  plan.sync_fd = sync_read.get();
  plan.sync_write_fd = sync_write.get();
  const bool join = spec.join_namespaces_of >= 0;
  UniqueFd pid_report_read, pid_report_write;
  if (join) {
    int pid_pipe[2];
    if (::pipe2(pid_pipe, O_CLOEXEC) != 0) return fail(spawn_error(Step::clone, errno, "pipe2 pid report"));
    pid_report_read.reset(pid_pipe[0]);
    pid_report_write.reset(pid_pipe[1]);
    plan.join_pidfd = spec.join_namespaces_of;
    plan.pid_report_fd = pid_report_write.get();
    plan.pid_report_read_fd = pid_report_read.get();
    if (reaping.written != nullptr) plan.worker_pid_slot = &reaping.written->worker;
  }

  int pidfd = -1;
  clone_args args{};
  // Joining: the first child joins the holder's namespaces and forks the worker (pipeline.cc).
  args.flags = join ? CLONE_PIDFD
                    : CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS |
                          CLONE_NEWNET | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  if (spec.cgroup_dir_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(spec.cgroup_dir_fd);
  }
  // The helper's children are its parent's (the joining child's worker too, see pipeline.cc).
  // clone3 refuses an exit signal with CLONE_PARENT: the child's is the helper's own (SIGCHLD).
  if (reaping.siblings()) {
    args.flags |= CLONE_PARENT;
    args.exit_signal = 0;
  }
  // The helper's ledger (a page it shares with its caller) gets the child's pid from the kernel,
  // before clone3 returns: a helper killed as it returns still leaves the pid there for its
  // caller to reap.
  if (reaping.written != nullptr) {
    args.flags |= CLONE_PARENT_SETTID;
    args.parent_tid = reinterpret_cast<uint64_t>(&reaping.written->child);
  }
  long ret;
  {
    const RlimitLoan loan(spec.rlimits);
    // Fork-like clone3 (no new stack): the child continues here on a copy of this stack.
    ret = ::syscall(SYS_clone3, &args, sizeof args);
    if (ret == 0) detail::run_child(plan);  // never returns
  }
  if (ret < 0) return fail(spawn_error(Step::clone, errno, "clone3 " + spec.name));

  const auto pid = static_cast<pid_t>(ret);  // the ledger has it already (CLONE_PARENT_SETTID)
  UniqueFd pidfd_owner(pidfd);
  status_write.reset();
  sync_read.reset();
  pid_report_write.reset();

  if (auto e = join ? std::nullopt : detail::write_id_maps(pid, spec.uid_map, spec.gid_map)) {
    abandon_child(std::move(pidfd_owner), reaping);
    return fail(std::move(*e));
  }
  if (auto e = detail::attach_cgroups(pid, spec.cgroup_procs_files)) {
    abandon_child(std::move(pidfd_owner), reaping);
    return fail(std::move(*e));
  }
  const bool release_here = reaping.released == nullptr || join;
  if (reaping.released != nullptr) *reaping.released = release_here;
  if (release_here) {
    if (auto e = release_child(sync_write.get())) {
      abandon_child(std::move(pidfd_owner), reaping);
      return fail(std::move(*e));
    }
  }

  Process proc;
  proc.pid = pid;
  proc.pidfd = std::move(pidfd_owner);
  if (join) {
    // Blocks until the first child has joined and forked (a setns and a clone3: well under a ms).
    auto worker = take_joined_worker(std::move(proc.pidfd), pid_report_read.get(), status_read.get(), reaping);
    if (!worker) return fail(std::move(worker.error()));
    proc.pid = worker->first;
    proc.pidfd = std::move(worker->second);
  }
  proc.status_fd = std::move(status_read);
  proc.sync_fd = std::move(sync_write);
  return proc;
}

}  // namespace

Result<Process, SpawnError> spawn(const SandboxSpec& spec) { return spawn_with(spec, Reaping{}); }

namespace detail {
Result<Process, SpawnError> spawn_as_sibling(const SandboxSpec& spec, std::vector<UniqueFd>& to_reap,
                                             bool& released, SiblingPids* written) {
  return spawn_with(spec, Reaping{&to_reap, &released, written});
}

std::optional<SpawnError> release_child(int sync_fd) {
  const char release = 1;
  ssize_t n;
  do {
    n = ::write(sync_fd, &release, 1);
  } while (n < 0 && errno == EINTR);
  if (n == 1) return std::nullopt;
  return spawn_error(Step::sync, n < 0 ? errno : EIO, "write release pipe");
}
}  // namespace detail

std::optional<SpawnError> read_exec_status(int status_fd) { return detail::read_record(status_fd); }

Result<Process, SpawnError> spawn_and_wait_exec(const SandboxSpec& spec) { return wait_for_exec(spawn(spec)); }

Result<Process, SpawnError> wait_for_exec(Result<Process, SpawnError> proc) {
  if (!proc) return proc;
  if (auto e = read_exec_status(proc->status_fd.get())) {
    // The child exits after reporting; kill it anyway (in case the pipe itself failed) and reap
    // it here, as nobody else can.
    proc->sync_fd.reset();
    ::syscall(SYS_pidfd_send_signal, proc->pidfd.get(), SIGKILL, nullptr, 0);
    (void)reap(proc->pidfd.get(), true);
    return fail(std::move(*e));
  }
  proc->status_fd.reset();
  proc->sync_fd.reset();
  return proc;
}

bool pidfd_readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

Result<ExitStatus, SysError> reap(int pidfd, bool block) {
  siginfo_t info{};
  ExitStatus status;
  const int options = WEXITED | (block ? 0 : WNOHANG);
  long r;
  do {
    r = ::syscall(SYS_waitid, P_PIDFD, pidfd, &info, options, &status.usage);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return fail(sys_error("waitid", "pidfd " + std::to_string(pidfd)));
  if (info.si_pid == 0) {
    return fail(SysError{"waitid", EAGAIN, "pidfd " + std::to_string(pidfd) + " (still running)"});
  }
  switch (info.si_code) {
    case CLD_EXITED:
      status.exited = true;
      status.code = info.si_status;
      break;
    case CLD_DUMPED:
      status.core_dumped = true;
      status.signal = info.si_status;
      break;
    default:  // CLD_KILLED
      status.signal = info.si_status;
      break;
  }
  return status;
}

}  // namespace plume::fwp
