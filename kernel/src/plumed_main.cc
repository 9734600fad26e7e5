// plumed: the Plume supervisor. Wires the config, the cgroups, the supervisor core and the control
// API onto one io_uring event loop, and owns start-up recovery and graceful shutdown.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "api.h"
#include "api_state.h"
#include "config.h"
#include "config_reload.h"
#include "files.h"
#include "plume/base/log.h"
#include "plume/fwp/cgroup.h"
#include "plume/fwp/spawn_service.h"
#include "plume_binaries.h"
#include "service_manager.h"
#include "supervisor.h"

using namespace plume;
using namespace plume::kernel;

namespace {

int die(const std::string& event, const std::string& message) {
  log::error(event, {{"error", message}});
  std::fprintf(stderr, "plumed: %s\n", message.c_str());
  return 1;
}

// Workers assemble their root under <runtime_dir>/root with their tenant's host uid, so every
// directory on the way must be searchable by others. Returns the first one that is not.
std::string first_unsearchable(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i != path.size() && path[i] != '/') continue;
    std::string cur = path.substr(0, i);
    struct stat st{};
    if (::stat(cur.c_str(), &st) != 0) return cur;
    if ((st.st_mode & S_IXOTH) == 0) return cur;
  }
  return {};
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string random_token() {
  unsigned char bytes[24];
  if (::getrandom(bytes, sizeof bytes, 0) != sizeof bytes) return {};
  static const char* hex = "0123456789abcdef";
  std::string t;
  for (unsigned char b : bytes) t += hex[b >> 4], t += hex[b & 15];
  return t;
}

bool write_private_file(const std::string& path, const std::string& content, mode_t mode) {
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return false;
  bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ::close(fd);
  return ok;
}

}  // namespace

// An exception that escapes main (bad_alloc at start-up) ends plumed with a core: what it should.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  // First, so that no child plumed starts inherits the manager's socket or watchdog.
  const ServiceManager service_manager = ServiceManager::from_environment();
  CLI::App app{"plumed: the Plume supervisor (control API on a Unix socket; see `plume --help`)"};
  std::string config_path, socket, runtime_dir, state_dir, cgroup_parent, admin_token, log_level;
  bool print_default = false;
  app.add_option("-c,--config", config_path, "TOML config file (default: the built-in configuration)")->check(CLI::ExistingFile);
  app.add_option("--socket", socket, "control socket path (default <runtime-dir>/plumed.sock)");
  app.add_option("--runtime-dir", runtime_dir, "directory for the socket, lock, pid and token files (default /run/plume)");
  app.add_option("--state-dir", state_dir,
                 "directory that keeps tenants and images added through the API (default: none, they last until plumed stops)");
  app.add_option("--cgroup-parent", cgroup_parent, "name of Plume's cgroup subtree (default plume)");
  app.add_option("--admin-token", admin_token, "admin token (default: generated, written to <runtime-dir>/admin.token)");
  app.add_option("--log-level", log_level, "debug, info, warn or error")->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  app.add_flag("--print-default-config", print_default, "print the built-in configuration and exit");
  CLI11_PARSE(app, argc, argv);

  if (print_default) {
    std::fputs(default_config_toml(), stdout);
    return 0;
  }

  // Absolute, so that a reload reads the same file whatever the working directory is by then.
  if (!config_path.empty()) {
    if (char* absolute = ::realpath(config_path.c_str(), nullptr)) {
      config_path = absolute;
      std::free(absolute);
    }
  }
  if (!admin_token.empty() && admin_token.size() < 8)
    return die("plumed.config", "--admin-token must be at least 8 characters");
  // The file (or the built-in configuration) with the flags over it; a reload applies them again.
  auto load = [&]() -> ConfigResult<Config> {
    auto loaded = config_path.empty() ? parse_config_toml(default_config_toml(), "<built-in config>")
                                      : load_config_file(config_path);
    if (!loaded.ok()) return loaded;
    Config c = std::move(loaded.value());
    if (!runtime_dir.empty()) c.daemon.runtime_dir = runtime_dir;
    if (!state_dir.empty()) c.daemon.state_dir = state_dir;
    if (!socket.empty()) c.daemon.socket = socket;
    if (!cgroup_parent.empty()) c.cgroup.parent = cgroup_parent;
    if (!admin_token.empty()) c.daemon.admin_token = admin_token;
    if (!log_level.empty()) c.daemon.log_level = log_level;
    if (c.daemon.socket.empty()) c.daemon.socket = c.daemon.runtime_dir + "/plumed.sock";
    return c;
  };
  auto loaded = load();
  if (!loaded.ok()) return die("plumed.config", loaded.error().message);
  Config config = std::move(loaded.value());
  Config last_loaded = config;  // what a reload compares with (before a generated admin token)
  log::Level level = log::Level::info;
  if (!log::parse_level(config.daemon.log_level, level))
    return die("plumed.config", "log_level must be debug, info, warn or error");
  log::set_level(level);

  if (::geteuid() != 0)
    return die("plumed.start", "plumed must run as root: it creates namespaces, cgroups and uid mappings");

  // Every worker holds a few of plumed's fds (pidfd, log pipes, an instance's channel), and a
  // parked pool instance as many: a thousand of them outgrow the usual soft limit of 1024. Nothing
  // here uses select(), so the soft limit goes up to the hard one (workers get their own limit).
  if (rlimit nofile{}; ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    const rlim_t soft = nofile.rlim_cur;
    nofile.rlim_cur = nofile.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &nofile) == 0)
      log::debug("plumed.nofile", {{"from", std::to_string(soft)}, {"to", std::to_string(nofile.rlim_max)}});
  }

  // One plumed per runtime directory: the lock is released by the kernel if we die, however we die.
  const std::string& rd = config.daemon.runtime_dir;
  if (rd.empty() || rd[0] != '/') return die("plumed.config", "runtime_dir must be an absolute path");
  bool created_rd = false;
  if (!make_dirs(rd, 0755, 0755, created_rd)) return die("plumed.start", "mkdir " + rd + ": " + std::strerror(errno));
  if (std::string blocked = first_unsearchable(rd); !blocked.empty())
    return die("plumed.start", "workers cannot reach " + rd + ": " + blocked +
                                   " is not searchable by other users (it needs o+x, e.g. mode 0711)");
  const std::string lock_path = rd + "/plumed.lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return die("plumed.start", "open " + lock_path + ": " + std::strerror(errno));
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0)
    return die("plumed.start", "another plumed is running on " + rd + " (" + lock_path + " is locked)");

  // Read before anything is set up: a state file plumed cannot read stops it here, unchanged.
  ApiState api_state;
  if (!config.daemon.state_dir.empty()) {
    if (config.daemon.state_dir[0] != '/') return die("plumed.config", "--state-dir must be an absolute path");
    auto opened = ApiState::open(config.daemon.state_dir);
    if (!opened.ok())
      return die("plumed.state", opened.error().message + " (fix it or move it aside; plumed does not overwrite it)");
    api_state = std::move(opened.value());
  }

  bool generated_token = false;
  const std::string token_path = rd + "/admin.token";
  if (config.daemon.admin_token.empty()) {
    config.daemon.admin_token = random_token();
    if (config.daemon.admin_token.empty()) return die("plumed.start", std::string("getrandom: ") + std::strerror(errno));
    generated_token = true;
  }
  if (!write_private_file(token_path, config.daemon.admin_token + "\n", 0600))
    return die("plumed.start", "write " + token_path + ": " + std::strerror(errno));

  // The spawn helper clones every exec-mode worker, template and namespace holder, so what plumed
  // maps later (rings, channels) is never copied per start. plume-spawn, exec'd, can be replaced
  // if it dies; without it plumed forks itself a helper now, while it is small.
  const std::string spawn_helper = plume_binary_path("plume-spawn");
  auto spawner = spawn_helper.empty() ? fwp::SpawnService::start() : fwp::SpawnService::start(spawn_helper);
  if (!spawner.ok()) log::error("plumed.spawn_helper", {{"error", spawner.error().message()}, {"then", "spawning in plumed"}});
  else
    log::info("plumed.spawn_helper", {{"pid", spawner.value()->helper_pid()},
                                      {"binary", spawn_helper.empty() ? "(a fork of plumed)" : spawn_helper}});

  auto cgroups = fwp::CgroupManager::open(config.cgroup.root, config.cgroup.parent);
  if (!cgroups.ok()) return die("plumed.cgroup", cgroups.error().message());
  // Recovery: whatever a crashed plumed left under our cgroup parent is killed and removed.
  auto stale = cgroups->cleanup_stale();
  if (!stale.ok()) return die("plumed.cgroup", "cleaning stale cgroups: " + stale.error().message());
  if (stale.value() > 0) log::warn("plumed.recovered", {{"stale_cgroups", stale.value()}});

  // Instances' channels are waited on with io_uring futex waits where the kernel has them (Linux
  // 6.7+), else from futex_waitv threads (5.16+), else swept (instance_messages.cc).
  // PLUME_FUTEX_WAIT=threads or =off picks the second or the third anyway (tests, comparisons).
  const char* futex_env = std::getenv("PLUME_FUTEX_WAIT");
  const std::string_view futex_asked = futex_env == nullptr ? "" : futex_env;
  const FutexWaits futex_waits = futex_asked == "off"       ? FutexWaits::none
                                 : futex_asked == "threads" ? FutexWaits::threads
                                                            : FutexWaits::best;
  auto loop = EventLoop::create(512, futex_waits);
  if (!loop.ok()) return die("plumed.start", loop.error().message());
  // wait=futex (io_uring), futex_waitv (threads) or sweep.
  const FutexWaits waits = loop.value()->futex_waits();
  log::info("plumed.channels",
            {{"wait", waits == FutexWaits::best ? "futex" : waits == FutexWaits::threads ? "futex_waitv" : "sweep"}});

  Supervisor sup(*loop.value(), config, std::move(cgroups.value()), spawner.ok() ? spawner.value().get() : nullptr);
  if (auto r = sup.init(); !r.ok()) return die("plumed.start", r.error().message);

  // What the API added before this start, after the file's tenants and images (which win).
  if (api_state.enabled()) {
    const RestoreReport restored = restore_api_state(sup, api_state);
    const auto severity = restored.failed.empty() && restored.save_error.empty() ? log::Level::info : log::Level::error;
    log::emit(severity, "plumed.state",
              {{"file", api_state.path()},
               {"restored", joined(restored.restored)},
               {"superseded_by_config", joined(restored.superseded)},
               {"failed", joined(restored.failed)},
               {"save_error", restored.save_error}});
  }

  // Signals arrive as reads on a signalfd, in the loop like everything else.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  int sfd = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) return die("plumed.start", std::string("signalfd: ") + std::strerror(errno));

  // The socket is private from bind until listen_unix widens it to 0660.
  mode_t old_umask = ::umask(077);
  auto listen_fd = HttpServer::listen_unix(config.daemon.socket);
  ::umask(old_umask);
  if (!listen_fd.ok()) return die("plumed.start", listen_fd.error().message());
  Api api(sup, api_state);
  HttpLimits limits;
  limits.max_body_bytes = config.daemon.max_body_bytes;
  HttpServer server(*loop.value(), std::move(listen_fd.value()), limits,
                    [&api](HttpRequest req, std::shared_ptr<Responder> r) { api.handle(std::move(req), std::move(r)); });
  server.start();

  const std::string pid_path = rd + "/plumed.pid";
  write_private_file(pid_path, std::to_string(::getpid()) + "\n", 0644);

  EventLoop& lp = *loop.value();
  auto tell_service_manager = [&service_manager](const std::string& state) {
    if (std::string err = service_manager.notify(state); !err.empty())
      log::warn("plumed.notify", {{"state", state.substr(0, state.find('\n'))}, {"error", err}});
  };
  // SIGHUP (`systemctl reload plumed`): what the file adds takes effect; the rest is reported
  // (config_reload.h).
  auto reload = [&]() {
    if (config_path.empty()) {
      log::info("plumed.reload", {{"skipped", "no --config: the built-in configuration has nothing to reload"}});
      return;
    }
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    tell_service_manager("RELOADING=1\nMONOTONIC_USEC=" +
                         std::to_string(static_cast<uint64_t>(now.tv_sec) * 1000000 + now.tv_nsec / 1000));
    auto next = load();
    if (!next.ok()) {
      log::error("plumed.reload", {{"file", config_path}, {"error", next.error().message}, {"then", "nothing changed"}});
      tell_service_manager("READY=1\nSTATUS=reload failed: " + next.error().message);
      return;
    }
    const ReloadReport report = reload_config(sup, last_loaded, next.value());
    last_loaded = std::move(next.value());
    // What the file names now is the file's: the state file stops bringing it back.
    std::vector<std::string> taken_over;
    if (std::string e = api_state.forget_names_in(last_loaded, taken_over); !e.empty())
      log::error("api_state.save", {{"error", e}, {"then", "the file's version wins at the next start anyway"}});
    else if (!taken_over.empty())
      log::info("plumed.state", {{"file", api_state.path()}, {"now_in_config", joined(taken_over)}});
    // Every key, empty where nothing is in it, so that a log search finds them all the same way.
    const auto severity = report.failed.empty() ? log::Level::info : log::Level::error;
    log::emit(severity, "plumed.reload",
              {{"file", config_path},
               {"added", joined(report.added)},
               {"updated", joined(report.updated)},
               {"replaced", joined(report.replaced)},
               {"removed", joined(report.removed)},
               {"log_level", report.log_level_set ? last_loaded.daemon.log_level : std::string()},
               {"kept_as_running", joined(report.differ)},
               {"not_in_file_kept", joined(report.dropped)},
               {"needs_restart", joined(report.need_restart)},
               {"failed", joined(report.failed)}});
    tell_service_manager("READY=1\nSTATUS=serving on " + config.daemon.socket + "; reloaded " + config_path);
  };
  int signals_seen = 0;
  std::function<void()> arm_signals = [&]() {
    lp.poll(sfd, POLLIN, [&](int) {
      signalfd_siginfo si{};
      while (::read(sfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGHUP) {
          if (signals_seen == 0) reload();
          else log::info("plumed.reload", {{"skipped", "plumed is stopping"}});
          continue;
        }
        ++signals_seen;
        log::info("plumed.signal", {{"signal", signal_name(static_cast<int>(si.ssi_signo))}, {"count", signals_seen}});
        if (signals_seen == 1) {
          tell_service_manager(std::string("STOPPING=1\nSTATUS=stopping on SIG") + signal_name(static_cast<int>(si.ssi_signo)));
          server.stop_accepting();
          sup.shutdown([&]() {
            server.close_all();
            lp.stop();
          });
        } else {
          // A second signal: skip the grace period.
          for (Worker* w : sup.workers())
            if (w->pidfd) (void)sup.signal_worker(*w, SIGKILL);
        }
      }
      arm_signals();
    });
  };
  arm_signals();

  log::info("plumed.ready", {{"socket", config.daemon.socket}, {"pid", ::getpid()},
                             {"cgroup", sup.cgroups().version() == fwp::CgroupVersion::v2 ? "v2" : "v1"},
                             {"cgroup_parent", config.cgroup.parent}, {"tenants", sup.tenants().list().size()},
                             {"admin_token_file", token_path}, {"admin_token_generated", generated_token}});
  // Type=notify: the socket listens and the pid file is written, so clients can connect now.
  tell_service_manager("READY=1\nMAINPID=" + std::to_string(::getpid()) + "\nSTATUS=serving on " +
                       config.daemon.socket);
  // WatchdogSec=: a timer of the loop pets it, so a loop that stops turning is restarted. Only
  // where the manager armed one: otherwise an idle plumed never wakes.
  std::function<void()> pet_watchdog = [&]() {
    tell_service_manager("WATCHDOG=1");
    lp.after(service_manager.watchdog_interval(), pet_watchdog);
  };
  if (service_manager.watchdog_interval().count() > 0) pet_watchdog();
  auto ran = lp.run();
  if (!ran.ok()) log::error("plumed.loop", {{"error", ran.error().message()}});

  ::unlink(config.daemon.socket.c_str());
  ::unlink(pid_path.c_str());
  ::unlink(token_path.c_str());
  ::unlink(lock_path.c_str());
  ::close(lock_fd);
  ::close(sfd);
  if (created_rd) ::rmdir(rd.c_str());  // only a directory plumed made, and only if empty
  log::info("plumed.stopped", {});
  return ran.ok() ? 0 : 1;
}
