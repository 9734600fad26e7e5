#include "support/plumed_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "plume/fwp/cgroup.h"

extern char** environ;

namespace plume::test {
namespace {

using Clock = std::chrono::steady_clock;

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  return static_cast<bool>(out);
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Waits for `pid` (through its pidfd when there is one) up to `timeout`; returns the decoded status.
std::optional<int> wait_child(pid_t pid, int pidfd, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return decode_status(status);
    if (r < 0 && errno != EINTR) return -1;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return std::nullopt;
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<long long>(left, 10)));
    }
  }
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::string plumed_binary() { return std::string(PLUME_BINARY_DIR) + "/kernel/plumed"; }
std::string plume_cli_binary() { return std::string(PLUME_BINARY_DIR) + "/kernel/cli/plume"; }

std::string unique_cgroup_parent() {
  static std::atomic<int> counter{0};
  return "plume-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

std::string random_token() {
  unsigned char bytes[16];
  if (::getrandom(bytes, sizeof(bytes), 0) != static_cast<ssize_t>(sizeof(bytes))) {
    for (auto& b : bytes) b = static_cast<unsigned char>(std::rand());
  }
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(hex[b >> 4]);
    out.push_back(hex[b & 15]);
  }
  return out;
}

std::vector<std::string> cgroup_parent_dirs(const std::string& parent) {
  auto cgroups = fwp::CgroupManager::open("/sys/fs/cgroup", parent);
  return cgroups ? cgroups->directories("") : std::vector<std::string>{};
}

std::vector<std::string> cgroup_dirs_under(const std::string& parent) {
  std::vector<std::string> found;
  for (const std::string& root : cgroup_parent_dirs(parent)) {
    struct stat st{};
    if (::stat(root.c_str(), &st) != 0) continue;
    found.push_back(root);
    // One level of children is what plumed makes (parent/<tenant>/<worker> at most two).
    std::vector<std::string> stack = {root};
    while (!stack.empty()) {
      std::string dir = stack.back();
      stack.pop_back();
      if (auto* d = ::opendir(dir.c_str())) {
        while (auto* e = ::readdir(d)) {
          if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
          std::string sub = dir + "/" + e->d_name;
          found.push_back(sub);
          stack.push_back(sub);
        }
        ::closedir(d);
      }
    }
  }
  return found;
}

void remove_cgroup_tree(const std::string& parent) {
  if (parent.empty()) return;
  auto dirs = cgroup_dirs_under(parent);
  // Deepest first, so children go before their parents.
  std::sort(dirs.begin(), dirs.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const auto& dir : dirs) {
    for (int attempt = 0; attempt < 200; ++attempt) {
      std::ifstream procs(dir + "/cgroup.procs");
      pid_t p;
      bool any = false;
      while (procs >> p) {
        ::kill(p, SIGKILL);
        any = true;
      }
      if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) break;
      if (!any && errno != EBUSY) break;
      std::this_thread::sleep_for(5ms);  // cleanup only: the killed tasks leave the cgroup shortly
    }
  }
}

Plumed::Plumed(PlumedOptions options) : options_(std::move(options)) {
  runtime_dir_ = options_.runtime_dir.empty() ? root_.path() + "/run" : options_.runtime_dir;
  cgroup_parent_ = options_.cgroup_parent.empty() ? unique_cgroup_parent() : options_.cgroup_parent;
  admin_token_ = options_.admin_token.empty() ? random_token() : options_.admin_token;
  stderr_path_ = root_.path() + "/plumed.stderr";
  ::mkdir(runtime_dir_.c_str(), 0755);
}

Plumed::~Plumed() {
  if (running()) kill9();
  if (pidfd_ >= 0) ::close(pidfd_);
  // Only clean what this fixture owns: a borrowed cgroup parent belongs to the test.
  if (options_.cgroup_parent.empty()) remove_cgroup_tree(cgroup_parent_);
}

std::string Plumed::spawn() {
  if (root_.path().empty()) return "mkdtemp failed";
  const std::string binary = options_.binary.empty() ? plumed_binary() : options_.binary;
  std::vector<std::string> args = {binary, "--runtime-dir", runtime_dir_, "--socket", socket(),
                                   "--cgroup-parent", cgroup_parent_, "--admin-token", admin_token_};
  if (!options_.config_toml.empty()) {
    std::string path = root_.path() + "/plumed.toml";
    if (!write_file(path, options_.config_toml)) return "cannot write " + path;
    args.push_back("--config");
    args.push_back(path);
  }
  for (const auto& a : options_.extra_args) args.push_back(a);
  auto argv = c_strings(args);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  env.insert(env.end(), options_.extra_env.begin(), options_.extra_env.end());
  auto envp = c_strings(env);
  int err_fd = ::open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (err_fd < 0) return "open " + stderr_path_ + ": " + std::strerror(errno);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(err_fd);
    ::close(null_fd);
    return std::string("fork: ") + std::strerror(errno);
  }
  if (pid == 0) {
    // plumed must not outlive a crashed test.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(null_fd, 0);
    ::dup2(err_fd, 1);
    ::dup2(err_fd, 2);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(err_fd);
  ::close(null_fd);
  pid_ = pid;
  if (pidfd_ >= 0) ::close(pidfd_);
  pidfd_ = pidfd_open(pid);
  return {};
}

testing::AssertionResult Plumed::start() {
  if (running()) return testing::AssertionFailure() << "plumed already running";
  const std::string binary = options_.binary.empty() ? plumed_binary() : options_.binary;
  if (::access(binary.c_str(), X_OK) != 0) return testing::AssertionFailure() << "no plumed binary at " << binary;
  if (auto err = spawn(); !err.empty()) return testing::AssertionFailure() << err;
  auto deadline = Clock::now() + options_.ready_timeout;
  cli::UnixHttpClient client(socket());
  std::string last = "no attempt";
  while (Clock::now() < deadline) {
    auto reply = client.request("GET", "/v1/health", "", "", 1000ms);
    if (reply && reply->status == 200) return testing::AssertionSuccess();
    last = reply ? "status " + std::to_string(reply->status) + " " + reply->body : reply.error().message();
    // Back off on plumed's exit event: a plumed that dies while we wait is a failed start.
    if (auto code = wait_child(pid_, pidfd_, 20ms)) {
      pid_ = -1;
      return testing::AssertionFailure() << "plumed exited with " << *code << " before it was ready; stderr:\n"
                                         << stderr_text();
    }
  }
  kill9();
  return testing::AssertionFailure() << "plumed not ready within " << options_.ready_timeout.count()
                                     << "ms (last: " << last << "); stderr:\n" << stderr_text();
}

testing::AssertionResult Plumed::launch() {
  if (running()) return testing::AssertionFailure() << "plumed already running";
  if (auto err = spawn(); !err.empty()) return testing::AssertionFailure() << err;
  return testing::AssertionSuccess();
}

std::optional<int> Plumed::start_expect_exit(std::chrono::milliseconds timeout) {
  if (auto err = spawn(); !err.empty()) return -1;
  auto code = wait_exit(timeout);
  if (!code) kill9();
  return code;
}

std::optional<int> Plumed::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return std::nullopt;
  auto code = wait_child(pid_, pidfd_, timeout);
  if (code) pid_ = -1;
  return code;
}

Reply Plumed::request(const std::string& method, const std::string& target, const std::string& token,
                      const std::string& body, std::chrono::milliseconds timeout) const {
  auto reply = cli::UnixHttpClient(socket()).request(method, target, token, body, timeout);
  if (reply) return std::move(*reply);
  Reply r;
  r.status = 0;
  r.body = reply.error().message();
  return r;
}

Reply Plumed::raw(const std::string& bytes, bool shutdown_write, std::chrono::milliseconds timeout) const {
  auto reply = cli::UnixHttpClient(socket()).raw(bytes, shutdown_write, timeout);
  if (reply) return std::move(*reply);
  Reply r;
  r.status = 0;
  r.body = reply.error().message();
  return r;
}

std::optional<int> Plumed::stop(int sig, std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return std::nullopt;
  ::kill(pid_, sig);
  auto code = wait_exit(timeout);
  if (!code) kill9();
  return code;
}

void Plumed::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

std::string Plumed::stderr_text() const { return read_file(stderr_path_); }

CliResult run_cli(const std::vector<std::string>& args, const std::vector<std::string>& env,
                  std::chrono::milliseconds timeout) {
  CliResult result;
  std::vector<std::string> argv_s = {plume_cli_binary()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "PLUME_", 6) != 0) env_s.emplace_back(*e);
  env_s.insert(env_s.end(), env.begin(), env.end());
  auto argv = c_strings(argv_s);
  auto envp = c_strings(env_s);
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return result;
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return result;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  auto deadline = Clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  bool timed_out = false;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    int n = ::poll(fds, 2, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      ssize_t r = ::read(fds[i].fd, buf, sizeof(buf));
      if (r > 0) {
        sinks[i]->append(buf, static_cast<size_t>(r));
      } else if (r == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = timed_out ? -1 : decode_status(status);
  return result;
}

nlohmann::json json_of(const Reply& r) { return nlohmann::json::parse(r.body, nullptr, false); }

std::string make_busybox_rootfs(const std::string& dir) {
  const char* busybox = "/bin/busybox";
  for (const char* sub : {"", "/bin", "/tmp", "/proc", "/dev", "/etc", "/sys"}) {
    std::string d = dir + sub;
    if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) return "mkdir " + d + ": " + std::strerror(errno);
  }
  ::chmod((dir + "/tmp").c_str(), 01777);
  std::ifstream in(busybox, std::ios::binary);
  if (!in) return std::string("cannot read ") + busybox + " (install busybox-static)";
  std::string target = dir + "/bin/busybox";
  {
    std::ofstream out(target, std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
    if (!out) return "cannot write " + target;
  }
  ::chmod(target.c_str(), 0755);
  for (const char* applet : {"sh", "echo", "cat", "ls", "sleep", "true", "false", "env", "id", "pwd", "head"}) {
    std::string link = dir + "/bin/" + applet;
    if (::symlink("busybox", link.c_str()) != 0 && errno != EEXIST) return "symlink " + link + ": " + std::strerror(errno);
  }
  return {};
}

}  // namespace plume::test
