// Supervisor: plumed's control core. Owns the tenants, the images, the worker table and the
// cgroups; starts workers through fwp's containment pipeline and observes them through the event
// loop (a pidfd per worker, its log pipes, its timeout): nothing is polled.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config.h"
#include "images.h"
#include "log_buffer.h"
#include "loop_poller.h"
#include "plume/base/unique_fd.h"
#include "plume/fwp/cgroup.h"
#include "plume/fwp/spawn_service.h"
#include "plume/fwp/template.h"
#include "plume/fwp/tenant_namespaces.h"
#include "plume/kernel/event_loop.h"
#include "plume/kernel/http_server.h"
#include "run_spec.h"
#include "tenants.h"

namespace plume::kernel {


enum class WorkerState { starting, running, exited, failed };
const char* worker_state_name(WorkerState s);

struct ExitInfo {
  ExitCause cause = ExitCause::exit;
  int code = 0;
  int signal = 0;
  std::string message;
};

struct Worker {
  std::string id;
  std::string tenant;
  std::string image;
  std::vector<std::string> argv;
  pid_t pid = 0;
  WorkerState state = WorkerState::starting;
  std::chrono::system_clock::time_point created_at, ended_at;
  std::optional<ExitInfo> exit;
  uint64_t cpu_ns = 0;
  uint64_t peak_memory_bytes = 0;
  fwp::CgroupLimits limits;
  std::string cgroup;  // relative to plume's cgroup parent: "<tenant>/<id>"
  LogBuffer out, err;
  bool killed_for_timeout = false;
  int requested_signal = 0;  // a signal plumed turned into SIGKILL for this pid-1 worker

  // Featherweight instances: forked from the template of (tenant, image), reached through it.
  bool fwp = false;
  bool from_pool = false;    // fwp: taken from the warm pool (else forked from the template)
  std::string template_key;  // "<tenant>/<image>"
  uint64_t instance_id = 0;
  // fwp: its channel while it runs, read as messages arrive (instance_messages.cc).
  EventLoop::OpId channel_op = 0;  // the futex wait on its doorbell, or a back-off timer
  uint32_t empty_wakes = 0;        // wake-ups in a row that found nothing to read
  bool channel_broken = false;     // it broke the channel's protocol (it was killed for it)
  uint64_t messages_in = 0, messages_out = 0;  // sent to it by clients / read from it
  struct ReplyWaiter {             // a POST .../messages waiting for the instance's replies
    std::shared_ptr<Responder> responder;
    size_t sent = 0, want = 0, received = 0;
    std::vector<std::string> got;  // the replies received, unless its client went away
    bool base64 = false;           // answer them in base64 (the request's "encoding")
    EventLoop::OpId timer = 0;
  };
  std::vector<std::unique_ptr<ReplyWaiter>> reply_waiters;  // oldest first
  struct RoomWaiter {  // a POST .../messages whose messages wait for room in the channel
    std::shared_ptr<Responder> responder;
    MessagesRequest asked;
    EventLoop::OpId timer = 0;
  };
  std::vector<std::unique_ptr<RoomWaiter>> room_waiters;  // oldest first: sent in this order
  EventLoop::OpId room_op = 0;   // the futex wait on its channel's space bell, or a timer
  uint32_t empty_room_wakes = 0;  // space bell wake-ups in a row after which nothing fitted
  struct LogWaiter {  // a GET .../logs?since=N&wait_ms=T waiting for bytes after N
    std::shared_ptr<Responder> responder;
    bool stdout_stream = true;
    uint64_t since = 0;
    EventLoop::OpId timer = 0;
  };
  std::vector<std::unique_ptr<LogWaiter>> log_waiters;

  // Live-process resources; all released when the worker ends.
  UniqueFd pidfd, status_fd, out_fd, err_fd;
  UniqueFd sync_fd;  // held until the exec status is known (the child checks it for a dead parent)
  bool spawn_pending = false;  // asked of the spawn helper, not answered yet: no pid, no pidfd
  EventLoop::OpId exit_op = 0, status_op = 0, out_op = 0, err_op = 0, timeout_op = 0;
  std::shared_ptr<Responder> start_responder;  // answered once execve succeeded or failed
  std::vector<std::pair<std::shared_ptr<Responder>, EventLoop::OpId>> waiters;  // GET .../wait

  Worker(size_t log_capacity) : out(log_capacity), err(log_capacity) {}
};

class Supervisor {
 public:
  // `spawner`: the spawn helper every worker, template and namespace holder is cloned by (see
  // plume/fwp/spawn_service.h); null: plumed clones them itself.
  Supervisor(EventLoop& loop, Config config, fwp::CgroupManager cgroups, fwp::SpawnService* spawner = nullptr);
  ~Supervisor();

  // Creates the cgroup tree, the staging directory and the configured tenants and images.
  ConfigResult<bool> init();

  const Config& config() const { return config_; }
  // Whether the configuration plumed runs on (the file, or the built-in one) names this tenant or
  // image: the file's, changed through it and a reload, not through the API. Set from config() at
  // init() and by each reload (owned_by_config).
  bool config_names_tenant(const std::string& name) const { return config_tenants_.count(name) != 0; }
  bool config_names_image(const std::string& name) const { return config_images_.count(name) != 0; }
  void owned_by_config(const Config& c);
  // What a reload found dropped from the file while some of its workers ran: kept then, and
  // tried again at each reload until it goes. Any removal of the name forgets it here.
  std::set<std::string>& tenants_left_running() { return tenants_left_running_; }
  std::set<std::string>& images_left_running() { return images_left_running_; }
  TenantRegistry& tenants() { return tenants_; }
  ImageRegistry& images() { return images_; }
  fwp::CgroupManager& cgroups() { return cgroups_; }
  bool shutting_down() const { return shutting_down_; }
  std::chrono::steady_clock::time_point started_at() const { return started_at_; }

  ConfigResult<Tenant*> add_tenant(TenantSpec spec);
  // Gives a running tenant a new token and limits (a reload, PATCH /v1/tenants/<name>). The
  // limits go to its cgroup (its workers' cgroups sit below it, so they are held to them at once).
  // All or nothing: a token another tenant holds, a limit of 0 (lifting a limit would need each
  // controller's "no limit" value written, which create() never does either), or limits the
  // cgroup refuses (v1 refuses a memory limit below what the group uses) change nothing.
  ConfigResult<bool> update_tenant(Tenant& tenant, const std::string& token, const TenantLimits& limits);
  // Gives running tenants new tokens all at once, so that tokens can change hands among them (a
  // reload that swaps two tenants' tokens). A move is refused where the admin or another tenant
  // would still hold its token afterwards, and so is any move that then clashes with a refused
  // one's tenant keeping its token. Returns the tenants whose moves were refused.
  std::vector<Tenant*> move_tokens(std::vector<std::pair<Tenant*, std::string>> moves);
  // A limit of 0 among those a cgroup holds: "no limit", which update_tenant refuses (above).
  static bool lifts_a_limit(const TenantLimits& l) {
    return l.memory_bytes == 0 || l.pids_max == 0 || l.cpu_percent == 0 || l.cpu_weight == 0;
  }
  // Resizes a featherweight image's warm pool, in its spec and in every template made from it
  // (fwp::Template::set_pool_size): a larger pool refills in the background, parked instances
  // beyond a smaller one are killed. Running instances are not touched.
  void set_pool_size(Image& image, uint32_t pool_size);
  // Featherweight instances of this image running now, in every tenant.
  size_t running_instances_of(const std::string& image) const;
  // How many of those a removal or replacement of the image would stop: refused, with the count,
  // while any runs, unless `force`.
  ConfigResult<size_t> instances_to_stop(const std::string& image, bool force) const;
  // Removes an image, and with it its templates in every tenant: their warm pools and their
  // groups, torn down before this returns, so that the name can be added again at once. Refused
  // while an instance of it runs, unless `force` kills those first; and for the built-in host.
  // False: no image of that name.
  ConfigResult<bool> remove_image(const std::string& name, bool force);
  // Puts an image made by ImageRegistry::prepare (checked and compiled, so that one that fails
  // never reaches here and the old image stays) in place of the one of its name, whose templates
  // go as above. Refused while an instance of the old one runs, unless `force` kills those first.
  ConfigResult<Image*> replace_image(std::unique_ptr<Image> prepared, bool force);
  // Removes a tenant with no running workers, its templates, namespaces and cgroup before it
  // returns (a tenant of that name can be added at once); with force, kills them first and
  // answers once the last one has exited.
  void remove_tenant(Tenant& tenant, bool force, std::shared_ptr<Responder> responder);

  // Starts a worker; answers 201 once execve succeeded, 422 if a pipeline step failed.
  void run_worker(Tenant& tenant, RunSpec spec, std::shared_ptr<Responder> responder);
  Worker* find_worker(const std::string& id);
  std::vector<Worker*> workers(const Tenant* only = nullptr);
  SysResult<void> signal_worker(Worker& w, int sig);
  // Answers with the worker once it has ended, or as it is after timeout_ms (0: no limit).
  void wait_worker(Worker& w, uint64_t timeout_ms, std::shared_ptr<Responder> responder);
  // POST /v1/workers/<id>/messages: puts `messages` into a running instance's channel, all or
  // none, then answers with the next `replies` messages it sends, or what came of them once
  // timeout_ms (0: no limit) has passed or it has ended (instance_messages.cc).
  void send_instance_messages(Worker& w, const MessagesRequest& asked, std::shared_ptr<Responder> responder);
  // Reads what a running instance has sent and not yet been read (before its log is shown).
  void read_instance_messages(Worker& w);
  // GET /v1/workers/<id>/logs: what one stream kept after absolute byte `since` (0: all of it),
  // answered at once, or, with wait_ms > 0 while there is nothing after `since` and the worker
  // runs, once there is, it has ended or wait_ms has passed (worker_logs.cc).
  void worker_log(Worker& w, bool stdout_stream, uint64_t since, uint64_t wait_ms, std::shared_ptr<Responder> responder);
  bool remove_worker(const std::string& id);  // exited or failed workers only

  // CPU and peak memory of a running worker, read now from its cgroup (or, for a featherweight
  // instance without one, from its process).
  void refresh_usage(Worker& w);
  // The worker as the API shows it, with the figures it holds (no /proc or cgroup reads: a
  // start's own response must not delay the instance it just woke on this CPU).
  json worker_json(Worker& w);
  // The same with its usage read afresh while it runs (refresh_usage): what a GET answers.
  json worker_json_now(Worker& w);
  json tenant_json(Tenant& t);
  json tenant_stats_json(Tenant& t);
  uint32_t running_total() const;

  // One running template (a tenant's fwp image) and its warm pool, for /metrics.
  struct TemplateView {
    std::string tenant, image;
    size_t pool_size = 0;   // configured
    size_t pool_ready = 0;  // parked instances set up and waiting now
    size_t spinning_standbys = 0;  // granted from the host's budget (≤ the image's)
    fwp::TemplateStats stats;
  };
  std::vector<TemplateView> template_views();
  // The spawn helper, for /metrics; null where plumed spawns in itself from the start.
  const fwp::SpawnService* spawner() const { return spawner_; }

  // SIGTERM to every worker, SIGKILL after the grace period, then `done` once all have exited
  // and every cgroup, socket and runtime file is removed.
  void shutdown(std::function<void()> done);

 private:
  // How templates are torn down: from the loop, or at once (never from a template's own callback).
  enum class Teardown { from_the_loop, now };
  void fail_start(Worker& w, const std::string& message, int status, const std::string& code);
  // An exec-mode worker's spawn answered (by the helper, or by spawn() here): watch it, or fail it.
  void on_spawned(const std::string& id, Result<fwp::Process, fwp::SpawnError> proc, uint64_t timeout_ms);
  void watch_spawn_answers();
  void on_exec_status(Worker& w);
  void on_exit(Worker& w);
  void arm_log(Worker& w, bool stdout_stream);
  void drain_log(Worker& w, bool stdout_stream);
  HttpResponse log_answer(Worker& w, bool stdout_stream, uint64_t since);
  void wake_log_waiters(Worker& w);  // bytes came, or it ended: answer those who wait for them
  void finish(Worker& w, ExitInfo info);
  void trim_exited(const std::string& tenant);
  void maybe_finish_tenant_removal(Tenant& t, Teardown when = Teardown::from_the_loop);
  void maybe_finish_shutdown();
  bool alive(const Worker& w) const;

  // Featherweight instances (fwp_workers.cc).
  void run_fwp(Tenant& tenant, Image& image, RunSpec spec,
               const std::shared_ptr<Responder>& responder);
  fwp::Template* template_for(Tenant& tenant, Image& image, std::string& error);
  fwp::TenantNamespaces* namespaces_for(Tenant& tenant);
  fwp::Instance* instance_of(const Worker& w);
  void on_instance_exited(const std::string& key, fwp::Instance& inst);
  // Its channel, read as messages arrive (instance_messages.cc): a futex wait on the doorbell in
  // the loop where the kernel has one, else a sweep of every running instance's channel.
  size_t read_messages_of(Worker& w, size_t at_most);
  void channel_broke(Worker& w);  // its indices lied: it is killed, its channel never used again
  void watch_instance_channel(Worker& w);
  void on_instance_channel_rung(const std::string& id);
  // After `empty_wakes` wake-ups in a row for nothing: true when `watch` is to run again only after
  // a back-off (a timer in w.*op), false when the caller watches at once.
  bool back_off_watching(Worker& w, EventLoop::OpId Worker::*op, uint32_t empty_wakes,
                         void (Supervisor::*watch)(Worker&));
  void sweep_instance_channels();
  void answer_reply_waiters(Worker& w, bool ended);
  // Requests that may wait for room in its channel: queued oldest first, sent (all of a request's
  // messages or none) as the instance frees the ring, which it says by ringing the space bell.
  void deliver_messages(Worker& w, const MessagesRequest& asked, std::shared_ptr<Responder> responder);
  void wait_for_room(Worker& w, const MessagesRequest& asked, std::shared_ptr<Responder> responder);
  bool send_waiting_for_room(Worker& w);  // true when a request went in
  void watch_instance_room(Worker& w);
  void on_instance_room_rung(const std::string& id);
  void refuse_room_waiters(Worker& w, int status, const std::string& code, const std::string& why);
  // A worker's requests waiting for something (reply_waiters, log_waiters): the one `key` taken
  // out as its timer fires (null when it has left already); those whose clients went away
  // dropped, their timers cancelled.
  template <class Waiter>
  static std::unique_ptr<Waiter> take_waiter(std::vector<std::unique_ptr<Waiter>>& list, const Waiter* key) {
    auto it = std::find_if(list.begin(), list.end(), [&](const std::unique_ptr<Waiter>& w) { return w.get() == key; });
    if (it == list.end()) return nullptr;
    std::unique_ptr<Waiter> taken = std::move(*it);
    list.erase(it);
    return taken;
  }
  template <class Waiter>
  void drop_gone_waiters(std::vector<std::unique_ptr<Waiter>>& list) {
    std::erase_if(list, [&](const std::unique_ptr<Waiter>& w) {
      if (w->responder->connected()) return false;
      if (w->timer) loop_.cancel(w->timer);
      return true;
    });
  }
  // Templates are torn down from the loop (we may be inside one's callback), or at once where the
  // caller says it is not in one (Teardown::now). `keep` (what a
  // removed tenant leaves: its namespace holder and cgroup) is released only after the last of
  // them: its end kills their keepers, which a template still alive would report as its failure.
  void drop_templates(const std::string& tenant, const std::shared_ptr<void>& keep = nullptr,
                      Teardown when = Teardown::from_the_loop);  // "" = all
  void drop_template(const std::string& key);
  // An image's templates, torn down at once: called from a request or a reload, never from a
  // template's own callback.
  void drop_image_templates(const std::string& image);
  void follow_tenant_limits(const Tenant& t);  // its templates' and instances' groups (update_tenant)
  ConfigResult<bool> not_the_admin_token(const std::string& tenant, const std::string& token) const;
  void drop_matching(const std::function<bool(const std::string&)>& match, const std::shared_ptr<void>& keep = nullptr,
                     Teardown when = Teardown::from_the_loop);
  uint32_t spinning_standbys_granted() const;  // over all live templates

  EventLoop& loop_;
  Config config_;
  std::set<std::string> config_tenants_, config_images_;  // what the loaded configuration names
  std::set<std::string> tenants_left_running_, images_left_running_;
  fwp::CgroupManager cgroups_;
  fwp::SpawnService* spawner_;
  EventLoop::OpId spawn_answers_op_ = 0;  // the helper's answers to spawn_async
  EventLoop::OpId channel_sweep_op_ = 0;  // without futex waits: the next sweep of channels
  bool channel_sweep_quick_ = false;      // ... is the quick one (a request waits for replies)
  TenantRegistry tenants_;
  ImageRegistry images_;
  std::map<std::string, std::unique_ptr<Worker>> workers_;
  LoopPoller poller_;
  std::map<std::string, std::unique_ptr<fwp::Template>> templates_;  // by "<tenant>/<image>"
  // Each tenant's shared namespaces, joined by all of its templates (by tenant name).
  std::map<std::string, std::unique_ptr<fwp::TenantNamespaces>> tenant_namespaces_;
  std::optional<fwp::CompiledFilter> holder_filter_;  // the namespace holders' (default profile)
  bool warned_no_holder_ = false;
  std::map<std::pair<std::string, uint64_t>, std::string> instance_workers_;  // (key, id) → worker id
  size_t template_teardowns_ = 0;  // templates being destroyed from the loop (see drop_templates)
  std::map<std::string, std::shared_ptr<Responder>> tenant_removals_;
  std::string staging_dir_;
  bool shutting_down_ = false;
  std::function<void()> shutdown_done_;
  EventLoop::OpId shutdown_timer_ = 0;
  std::chrono::steady_clock::time_point started_at_;
};

std::string rfc3339(std::chrono::system_clock::time_point t);
std::string random_worker_id(const char* prefix);  // prefix + 8 random hex digits
const char* signal_name(int sig);      // "KILL" for 9; "" when unknown
int signal_from_name(const std::string& name);  // "TERM", "SIGTERM", "15" → 15; 0 when invalid

}  // namespace plume::kernel
