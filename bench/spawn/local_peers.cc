// The peers that start first_instruction from this process: fork+exec, vfork+exec, posix_spawn,
// and the bwrap and crun command-line tools (started with posix_spawn, the cheapest launcher, so
// their figure is posix_spawn's plus the tool's own work).
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "peers.h"

namespace plume::bench {

int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

namespace {

// Owns an argv/envp pair in the char*const[] form that exec and posix_spawn take.
class Argv {
 public:
  explicit Argv(std::vector<std::string> args) : args_(std::move(args)) {
    for (auto& a : args_) ptrs_.push_back(a.data());
    ptrs_.push_back(nullptr);
  }
  char* const* get() const { return ptrs_.data(); }
  const char* path() const { return args_.front().c_str(); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> ptrs_;
};

const Argv& child_env() {
  static const Argv env({"PATH=/usr/bin:/bin"});
  return env;
}

enum class How { fork_exec, vfork_exec, posix_spawn };

class LocalPeer final : public Peer {
 public:
  LocalPeer(std::string name, How how, std::vector<std::string> argv, int timestamp_fd)
      : name_(std::move(name)), how_(how), argv_(std::move(argv)), timestamp_fd_(timestamp_fd) {}

  const std::string& name() const override { return name_; }

  SysResult<Sample> start_once() override {
    Sample s;
    s.t0_ns = monotonic_ns();
    auto pid = start();
    if (!pid) return fail(pid.error());
    int status = 0;
    while (::waitpid(*pid, &status, 0) < 0) {
      if (errno != EINTR) return fail(sys_error("waitpid", name_));
    }
    s.t2_ns = monotonic_ns();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      drain();
      return fail(plain_error(name_, "child ended with wait status " + std::to_string(status)));
    }
    uint64_t first = 0;
    ssize_t got = ::read(timestamp_fd_, &first, sizeof first);
    if (got != static_cast<ssize_t>(sizeof first)) {
      if (got < 0) return fail(sys_error("read", name_ + " timestamp pipe"));
      return fail(plain_error(name_, "child exited 0 but sent no timestamp on fd 3"));
    }
    s.t1_ns = static_cast<int64_t>(first);
    return s;
  }

 private:
  SysResult<pid_t> start() {
    const char* path = argv_.path();
    char* const* argv = argv_.get();
    char* const* envp = child_env().get();
    pid_t pid = -1;
    switch (how_) {
      case How::fork_exec:
        pid = ::fork();
        if (pid == 0) {
          ::execve(path, argv, envp);
          ::_exit(127);
        }
        break;
      case How::vfork_exec:
        // The peer measured is vfork itself. The child only calls execve/_exit, as vfork requires.
        pid = ::vfork();  // NOLINT(clang-analyzer-security.insecureAPI.vfork)
        if (pid == 0) {
          ::execve(path, argv, envp);
          ::_exit(127);
        }
        break;
      case How::posix_spawn: {
        int err = ::posix_spawn(&pid, path, nullptr, nullptr, argv, envp);
        if (err != 0) {
          errno = err;
          return fail(sys_error("posix_spawn", path));
        }
        break;
      }
    }
    if (pid < 0) return fail(sys_error(how_ == How::fork_exec ? "fork" : "vfork", name_));
    return pid;
  }

  // A failed start must not leave a stray timestamp in the pipe for the next sample to misread.
  void drain() {
    char junk[64];
    while (::read(timestamp_fd_, junk, sizeof junk) > 0) {
    }
  }

  std::string name_;
  How how_;
  Argv argv_;
  int timestamp_fd_;
};

}  // namespace

bool is_local_peer(const std::string& name) {
  return name == "fork_exec" || name == "vfork_exec" || name == "posix_spawn" || name == "bwrap" ||
         name == "crun";
}

std::unique_ptr<Peer> make_local_peer(const std::string& name, const PeerEnv& env) {
  if (name == "fork_exec") {
    return std::make_unique<LocalPeer>(name, How::fork_exec, std::vector<std::string>{env.binary},
                                       env.timestamp_fd);
  }
  if (name == "vfork_exec") {
    return std::make_unique<LocalPeer>(name, How::vfork_exec, std::vector<std::string>{env.binary},
                                       env.timestamp_fd);
  }
  if (name == "posix_spawn") {
    return std::make_unique<LocalPeer>(name, How::posix_spawn, std::vector<std::string>{env.binary},
                                       env.timestamp_fd);
  }
  if (name == "bwrap") {
    // Every namespace bwrap supports, the same one-file rootfs as crun and Plume, /proc and /dev.
    return std::make_unique<LocalPeer>(
        name, How::posix_spawn,
        std::vector<std::string>{env.bwrap_path, "--unshare-all", "--ro-bind", env.rootfs, "/",
                                 "--proc", "/proc", "--dev", "/dev", "--", "/first_instruction"},
        env.timestamp_fd);
  }
  if (name == "crun") {
    // A fresh container id per start: `crun run` creates, starts, waits for and deletes it.
    class CrunPeer final : public Peer {
     public:
      explicit CrunPeer(const PeerEnv& e) : env_(e) {}
      const std::string& name() const override { return name_; }
      SysResult<Sample> start_once() override {
        std::string id = "plume-bench-" + std::to_string(::getpid()) + "-" + std::to_string(++n_);
        LocalPeer run(name_, How::posix_spawn,
                      {env_.crun_path, "--root", env_.crun_root, "run", "--bundle", env_.bundle,
                       "--preserve-fds", "1", id},
                      env_.timestamp_fd);
        return run.start_once();
      }

     private:
      std::string name_ = "crun";
      PeerEnv env_;
      uint64_t n_ = 0;
    };
    return std::make_unique<CrunPeer>(env);
  }
  return nullptr;
}

}  // namespace plume::bench
