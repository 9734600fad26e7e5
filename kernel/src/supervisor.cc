#include "supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "json_response.h"
#include "plume/base/log.h"
#include "plume/base/time_format.h"
#include "plume/fwp/spawner.h"

namespace plume::kernel {
namespace {

// Signals by name, for the API and the CLI.
constexpr std::pair<int, const char*> kSignals[] = {
    {SIGHUP, "HUP"},   {SIGINT, "INT"},   {SIGQUIT, "QUIT"}, {SIGILL, "ILL"},   {SIGTRAP, "TRAP"},
    {SIGABRT, "ABRT"}, {SIGBUS, "BUS"},   {SIGFPE, "FPE"},   {SIGKILL, "KILL"}, {SIGUSR1, "USR1"},
    {SIGSEGV, "SEGV"}, {SIGUSR2, "USR2"}, {SIGPIPE, "PIPE"}, {SIGALRM, "ALRM"}, {SIGTERM, "TERM"},
    {SIGCHLD, "CHLD"}, {SIGCONT, "CONT"}, {SIGSTOP, "STOP"}, {SIGTSTP, "TSTP"}, {SIGTTIN, "TTIN"},
    {SIGTTOU, "TTOU"}, {SIGURG, "URG"},   {SIGXCPU, "XCPU"}, {SIGXFSZ, "XFSZ"}, {SIGVTALRM, "VTALRM"},
    {SIGPROF, "PROF"}, {SIGWINCH, "WINCH"}, {SIGIO, "IO"},   {SIGSYS, "SYS"},
};

}  // namespace

std::string random_worker_id(const char* prefix) {
  unsigned char bytes[4];
  if (::getrandom(bytes, sizeof bytes, 0) != sizeof bytes) {
    static uint32_t counter = 0;
    uint32_t c = ++counter;
    std::memcpy(bytes, &c, sizeof bytes);
  }
  static const char* hex = "0123456789abcdef";
  std::string id = prefix;
  for (unsigned char b : bytes) {
    id += hex[b >> 4];
    id += hex[b & 15];
  }
  return id;
}

namespace {

int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

template <class T>
T cap(T requested, T limit) {
  if (limit == 0) return requested;
  if (requested == 0) return limit;
  return std::min(requested, limit);
}

enum class SignalDisposition { caught, ignored, default_action };

// Reads the worker's SigCgt/SigIgn masks. Unknown (e.g. it just exited): default_action.
SignalDisposition signal_disposition(pid_t pid, int sig) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/status", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  if (!f) return SignalDisposition::default_action;
  char line[256];
  unsigned long long caught = 0, ignored = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "SigCgt:", 7) == 0) caught = std::strtoull(line + 7, nullptr, 16);
    if (std::strncmp(line, "SigIgn:", 7) == 0) ignored = std::strtoull(line + 7, nullptr, 16);
  }
  std::fclose(f);
  unsigned long long bit = 1ull << (sig - 1);
  if (caught & bit) return SignalDisposition::caught;
  if (ignored & bit) return SignalDisposition::ignored;
  return SignalDisposition::default_action;
}

bool default_action_stops(int sig) { return sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU; }
bool default_action_terminates(int sig) {
  return !(default_action_stops(sig) || sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH);
}

}  // namespace

const char* signal_name(int sig) {
  for (auto& [n, name] : kSignals)
    if (n == sig) return name;
  return "";
}

int signal_from_name(const std::string& raw) {
  if (raw.empty()) return 0;
  if (std::all_of(raw.begin(), raw.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (raw.size() > 2) return 0;
    int n = std::stoi(raw);
    return (n >= 1 && n <= 64) ? n : 0;
  }
  std::string name = raw;
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  for (auto& [n, s] : kSignals)
    if (name == s) return n;
  return 0;
}

const char* worker_state_name(WorkerState s) {
  switch (s) {
    case WorkerState::starting: return "starting";
    case WorkerState::running: return "running";
    case WorkerState::exited: return "exited";
    case WorkerState::failed: return "failed";
  }
  return "running";
}

// API timestamps carry milliseconds (the logs keep microseconds).
std::string rfc3339(std::chrono::system_clock::time_point t) { return format_rfc3339(t, SubSecond::millis); }

Supervisor::Supervisor(EventLoop& loop, Config config, fwp::CgroupManager cgroups, fwp::SpawnService* spawner)
    : loop_(loop), config_(std::move(config)), cgroups_(std::move(cgroups)), spawner_(spawner), poller_(loop),
      started_at_(std::chrono::steady_clock::now()) {
  if (spawner_ != nullptr) watch_spawn_answers();
}

// Templates go first: destroying one SIGKILLs its keeper and unwatches its fds on our poller.
Supervisor::~Supervisor() {
  if (spawn_answers_op_) loop_.cancel(spawn_answers_op_);
  // The waits on instances' channels end with their mappings, below: none may outlive them.
  if (channel_sweep_op_) loop_.cancel(channel_sweep_op_);
  for (auto& [id, w] : workers_) {
    if (w->channel_op) loop_.cancel(w->channel_op);
    if (w->room_op) loop_.cancel(w->room_op);
    for (auto& r : w->room_waiters)
      if (r->timer) loop_.cancel(r->timer);
    for (auto& r : w->reply_waiters)
      if (r->timer) loop_.cancel(r->timer);
    for (auto& l : w->log_waiters)
      if (l->timer) loop_.cancel(l->timer);
  }
  templates_.clear();
  tenant_namespaces_.clear();  // after the templates: their keepers are reaped by then
}

bool Supervisor::alive(const Worker& w) const {
  return w.state == WorkerState::running || w.state == WorkerState::starting;
}

ConfigResult<bool> Supervisor::init() {
  Image* host = images_.find("host");
  if (!host || host->filter.program.empty())
    return fail(ConfigError{"the built-in seccomp profile failed to compile"});
  if (auto r = cgroups_.create_root(); !r.ok()) return fail(ConfigError{"cgroup root: " + r.error().message()});
  staging_dir_ = config_.daemon.runtime_dir + "/root";
  if (::mkdir(staging_dir_.c_str(), 0755) != 0 && errno != EEXIST)
    return fail(ConfigError{"mkdir " + staging_dir_ + ": " + std::strerror(errno)});
  owned_by_config(config_);
  for (const TenantSpec& t : config_.tenants) {
    auto r = add_tenant(t);
    if (!r.ok()) return fail(r.error());
  }
  for (const ImageSpec& i : config_.images) {
    auto r = images_.add(i);
    if (!r.ok()) return fail(r.error());
  }
  return true;
}

namespace {

// What of a tenant's limits its cgroup holds (max_workers is counted by plumed).
fwp::CgroupLimits tenant_cgroup_limits(const TenantLimits& l) {
  return {l.memory_bytes, l.pids_max, l.cpu_percent, l.cpu_weight};
}

}  // namespace

// A tenant on the admin token would be the admin (the registry checks the tenants' own tokens).
ConfigResult<bool> Supervisor::not_the_admin_token(const std::string& tenant, const std::string& token) const {
  if (tokens_equal(token, config_.daemon.admin_token))
    return fail(ConfigError{"tenant " + tenant + ": token is the admin token"});
  return true;
}

ConfigResult<Tenant*> Supervisor::add_tenant(TenantSpec spec) {
  if (auto ok = not_the_admin_token(spec.name, spec.token); !ok.ok()) return fail(ok.error());
  auto added = tenants_.add(std::move(spec));
  if (!added.ok()) return added;
  Tenant* t = added.value();
  if (auto r = cgroups_.create(t->spec.name, tenant_cgroup_limits(t->spec.limits)); !r.ok()) {
    std::string name = t->spec.name;
    tenants_.remove(name);
    return fail(ConfigError{"tenant " + name + ": cgroup: " + r.error().message()});
  }
  log::info("tenant.add", {{"tenant", t->spec.name}, {"uid_base", t->spec.uid_base}, {"uid_count", t->spec.uid_count}});
  return t;
}

ConfigResult<bool> Supervisor::update_tenant(Tenant& t, const std::string& token, const TenantLimits& limits) {
  if (auto ok = not_the_admin_token(t.spec.name, token); !ok.ok()) return ok;
  if (auto free = tenants_.token_free_for(t.spec.name, token, &t); !free.ok()) return free;
  if (limits != t.spec.limits) {
    if (lifts_a_limit(limits))
      return fail(ConfigError{"tenant " + t.spec.name + ": a limit of 0 cannot be set on a running tenant"});
    if (auto r = cgroups_.set_limits(t.spec.name, tenant_cgroup_limits(limits)); !r.ok())
      return fail(ConfigError{"tenant " + t.spec.name + ": cgroup: " + r.error().message()});
    t.spec.limits = limits;
    follow_tenant_limits(t);
    log::info("tenant.limits", {{"tenant", t.spec.name}, {"memory_bytes", limits.memory_bytes},
                                {"pids_max", limits.pids_max}, {"cpu_percent", limits.cpu_percent},
                                {"cpu_weight", limits.cpu_weight}, {"max_workers", limits.max_workers}});
  }
  if (!tokens_equal(token, t.spec.token)) {
    t.spec.token = token;
    log::info("tenant.token", {{"tenant", t.spec.name}, {"action", "replaced"}});
  }
  return true;
}

std::vector<Tenant*> Supervisor::move_tokens(std::vector<std::pair<Tenant*, std::string>> moves) {
  std::vector<Tenant*> refused;
  auto token_after = [&](const Tenant* t) -> const std::string& {
    for (const auto& [mover, token] : moves)
      if (mover == t) return token;
    return t->spec.token;
  };
  auto clashes = [&](const Tenant* t, const std::string& token) {
    if (!not_the_admin_token(t->spec.name, token).ok()) return true;
    bool clash = false;  // every tenant compared, as token checks do
    for (Tenant* other : tenants_.list()) clash = (other != t && tokens_equal(token_after(other), token)) || clash;
    return clash;
  };
  // Refusing one move keeps its tenant's token, which another move may have counted on: again.
  for (auto it = moves.begin(); it != moves.end();) {
    if (clashes(it->first, it->second)) {
      refused.push_back(it->first);
      moves.erase(it);
      it = moves.begin();
    } else {
      ++it;
    }
  }
  for (const auto& [t, token] : moves) {
    t->spec.token = token;
    log::info("tenant.token", {{"tenant", t->spec.name}, {"action", "replaced"}});
  }
  return refused;
}

void Supervisor::remove_tenant(Tenant& t, bool force, std::shared_ptr<Responder> responder) {
  if (t.running > 0 && !force) {
    responder->send(HttpResponse::error(409, "conflict", "tenant " + t.spec.name + " has " +
                                                             std::to_string(t.running) + " running workers"));
    return;
  }
  t.removing = true;
  tenant_removals_[t.spec.name] = std::move(responder);
  // Starting ones too: one whose exec is still pending would otherwise run on and hold the
  // removal up. (One whose spawn the helper has not answered yet is ended by on_spawned.)
  for (Worker* w : workers(&t))
    if (alive(*w) && !w->spawn_pending) (void)signal_worker(*w, SIGKILL);
  // Called from a request or a reload, not from a template's callback: with nothing running, all
  // of it goes now. (The last exit of a forced removal finishes it from the loop instead.)
  maybe_finish_tenant_removal(t, Teardown::now);
}

void Supervisor::maybe_finish_tenant_removal(Tenant& t, Teardown when) {
  if (!t.removing || t.running > 0) return;
  std::string name = t.spec.name;
  // After its templates (torn down `when` says): its namespace holder (SIGKILL,
  // reaped once the keepers are) and its cgroup (removing it kills what is left in it). Either
  // kills the templates' keepers, which a template still alive would report as its failure.
  std::shared_ptr<fwp::TenantNamespaces> holder;
  if (auto it = tenant_namespaces_.find(name); it != tenant_namespaces_.end()) {
    holder = std::move(it->second);
    tenant_namespaces_.erase(it);
  }
  drop_templates(name, std::shared_ptr<void>(nullptr, [this, name, holder](void*) mutable {
                   holder.reset();
                   if (auto r = cgroups_.remove(name); !r.ok())
                     log::warn("tenant.cgroup_remove", {{"tenant", name}, {"error", r.error().message()}});
                 }), when);
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->second->tenant == name && it->second->state != WorkerState::starting) it = workers_.erase(it);
    else ++it;
  }
  auto responder = std::move(tenant_removals_[name]);
  tenant_removals_.erase(name);
  tenants_.remove(name);
  tenants_left_running_.erase(name);
  log::info("tenant.remove", {{"tenant", name}});
  if (responder) responder->send(no_content());
}

Worker* Supervisor::find_worker(const std::string& id) {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : it->second.get();
}

std::vector<Worker*> Supervisor::workers(const Tenant* only) {
  std::vector<Worker*> out;
  for (auto& [id, w] : workers_)
    if (!only || w->tenant == only->spec.name) out.push_back(w.get());
  std::sort(out.begin(), out.end(), [](Worker* a, Worker* b) { return a->created_at < b->created_at; });
  return out;
}

uint32_t Supervisor::running_total() const {
  uint32_t n = 0;
  for (auto& [id, w] : workers_) n += (w->state == WorkerState::running || w->state == WorkerState::starting) ? 1 : 0;
  return n;
}

void Supervisor::run_worker(Tenant& tenant, RunSpec spec, std::shared_ptr<Responder> responder) {
  if (shutting_down_) return responder->send(HttpResponse::error(503, "shutting_down", "plumed is shutting down"));
  if (tenant.removing) return responder->send(HttpResponse::error(409, "conflict", "tenant is being removed"));
  if (tenant.spec.limits.max_workers && tenant.running >= tenant.spec.limits.max_workers)
    return responder->send(HttpResponse::error(
        429, "limit_exceeded",
        "tenant " + tenant.spec.name + " already runs " + std::to_string(tenant.running) + " workers (max_workers)"));
  Image* image = images_.find(spec.image);
  if (!image) return responder->send(HttpResponse::error(404, "not_found", "no image named " + spec.image));
  if (spec.fwp) return run_fwp(tenant, *image, std::move(spec), responder);

  auto w = std::make_unique<Worker>(config_.daemon.log_buffer_bytes);
  do w->id = random_worker_id("w-");
  while (workers_.count(w->id));
  w->tenant = tenant.spec.name;
  w->image = image->spec.name;
  w->argv = spec.argv;
  w->created_at = std::chrono::system_clock::now();
  const TenantLimits& tl = tenant.spec.limits;
  w->limits.memory_bytes = cap(spec.limits.memory_bytes, tl.memory_bytes);
  w->limits.pids_max = cap(spec.limits.pids_max, tl.pids_max);
  w->limits.cpu_percent = cap(spec.limits.cpu_percent, tl.cpu_percent);
  w->cgroup = tenant.spec.name + "/" + w->id;
  Worker& worker = *w;
  workers_[w->id] = std::move(w);
  tenant.meter.workers_started++;
  tenant.running++;
  worker.start_responder = std::move(responder);

  // Everything the pipeline needs is prepared here, in the parent: the child only makes syscalls.
  if (auto r = cgroups_.create(worker.cgroup, worker.limits); !r.ok())
    return fail_start(worker, "cgroup: " + r.error().message(), 500, "internal");
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return fail_start(worker, "pipe2: " + std::string(std::strerror(errno)), 500, "internal");
  UniqueFd out_w(out_pipe[1]);
  worker.out_fd.reset(out_pipe[0]);
  if (::pipe2(err_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return fail_start(worker, "pipe2: " + std::string(std::strerror(errno)), 500, "internal");
  UniqueFd err_w(err_pipe[1]);
  worker.err_fd.reset(err_pipe[0]);
  // The worker's end must block like any ordinary stdout.
  ::fcntl(out_w.get(), F_SETFL, 0);
  ::fcntl(err_w.get(), F_SETFL, 0);
  UniqueFd null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_in) return fail_start(worker, "open /dev/null: " + std::string(std::strerror(errno)), 500, "internal");

  fwp::SandboxSpec sb;
  sb.name = worker.id;
  sb.argv = spec.argv;
  sb.env = spec.env;
  sb.cwd = spec.cwd;
  sb.uid_map = {0, tenant.spec.uid_base, tenant.spec.uid_count};
  sb.gid_map = {0, tenant.spec.uid_base, tenant.spec.uid_count};
  sb.rootfs.path = image->rootfs_path;
  sb.rootfs.read_only = image->read_only;
  sb.rootfs.staging_dir = staging_dir_;
  sb.cgroup_procs_files = cgroups_.procs_files(worker.cgroup);
  UniqueFd cgroup_dir;
  if (cgroups_.version() == fwp::CgroupVersion::v2) {
    auto d = cgroups_.open_dir_for_clone(worker.cgroup);
    if (d.ok()) {
      cgroup_dir = std::move(d.value());
      sb.cgroup_dir_fd = cgroup_dir.get();
      sb.cgroup_procs_files.clear();
    }
  }
  sb.rlimits = {{RLIMIT_CORE, 0, 0}, {RLIMIT_NOFILE, 1024, 1024}};
  sb.seccomp = &image->filter;
  sb.granted_fds = {null_in.get(), out_w.get(), err_w.get()};

  std::string id = worker.id;
  const uint64_t timeout_ms = spec.timeout_ms;
  if (spawner_ != nullptr) {
    // The helper clones it while the loop goes on; the request carried copies of the stdio ends
    // and the cgroup fd, so ours close on return.
    auto sent = spawner_->spawn_async(sb, [this, id, timeout_ms](Result<fwp::Process, fwp::SpawnError> proc) {
      on_spawned(id, std::move(proc), timeout_ms);
    });
    if (!sent.answered) {
      worker.spawn_pending = true;
      return;
    }
    return on_spawned(id, std::move(*sent.answered), timeout_ms);
  }
  on_spawned(id, fwp::spawn(sb), timeout_ms);
}

void Supervisor::watch_spawn_answers() {
  spawn_answers_op_ = loop_.poll(spawner_->answer_fd(), POLLIN, [this](int) {
    spawn_answers_op_ = 0;
    spawner_->on_answers();
    // Dead, the helper's socket stays at end of file: watching it would spin.
    if (!spawner_->gone() || spawner_->pending() > 0) watch_spawn_answers();
  });
}

void Supervisor::on_spawned(const std::string& id, Result<fwp::Process, fwp::SpawnError> proc,
                            uint64_t timeout_ms) {
  Worker* found = find_worker(id);
  if (found == nullptr) {  // not expected: a starting worker's record is kept
    if (proc.ok()) {
      (void)pidfd_send_signal(proc->pidfd.get(), SIGKILL);
      (void)fwp::reap(proc->pidfd.get(), /*block=*/true);
    }
    return;
  }
  Worker& worker = *found;
  worker.spawn_pending = false;
  if (!proc.ok()) return fail_start(worker, proc.error().message(), 422, "spawn_failed");
  worker.pid = proc->pid;
  worker.pidfd = std::move(proc->pidfd);
  worker.status_fd = std::move(proc->status_fd);
  worker.sync_fd = std::move(proc->sync_fd);
  worker.state = WorkerState::starting;

  worker.status_op = loop_.poll(worker.status_fd.get(), POLLIN, [this, id](int) {
    if (Worker* wk = find_worker(id)) {
      wk->status_op = 0;
      on_exec_status(*wk);
    }
  });
  worker.exit_op = loop_.poll(worker.pidfd.get(), POLLIN, [this, id](int) {
    if (Worker* wk = find_worker(id)) {
      wk->exit_op = 0;
      on_exit(*wk);
    }
  });
  arm_log(worker, true);
  arm_log(worker, false);
  if (timeout_ms > 0) {
    worker.timeout_op = loop_.after(std::chrono::milliseconds(timeout_ms), [this, id]() {
      Worker* wk = find_worker(id);
      if (!wk || (wk->state != WorkerState::running && wk->state != WorkerState::starting)) return;
      wk->timeout_op = 0;
      wk->killed_for_timeout = true;
      log::info("worker.timeout", {{"tenant", wk->tenant}, {"id", wk->id}});
      (void)signal_worker(*wk, SIGKILL);
    });
  }
  // Shutdown or the tenant's removal began while the helper was cloning it: they have signalled
  // every worker they could see, so this one is ended here.
  const Tenant* tenant = tenants_.find(worker.tenant);
  if (shutting_down_ || tenant == nullptr || tenant->removing) (void)signal_worker(worker, SIGKILL);
}

void Supervisor::fail_start(Worker& w, const std::string& message, int status, const std::string& code) {
  log::warn("worker.spawn_failed", {{"tenant", w.tenant}, {"id", w.id}, {"error", message}});
  auto responder = std::move(w.start_responder);
  w.start_responder.reset();
  if (w.pidfd) {
    // The child reported a failed step and _exit(127)s: reap it so nothing is left behind.
    (void)fwp::reap(w.pidfd.get(), /*block=*/true);
  }
  ExitInfo info;
  info.cause = ExitCause::spawn_failed;
  info.code = 127;
  info.message = message;
  w.pid = 0;  // it never ran: no pid to report
  std::string id = w.id;
  finish(w, info);
  Worker* still = find_worker(id);
  if (responder) {
    json body = {{"error", {{"code", code}, {"message", message}}}};
    if (still) body["worker"] = worker_json(*still);
    responder->send(json_response(status, body));
  }
}

void Supervisor::on_exec_status(Worker& w) {
  if (w.state != WorkerState::starting) return;
  std::optional<fwp::SpawnError> failed = fwp::read_exec_status(w.status_fd.get());
  w.status_fd.reset();
  w.sync_fd.reset();
  if (failed) {
    if (w.exit_op) loop_.cancel(w.exit_op), w.exit_op = 0;
    return fail_start(w, failed->message(), 422, "spawn_failed");
  }
  w.state = WorkerState::running;
  log::info("worker.start", {{"tenant", w.tenant}, {"id", w.id}, {"pid", w.pid}, {"image", w.image}, {"argv0", w.argv[0]}});
  if (auto r = std::move(w.start_responder)) {
    w.start_responder.reset();
    r->send(json_response(201, worker_json(w)));
  }
}

void Supervisor::on_exit(Worker& w) {
  if (w.state == WorkerState::starting) {
    // Exited before we read its exec status: settle that first (the pipe is at EOF or has a record).
    if (w.status_op) loop_.cancel(w.status_op), w.status_op = 0;
    std::string id = w.id;
    on_exec_status(w);
    // A spawn failure has already finished (and may have released) the record.
    Worker* still = find_worker(id);
    if (still != &w || w.state != WorkerState::running) return;
  }
  auto status = fwp::reap(w.pidfd.get(), /*block=*/true);
  ExitInfo info;
  if (!status.ok()) {
    info.cause = ExitCause::signal;
    info.message = "reap: " + status.error().message();
  } else {
    refresh_usage(w);
    auto stats = cgroups_.stats(w.cgroup);
    uint64_t oom_kills = stats.ok() ? stats->oom_kills : 0;
    const fwp::ExitStatus& st = status.value();
    if (st.exited) {
      info.cause = ExitCause::exit;
      info.code = st.code;
    } else {
      info.signal = st.signal;
      info.code = 128 + st.signal;
      if (w.killed_for_timeout) info.cause = ExitCause::limit, info.message = "killed after timeout_ms";
      else if (st.signal == SIGKILL && oom_kills > 0) info.cause = ExitCause::oom, info.message = "killed by the OOM killer (memory limit)";
      else if (st.signal == SIGXCPU || st.signal == SIGXFSZ) info.cause = ExitCause::limit, info.message = "resource limit exceeded";
      else info.cause = ExitCause::signal;
      if (info.cause == ExitCause::signal && st.signal == SIGKILL && w.requested_signal != 0 &&
          w.requested_signal != SIGKILL) {
        // plumed applied this signal's default action for it (see signal_worker).
        info.signal = w.requested_signal;
        info.code = 128 + w.requested_signal;
        info.message = std::string("SIG") + signal_name(w.requested_signal) +
                       " (pid 1 has no handler: plumed applied its default action)";
      }
    }
  }
  finish(w, info);
}

void Supervisor::arm_log(Worker& w, bool stdout_stream) {
  UniqueFd& fd = stdout_stream ? w.out_fd : w.err_fd;
  if (!fd) return;
  std::string id = w.id;
  EventLoop::OpId op = loop_.poll(fd.get(), POLLIN, [this, id, stdout_stream](int) {
    Worker* wk = find_worker(id);
    if (!wk) return;
    (stdout_stream ? wk->out_op : wk->err_op) = 0;
    drain_log(*wk, stdout_stream);
    wake_log_waiters(*wk);
    arm_log(*wk, stdout_stream);
  });
  (stdout_stream ? w.out_op : w.err_op) = op;
}

void Supervisor::drain_log(Worker& w, bool stdout_stream) {
  UniqueFd& fd = stdout_stream ? w.out_fd : w.err_fd;
  LogBuffer& buf = stdout_stream ? w.out : w.err;
  char chunk[16384];
  // Bounded per wake-up so a flooding worker cannot monopolise the loop.
  for (int i = 0; i < 16 && fd; ++i) {
    ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
    if (n > 0) {
      buf.append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    fd.reset();  // EOF or error: every writer is gone
  }
}

void Supervisor::refresh_usage(Worker& w) {
  // A featherweight instance in its template's cgroup has no group of its own ("" would name
  // Plume's whole subtree, every tenant's usage): the kernel's figures for its process instead.
  if (w.cgroup.empty()) {
    const fwp::Instance* inst = w.fwp ? instance_of(w) : nullptr;
    if (auto usage = inst ? inst->usage_now() : std::nullopt) {
      w.cpu_ns = std::max(w.cpu_ns, usage->cpu_ns);
      w.peak_memory_bytes = std::max(w.peak_memory_bytes, usage->peak_rss_bytes);
    }
    return;
  }
  auto stats = cgroups_.stats(w.cgroup);
  if (!stats.ok()) return;
  w.cpu_ns = std::max(w.cpu_ns, stats->cpu_usage_ns);
  w.peak_memory_bytes = std::max(w.peak_memory_bytes, stats->memory_peak_bytes);
}

void Supervisor::finish(Worker& w, ExitInfo info) {
  for (EventLoop::OpId* op : {&w.exit_op, &w.status_op, &w.out_op, &w.err_op, &w.timeout_op, &w.channel_op, &w.room_op}) {
    if (*op) loop_.cancel(*op);
    *op = 0;
  }
  // Whatever the worker wrote before it died is still in the pipes: keep it.
  drain_log(w, true);
  drain_log(w, false);
  w.out_fd.reset();
  w.err_fd.reset();
  w.status_fd.reset();
  w.sync_fd.reset();
  w.pidfd.reset();
  if (!w.cgroup.empty())  // an instance's own cgroup belongs to its template
    if (auto r = cgroups_.remove(w.cgroup); !r.ok())
      log::warn("worker.cgroup_remove", {{"id", w.id}, {"error", r.error().message()}});

  w.state = info.cause == ExitCause::spawn_failed ? WorkerState::failed : WorkerState::exited;
  w.ended_at = std::chrono::system_clock::now();
  w.exit = info;
  if (Tenant* t = tenants_.find(w.tenant)) {
    if (t->running > 0) t->running--;
    t->meter.exited[static_cast<int>(info.cause)]++;
    t->meter.cpu_ns_exited += w.cpu_ns;
    t->meter.peak_memory_bytes = std::max(t->meter.peak_memory_bytes, w.peak_memory_bytes);
  }
  log::info("worker.exit", {{"tenant", w.tenant}, {"id", w.id}, {"pid", w.pid}, {"cause", exit_cause_name(info.cause)},
                            {"code", info.code}, {"signal", info.signal}, {"cpu_ns", w.cpu_ns},
                            {"peak_memory_bytes", w.peak_memory_bytes}});
  refuse_room_waiters(w, 409, "conflict",
                     "worker " + w.id + " ended before its channel had room for these messages; none of them were sent");
  answer_reply_waiters(w, true);
  wake_log_waiters(w);  // ended: every follower gets the rest and the end
  auto waiters = std::move(w.waiters);
  w.waiters.clear();
  json body = worker_json(w);
  for (auto& [responder, timer] : waiters) {
    if (timer) loop_.cancel(timer);
    responder->send(json_response(200, body));
  }
  std::string tenant = w.tenant;
  if (Tenant* t = tenants_.find(tenant)) maybe_finish_tenant_removal(*t);
  trim_exited(tenant);
  maybe_finish_shutdown();
}

void Supervisor::trim_exited(const std::string& tenant) {
  std::vector<Worker*> ended;
  for (auto& [id, w] : workers_)
    if (w->tenant == tenant && (w->state == WorkerState::exited || w->state == WorkerState::failed)) ended.push_back(w.get());
  if (ended.size() <= config_.daemon.max_exited_workers) return;
  std::sort(ended.begin(), ended.end(), [](Worker* a, Worker* b) { return a->ended_at < b->ended_at; });
  size_t excess = ended.size() - config_.daemon.max_exited_workers;
  for (size_t i = 0; i < excess; ++i) workers_.erase(ended[i]->id);
}

SysResult<void> Supervisor::signal_worker(Worker& w, int sig) {
  if (w.fwp) {
    auto t = templates_.find(w.template_key);
    if (!alive(w) || t == templates_.end()) return fail(plain_error("kill", w.id + " is not running"));
    if (auto r = t->second->kill(w.instance_id, sig); !r.ok()) return r;
    log::info("worker.signal", {{"tenant", w.tenant}, {"id", w.id}, {"signal", signal_name(sig)}});
    return {};
  }
  if (!w.pidfd) return fail(plain_error("pidfd_send_signal", w.id + " is not running"));
  // The worker is pid 1 of its pid namespace, and the kernel drops any signal an init has no
  // handler for (SIGKILL and SIGSTOP aside). So plumed applies the default action itself, as the
  // kernel would for an ordinary process: a signal that would terminate it becomes SIGKILL, and
  // the exit is reported with the signal that was asked for.
  int delivered = sig;
  if (sig != SIGKILL && sig != SIGSTOP) {
    SignalDisposition d = signal_disposition(w.pid, sig);
    if (d == SignalDisposition::default_action) {
      if (default_action_terminates(sig)) delivered = SIGKILL;
      else if (default_action_stops(sig)) delivered = SIGSTOP;
      else delivered = 0;  // ignored by default: nothing happens, as for any process
    }
  }
  if (delivered == SIGKILL && w.requested_signal == 0) w.requested_signal = sig;
  if (delivered != 0 && pidfd_send_signal(w.pidfd.get(), delivered) != 0) {
    if (delivered == SIGKILL && w.requested_signal == sig) w.requested_signal = 0;
    return fail(sys_error("pidfd_send_signal", w.id));
  }
  log::info("worker.signal", {{"tenant", w.tenant}, {"id", w.id}, {"signal", signal_name(sig)},
                              {"delivered", delivered ? signal_name(delivered) : "none"}});
  return {};
}

void Supervisor::wait_worker(Worker& w, uint64_t timeout_ms, std::shared_ptr<Responder> responder) {
  if (w.state == WorkerState::exited || w.state == WorkerState::failed)
    return responder->send(json_response(200, worker_json(w)));
  EventLoop::OpId timer = 0;
  if (timeout_ms > 0) {
    std::string id = w.id;
    Responder* key = responder.get();
    timer = loop_.after(std::chrono::milliseconds(timeout_ms), [this, id, key]() {
      Worker* wk = find_worker(id);
      if (!wk) return;
      auto it = std::find_if(wk->waiters.begin(), wk->waiters.end(), [&](auto& p) { return p.first.get() == key; });
      if (it == wk->waiters.end()) return;
      auto r = std::move(it->first);
      wk->waiters.erase(it);
      r->send(json_response(200, worker_json_now(*wk)));
    });
  }
  // Drop waiters whose clients went away, so a client that loops on wait cannot grow this list.
  std::erase_if(w.waiters, [&](auto& p) {
    if (p.first->connected()) return false;
    if (p.second) loop_.cancel(p.second);
    return true;
  });
  w.waiters.emplace_back(std::move(responder), timer);
}

bool Supervisor::remove_worker(const std::string& id) {
  Worker* w = find_worker(id);
  if (!w || (w->state != WorkerState::exited && w->state != WorkerState::failed)) return false;
  workers_.erase(id);
  return true;
}

json Supervisor::worker_json_now(Worker& w) {
  if (w.state == WorkerState::running) refresh_usage(w);
  return worker_json(w);
}

json Supervisor::worker_json(Worker& w) {
  if (w.fwp)
    if (fwp::Instance* inst = instance_of(w); inst && inst->pid() > 0) w.pid = inst->pid();
  json j = {{"id", w.id},
            {"tenant", w.tenant},
            {"image", w.image},
            {"argv", w.argv},
            {"pid", w.pid},
            {"state", worker_state_name(w.state)},
            {"kind", w.fwp ? "fwp" : "exec"},
            {"created_at", rfc3339(w.created_at)},
            {"cpu_ns", w.cpu_ns},
            {"peak_memory_bytes", w.peak_memory_bytes},
            {"limits", {{"memory_bytes", w.limits.memory_bytes}, {"pids_max", w.limits.pids_max},
                        {"cpu_percent", w.limits.cpu_percent}}}};
  if (w.fwp) {
    j["start_path"] = w.from_pool ? "pool" : "fork";
    j["messages"] = {{"in", w.messages_in}, {"out", w.messages_out}, {"waiting_for_room", w.room_waiters.size()}};
  }
  if (w.exit) {
    j["ended_at"] = rfc3339(w.ended_at);
    json e = {{"cause", exit_cause_name(w.exit->cause)}, {"code", w.exit->code}};
    if (w.exit->signal) {
      e["signal"] = w.exit->signal;
      e["signal_name"] = signal_name(w.exit->signal);
    }
    if (!w.exit->message.empty()) e["message"] = w.exit->message;
    j["exit"] = e;
  }
  return j;
}

void Supervisor::owned_by_config(const Config& c) {
  config_tenants_.clear();
  config_images_.clear();
  for (const TenantSpec& t : c.tenants) config_tenants_.insert(t.name);
  for (const ImageSpec& i : c.images) config_images_.insert(i.name);
}

json Supervisor::tenant_json(Tenant& t) {
  return {{"name", t.spec.name},
          {"origin", config_names_tenant(t.spec.name) ? "config" : "api"},
          {"uid_base", t.spec.uid_base},
          {"uid_count", t.spec.uid_count},
          {"limits", limits_to_json(t.spec.limits)},
          {"workers_running", t.running}};
}

json Supervisor::tenant_stats_json(Tenant& t) {
  uint64_t cpu = t.meter.cpu_ns_exited;
  uint64_t peak = t.meter.peak_memory_bytes;
  for (Worker* w : workers(&t)) {
    if (w->state != WorkerState::running) continue;
    refresh_usage(*w);
    cpu += w->cpu_ns;
    peak = std::max(peak, w->peak_memory_bytes);
  }
  // The kernel's count for the tenant's cgroup, which holds every process of the tenant: its
  // workers, its templates (their init and forks) and whatever they leave running. The sum over
  // workers misses the rest, and an ended featherweight instance's own figure is its template's
  // word (the rusage the template reports when it reaps it). The count includes every honest figure
  // in the sum, so the larger of the two is the count, or the sum where there is no count (v1
  // without cpuacct) or where the tenant inflated its own figures.
  if (auto whole = cgroups_.stats(t.spec.name); whole.ok()) cpu = std::max(cpu, whole->cpu_usage_ns);
  json exited = json::object();
  for (ExitCause c : kAllExitCauses) exited[exit_cause_name(c)] = t.meter.exited[static_cast<int>(c)];
  return {{"name", t.spec.name},
          {"workers_started", t.meter.workers_started},
          {"workers_running", t.running},
          {"exited", exited},
          {"cpu_ns", cpu},
          {"peak_memory_bytes", peak},
          {"messages", {{"in", t.meter.messages_in}, {"out", t.meter.messages_out}}}};
}

void Supervisor::shutdown(std::function<void()> done) {
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  uint32_t n = 0;
  for (auto& [id, w] : workers_)
    if (w->pidfd || (w->fwp && alive(*w))) (void)signal_worker(*w, SIGTERM), ++n;
  log::info("plumed.shutdown", {{"workers", n}, {"grace_ms", config_.daemon.shutdown_grace_ms}});
  shutdown_timer_ = loop_.after(std::chrono::milliseconds(config_.daemon.shutdown_grace_ms), [this]() {
    shutdown_timer_ = 0;
    for (auto& [id, w] : workers_)
      if (w->pidfd || (w->fwp && alive(*w))) (void)signal_worker(*w, SIGKILL);
  });
  maybe_finish_shutdown();
}

void Supervisor::maybe_finish_shutdown() {
  if (!shutting_down_ || !shutdown_done_) return;
  for (auto& [id, w] : workers_)
    if (w->pidfd || w->spawn_pending || (w->fwp && alive(*w))) return;  // still alive, or to be
  drop_templates("");
  if (template_teardowns_ > 0) return;  // each teardown calls back here when done
  tenant_namespaces_.clear();
  if (shutdown_timer_) loop_.cancel(shutdown_timer_), shutdown_timer_ = 0;
  for (Tenant* t : tenants_.list())
    if (auto r = cgroups_.remove(t->spec.name); !r.ok())
      log::warn("tenant.cgroup_remove", {{"tenant", t->spec.name}, {"error", r.error().message()}});
  if (auto r = cgroups_.remove(""); !r.ok()) log::warn("cgroup.remove_root", {{"error", r.error().message()}});
  ::rmdir(staging_dir_.c_str());
  auto done = std::move(shutdown_done_);
  shutdown_done_ = nullptr;
  done();
}

}  // namespace plume::kernel
