#include "pipeline.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "exec_status.h"
#include "namespaces.h"
#include "privileges.h"

namespace plume::fwp::detail {
namespace {

const char* rlimit_name(int resource) {
  static constexpr std::array<const char*, 16> kNames = {
      "RLIMIT_CPU",    "RLIMIT_FSIZE",   "RLIMIT_DATA",   "RLIMIT_STACK",
      "RLIMIT_CORE",   "RLIMIT_RSS",     "RLIMIT_NPROC",  "RLIMIT_NOFILE",
      "RLIMIT_MEMLOCK", "RLIMIT_AS",     "RLIMIT_LOCKS",  "RLIMIT_SIGPENDING",
      "RLIMIT_MSGQUEUE", "RLIMIT_NICE",  "RLIMIT_RTPRIO", "RLIMIT_RTTIME"};
  if (resource < 0 || static_cast<size_t>(resource) >= kNames.size()) return "unknown resource";
  return kNames[static_cast<size_t>(resource)];
}

StepFailure apply_rlimits(const ChildPlan& plan) {
  for (size_t i = 0; i < plan.n_rlimits; ++i) {
    const Rlimit& r = plan.rlimits[i];
    const rlimit value{r.soft, r.hard};
    if (::setrlimit(r.resource, &value) != 0) {
      return step_errno("setrlimit", rlimit_name(r.resource));
    }
  }
  return step_ok();
}

// granted_fds[i] becomes fd i; everything else is marked close-on-exec. Every granted fd is first
// duplicated above fd_floor, so a granted fd whose number is another one's target is never
// clobbered before it is copied. The status pipe moves up too, and stays open until execve.
StepFailure grant_fds(ChildPlan& plan) {
  const int status = ::fcntl(plan.status_fd, F_DUPFD_CLOEXEC, plan.fd_floor);
  if (status < 0) return step_errno("fcntl F_DUPFD_CLOEXEC", "exec-status pipe");
  plan.status_fd = status;
  for (size_t i = 0; i < plan.n_granted; ++i) {
    plan.scratch_fds[i] = ::fcntl(plan.granted_fds[i], F_DUPFD_CLOEXEC, plan.fd_floor);
    if (plan.scratch_fds[i] < 0) return step_errno("fcntl F_DUPFD_CLOEXEC", "granted fd");
  }
  for (size_t i = 0; i < plan.n_granted; ++i) {
    // dup2 clears FD_CLOEXEC on the target: the granted fds survive execve.
    if (::dup2(plan.scratch_fds[i], static_cast<int>(i)) < 0) return step_errno("dup2", "granted fd");
  }
  if (::close_range(static_cast<unsigned>(plan.n_granted), ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    return step_errno("close_range", "CLOSE_RANGE_CLOEXEC");
  }
  return step_ok();
}

// execvpe without allocation: argv[0] with a '/' is used as is, otherwise each PATH entry is tried.
StepFailure exec_worker(const ChildPlan& plan) {
  const char* file = plan.argv[0];
  if (std::strchr(file, '/') != nullptr) {
    ::execve(file, plan.argv, plan.envp);
    return step_errno("execve", file);
  }
  const size_t file_len = std::strlen(file);
  bool saw_eacces = false;
  const char* p = plan.path_list;
  while (true) {
    const char* end = std::strchr(p, ':');
    const size_t dir_len = end != nullptr ? static_cast<size_t>(end - p) : std::strlen(p);
    const char* dir = dir_len == 0 ? "." : p;
    const size_t use_len = dir_len == 0 ? 1 : dir_len;
    if (use_len + 1 + file_len + 1 <= plan.exec_buf_size) {
      std::memcpy(plan.exec_buf, dir, use_len);
      plan.exec_buf[use_len] = '/';
      std::memcpy(plan.exec_buf + use_len + 1, file, file_len + 1);
      ::execve(plan.exec_buf, plan.argv, plan.envp);
      switch (errno) {
        case EACCES:
          saw_eacces = true;
          break;
        case ENOENT:
        case ENOTDIR:
        case ESTALE:
        case ENODEV:
        case ETIMEDOUT:
        case ENAMETOOLONG:
          break;
        default:
          return step_errno("execve", file);
      }
    }
    if (end == nullptr) break;
    p = end + 1;
  }
  return StepFailure{saw_eacces ? EACCES : ENOENT, "execve", file};
}

// The supervisor blocks the signals it reads through a signalfd and ignores some others; a
// blocked mask and SIG_IGN dispositions survive execve, so a worker would silently inherit them.
StepFailure reset_signals() {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0) continue;  // numbers glibc reserves for itself
    if (old.sa_handler == SIG_IGN) {
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      if (::sigaction(sig, &dfl, nullptr) != 0) return step_errno("sigaction", "SIG_DFL");
    }
  }
  sigset_t none;
  sigemptyset(&none);
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) return step_errno("sigprocmask", "SIG_SETMASK");
  return step_ok();
}

// Joining a holder's namespaces: this (first) child enters them and forks the worker with
// CLONE_PARENT, so that the worker is the supervisor's own child (waitable through its pidfd) and
// in the holder's pid namespace; the first child reports the worker's pid and exits. Returns in
// the worker only.
void join_and_fork(ChildPlan& plan) {
  const StepFailure joined = join_namespaces(plan.join_pidfd);
  if (!joined.ok()) report_and_exit(plan.status_fd, Step::join_namespaces, joined);
  clone_args args{};
  args.flags = CLONE_PARENT;  // exit signal: the first child's (SIGCHLD); clone3 wants 0 here
  // The helper's ledger gets the worker's pid from the kernel, inside clone3: a first child killed
  // as clone3 returns still leaves it there for the supervisor to reap (spawn_helper.h).
  if (plan.worker_pid_slot != nullptr) {
    args.flags |= CLONE_PARENT_SETTID;
    args.parent_tid = reinterpret_cast<uint64_t>(plan.worker_pid_slot);
  }
  const long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) report_and_exit(plan.status_fd, Step::join_namespaces, step_errno("clone3", "CLONE_PARENT"));
  if (pid > 0) {
    const pid_t worker = static_cast<pid_t>(pid);
    if (plan.worker_pid_slot != nullptr) __atomic_store_n(plan.worker_pid_slot, worker, __ATOMIC_RELEASE);
    // Four bytes into an empty pipe. Were they lost, spawn() fails, and the worker, left with
    // a control socket nobody reads, ends on its EOF.
    const bool sent = ::write(plan.pid_report_fd, &worker, sizeof worker) == sizeof worker;
    ::_exit(sent ? 0 : 127);
  }
  ::close(plan.pid_report_fd);
}

}  // namespace

void run_child(ChildPlan& plan) noexcept {
  // Only the parent may hold the release pipe's write end, or its death would go unnoticed.
  ::close(plan.sync_write_fd);
  ::close(plan.status_read_fd);
  auto check = [&](Step step, const StepFailure& result) {
    if (!result.ok()) report_and_exit(plan.status_fd, step, result);
  };
  check(Step::sync, wait_for_release(plan.sync_fd));
  const bool joined = plan.join_pidfd >= 0;
  if (joined) {
    ::close(plan.pid_report_read_fd);
    join_and_fork(plan);
  }
  check(Step::signals, reset_signals());
  check(Step::cgroup_namespace, enter_cgroup_namespace());
  check(Step::set_ids, set_ids(plan.uid, plan.gid));
  check(Step::sync, arm_parent_death(plan.sync_fd));
  if (!joined) {  // a joined network and uts namespace are the holder's, set up by it
    check(Step::loopback, bring_up_loopback());
    check(Step::hostname, set_hostname(plan.hostname, plan.hostname_len));
  }
  check(Step::rootfs, enter_rootfs(plan.rootfs, plan.cwd));
  check(Step::rlimits, apply_rlimits(plan));
  check(Step::capabilities, drop_capabilities(plan.cap_last_cap));
  check(Step::no_new_privs, set_no_new_privs());
  check(Step::close_fds, grant_fds(plan));
  check(Step::seccomp, load_seccomp(plan.seccomp));
  check(Step::execve, exec_worker(plan));
  ::_exit(127);  // not reached: exec_worker fails with a record or does not return
}

}  // namespace plume::fwp::detail
