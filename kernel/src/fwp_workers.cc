// The supervisor's featherweight-instance path: one fwp::Template per (tenant, image), started on
// first use in the tenant's shared namespaces and driven by plumed's loop through LoopPoller; each
// instance is a worker record like an exec-mode worker (listed, inspected, signalled, waited for,
// metered).
#include <fcntl.h>
#include <liburing.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "plume/base/log.h"
#include "json_response.h"
#include "plume_binaries.h"
#include "supervisor.h"

namespace plume::kernel {

namespace {

ExitInfo exit_info_of(const fwp::InstanceExit& e) {
  ExitInfo info;
  info.code = e.code;
  info.signal = e.signal;
  switch (e.cause) {
    case fwp::ExitCause::exit: info.cause = ExitCause::exit; break;
    case fwp::ExitCause::signal: info.cause = ExitCause::signal; info.code = 128 + e.signal; break;
    case fwp::ExitCause::oom:
      info.cause = ExitCause::oom, info.code = 128 + e.signal, info.message = "killed by the OOM killer (memory limit)";
      break;
    case fwp::ExitCause::limit: info.cause = ExitCause::limit, info.code = 128 + e.signal; break;
    case fwp::ExitCause::lost:
      info.cause = ExitCause::signal;
      info.code = 128 + SIGKILL;
      info.signal = SIGKILL;
      info.message = std::string("lost with its template (") + std::strerror(e.err ? e.err : ESRCH) + ")";
      break;
  }
  return info;
}

// A template's key is "<tenant>/<image>" (neither name has a slash).
bool template_of_tenant(const std::string& key, const std::string& tenant) {
  return key.compare(0, tenant.size() + 1, tenant + "/") == 0;
}
bool template_of_image(const std::string& key, const std::string& image) {
  return key.size() > image.size() && key.compare(key.size() - image.size() - 1, image.size() + 1, "/" + image) == 0;
}

// A template's group, and its instances' own groups, hold the tenant's limits but its CPU weight
// (0: left as the group's parent has it).
fwp::CgroupLimits template_cgroup_limits(const TenantLimits& tl) {
  return {tl.memory_bytes, tl.pids_max, tl.cpu_percent, 0};
}

}  // namespace

fwp::TenantNamespaces* Supervisor::namespaces_for(Tenant& tenant) {
  const std::string& name = tenant.spec.name;
  if (auto it = tenant_namespaces_.find(name); it != tenant_namespaces_.end()) {
    if (it->second->alive()) return it->second.get();
    // A holder that never ran was logged when it failed; one that ran has died since.
    if (it->second->state() != fwp::TenantNamespaces::State::failed)
      log::warn("tenant.namespaces_lost", {{"tenant", name}, {"action", "new namespaces"}});
    tenant_namespaces_.erase(it);
  }
  // Without a holder the tenant's templates get namespaces of their own (per tenant and image).
  auto fallback = [&](const std::string& why) -> fwp::TenantNamespaces* {
    if (!warned_no_holder_) log::warn("tenant.namespaces", {{"tenant", name}, {"error", why}, {"action", "namespaces per template"}});
    warned_no_holder_ = true;
    return nullptr;
  };
  const std::string holder = plume_binary_path("plume-ns-holder");
  if (holder.empty()) return fallback("plume-ns-holder not found");
  if (!holder_filter_) {
    auto f = fwp::compile_default_profile(fwp::SeccompOptions{});
    if (!f) return fallback("seccomp: " + f.error().message());
    holder_filter_.emplace(std::move(*f));
  }
  // Plume's own process, running nothing of the tenant's: it stays in plumed's cgroup (a tenant's
  // group is removed while the holder may still be waiting for its namespace to empty).
  fwp::SandboxSpec sb;
  sb.name = name;  // the hostname of all the tenant's templates and instances
  sb.uid_map = {0, tenant.spec.uid_base, tenant.spec.uid_count};
  sb.gid_map = {0, tenant.spec.uid_base, tenant.spec.uid_count};
  sb.rootfs.staging_dir = staging_dir_;
  sb.rlimits = {{RLIMIT_CORE, 0, 0}};
  sb.seccomp = &*holder_filter_;
  // Without waiting for it in this loop: the templates that join wait for the holder (Template's
  // waiting_namespaces), and so do their starts.
  auto ns = fwp::TenantNamespaces::start(std::move(sb), holder, spawner_, poller_);
  if (!ns) return fallback(ns.error().message());
  fwp::TenantNamespaces* raw = ns->get();
  auto settled = [this, tenant_name = name, raw] {
    if (raw->state() == fwp::TenantNamespaces::State::ready) {
      log::info("tenant.namespaces", {{"tenant", tenant_name}, {"holder_pid", raw->pid()}});
      return;
    }
    // Its templates go on in namespaces of their own; the tenant's next template tries again.
    log::warn("tenant.namespaces", {{"tenant", tenant_name}, {"error", raw->error()}, {"action", "namespaces per template"}});
    warned_no_holder_ = true;
  };
  if (raw->state() == fwp::TenantNamespaces::State::starting) raw->when_settled(settled);
  else settled();
  tenant_namespaces_[name] = std::move(*ns);
  return raw;
}

fwp::Instance* Supervisor::instance_of(const Worker& w) {
  auto t = templates_.find(w.template_key);
  return t == templates_.end() ? nullptr : t->second->instance(w.instance_id);
}

fwp::Template* Supervisor::template_for(Tenant& tenant, Image& image, std::string& error) {
  const std::string key = tenant.spec.name + "/" + image.spec.name;
  if (auto it = templates_.find(key); it != templates_.end()) return it->second.get();

  // The template (and, in "shared" mode, its instances) live in one cgroup under the tenant's.
  const std::string tpl_cgroup = tenant.spec.name + "/tpl-" + image.spec.name;
  const fwp::CgroupLimits limits = template_cgroup_limits(tenant.spec.limits);
  if (auto r = cgroups_.create(tpl_cgroup, limits); !r.ok()) {
    error = "template cgroup: " + r.error().message();
    return nullptr;
  }
  fwp::TemplateSpec spec;
  spec.name = key;
  spec.binary = image.spec.fwp.binary;
  spec.sandbox.name = "tpl-" + image.spec.name;
  spec.spawner = spawner_;
  spec.sandbox.argv = {image.spec.fwp.binary.substr(image.spec.fwp.binary.rfind('/') + 1)};
  spec.sandbox.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp"};
  spec.sandbox.uid_map = {0, tenant.spec.uid_base, tenant.spec.uid_count};
  spec.sandbox.gid_map = {0, tenant.spec.uid_base, tenant.spec.uid_count};
  spec.sandbox.rootfs.path = image.rootfs_path;
  spec.sandbox.rootfs.read_only = image.read_only;
  spec.sandbox.rootfs.staging_dir = staging_dir_;
  spec.sandbox.rlimits = {{RLIMIT_CORE, 0, 0}, {RLIMIT_NOFILE, 1024, 1024}};
  spec.sandbox.seccomp = &image.filter;
  spec.sandbox.cgroup_procs_files = cgroups_.procs_files(tpl_cgroup);
  // The tenant's user, pid, net, ipc and uts namespaces, shared by its images' templates.
  spec.tenant_namespaces = namespaces_for(tenant);
  spec.channel = fwp::ChannelGeometry{image.spec.fwp.channel_slots, image.spec.fwp.channel_slot_bytes(), 0};
  for (const std::string& op : image.spec.fwp.io_uring_ops)
    spec.io_uring_ops.push_back(static_cast<uint8_t>(io_uring_op_from_name(op)));
  spec.pool_size = image.spec.fwp.pool_size;
  spec.huge_text = image.spec.fwp.huge_text;
  // Spinning standbys come from a host-wide budget, none unless the operator grants one: a
  // parked spinner holds its CPU against every task of another cgroup that wakes there (the
  // scheduler counts a CPU running only SCHED_IDLE tasks as idle and puts waking tasks on it, but
  // SCHED_IDLE yields only to its own cgroup's siblings, so they wait out the spinner's slice:
  // a plain process's wake-up took over 1 ms in 5% of wake-ups beside one spinner on 2 vCPUs,
  // p99 3.5 ms against 0.07 ms, bench/fwp). One tenant's choice, paid by the others. Two pollers
  // sharing a CPU also slow each other's starts. First come, first served; the rest of a
  // template's pool parks asleep.
  const uint32_t budget = config_.daemon.spinning_standby_budget;
  const uint32_t in_use = spinning_standbys_granted();
  const uint32_t wanted = image.spec.fwp.spinning_standbys;
  spec.spinning_standbys = std::min(wanted, budget > in_use ? budget - in_use : 0u);
  if (spec.spinning_standbys < wanted) {
    log::warn("fwp.spinning_budget", {{"template", key}, {"wanted", wanted}, {"granted", spec.spinning_standbys},
                                      {"budget", budget}, {"in_use", in_use}});
  }
  spec.capture_output = true;
  // Not steered: after the doorbell this loop goes on with the start's own work (the worker's
  // record, its log pipes, the HTTP answer: ~30 µs) before it blocks, and an instance pinned to
  // its CPU would wait for all of it. Woken where it parked, the instance runs beside that work
  // (through the API: 62 against 92 µs median to the handler, docs/fwp.md).
  spec.steer_wakeups = false;
  // Plume's default profile without io_uring already refuses what the per-instance filter adds
  // but the signal fence, which a Landlock scope gives for one syscall instead of a BPF JIT.
  const bool default_filter_no_rings = image.spec.seccomp_profile.empty() && !image.spec.io_uring &&
                                       image.spec.fwp.io_uring_ops.empty();
  spec.isolation = default_filter_no_rings ? fwp::InstanceIsolation::landlock_scope
                                           : fwp::InstanceIsolation::seccomp_filter;
  spec.cgroups = &cgroups_;
  spec.template_cgroup = tpl_cgroup;
  if (image.spec.fwp.instance_cgroups == "own") {
    spec.cgroup_mode = fwp::InstanceCgroups::own;
    spec.cgroup_parent = tenant.spec.name;
    spec.instance_limits = limits;
  }
  fwp::Template::Events events;
  events.instance_exited = [this, key](fwp::Instance& inst) { on_instance_exited(key, inst); };
  events.template_ready = [key]() { log::info("template.ready", {{"template", key}}); };
  events.template_exited = [key](const fwp::ExitStatus& st) {
    log::warn("template.exited", {{"template", key}, {"code", st.code}, {"signal", st.signal}, {"action", "restart"}});
  };
  events.failed = [this, key](const std::string& why) {
    // Gone for good (its keeper died): the next start for this tenant and image starts a new one.
    log::error("template.failed", {{"template", key}, {"error", why}});
    drop_template(key);
  };
  auto t = fwp::Template::start(std::move(spec), poller_, std::move(events));
  if (!t.ok()) {
    (void)cgroups_.remove(tpl_cgroup);
    error = t.error().message();
    return nullptr;
  }
  log::info("template.start", {{"template", key}, {"pool_size", image.spec.fwp.pool_size}});
  fwp::Template* raw = t.value().get();
  templates_[key] = std::move(t.value());
  return raw;
}

// A tenant's templates' groups, and their instances' own groups, took the tenant's limits when they
// were made. Below the tenant's group, a lower limit holds them anyway; a higher one would never
// reach a featherweight instance unless written here too. Best effort: the tenant's own group
// already took the limits, so what fails here only keeps instances at the old, lower ones.
void Supervisor::follow_tenant_limits(const Tenant& t) {
  const fwp::CgroupLimits per_template = template_cgroup_limits(t.spec.limits);
  for (auto& [key, tpl] : templates_) {
    if (!template_of_tenant(key, t.spec.name)) continue;
    auto written = cgroups_.set_limits(tpl->spec().template_cgroup, per_template);
    if (written) written = tpl->set_instance_limits(per_template);
    if (!written)
      log::warn("tenant.limits", {{"tenant", t.spec.name}, {"template", key}, {"error", written.error().message()},
                                  {"then", "its instances keep their limits"}});
  }
}

void Supervisor::set_pool_size(Image& image, uint32_t pool_size) {
  image.spec.fwp.pool_size = pool_size;
  size_t resized = 0;
  for (auto& [key, tpl] : templates_) {
    if (!template_of_image(key, image.spec.name)) continue;
    tpl->set_pool_size(pool_size);
    ++resized;
  }
  log::info("image.pool", {{"image", image.spec.name}, {"pool_size", pool_size}, {"templates", resized}});
}

size_t Supervisor::running_instances_of(const std::string& image) const {
  size_t n = 0;
  for (const auto& [id, w] : workers_) n += w->fwp && alive(*w) && template_of_image(w->template_key, image);
  return n;
}

ConfigResult<size_t> Supervisor::instances_to_stop(const std::string& image, bool force) const {
  const size_t running = running_instances_of(image);
  if (running > 0 && !force)
    return fail(ConfigError{"image " + image + " has " + std::to_string(running) + " running instances (force stops them)"});
  return running;
}

ConfigResult<bool> Supervisor::remove_image(const std::string& name, bool force) {
  if (name == "host") return fail(ConfigError{"the built-in image host cannot be removed"});
  if (images_.find(name) == nullptr) return false;
  auto stopping = instances_to_stop(name, force);
  if (!stopping.ok()) return fail(stopping.error());
  // Its templates would otherwise go on parking pools of the old app, and serve the next image of
  // that name.
  drop_image_templates(name);
  (void)images_.remove(name);
  images_left_running_.erase(name);
  log::info("image.remove", {{"image", name}, {"instances_stopped", stopping.value()}});
  return true;
}

ConfigResult<Image*> Supervisor::replace_image(std::unique_ptr<Image> prepared, bool force) {
  const std::string name = prepared->spec.name;
  if (name == "host") return fail(ConfigError{"the built-in image host cannot be replaced"});
  auto stopping = instances_to_stop(name, force);
  if (!stopping.ok()) return fail(stopping.error());
  drop_image_templates(name);
  Image* image = images_.insert(std::move(prepared));
  log::info("image.replace", {{"image", name}, {"instances_stopped", stopping.value()}});
  return image;
}

void Supervisor::drop_image_templates(const std::string& image) {
  drop_matching([&](const std::string& key) { return template_of_image(key, image); }, nullptr, Teardown::now);
}

void Supervisor::run_fwp(Tenant& tenant, Image& image, RunSpec spec,
                         const std::shared_ptr<Responder>& responder) {
  if (!image.spec.fwp.enabled)
    return responder->send(HttpResponse::error(400, "bad_request", "image " + image.spec.name + " has no fwp app"));
  std::string error;
  fwp::Template* tpl = template_for(tenant, image, error);
  if (!tpl) return responder->send(HttpResponse::error(422, "spawn_failed", "template: " + error));
  // All of the input fits the new instance's channel, or nothing starts: what does not fit would
  // be lost (a client sends more, once it runs, with POST /v1/workers/<id>/messages).
  const fwp::ChannelGeometry& channel = tpl->spec().channel;
  if (spec.input.size() > channel.slots)
    return responder->send(HttpResponse::error(400, "bad_request", "input: " + std::to_string(spec.input.size()) +
                                                   " messages, more than the instance's channel holds (" +
                                                   std::to_string(channel.slots) + ")"));
  if (std::string e = oversized_message(spec.input, "input", channel.max_message()); !e.empty())
    return responder->send(HttpResponse::error(400, "bad_request", e));
  const std::string first = spec.input.empty() ? std::string() : spec.input[0];
  auto inst = tpl->start_instance(std::as_bytes(std::span(first.data(), first.size())));
  if (!inst.ok())
    return responder->send(HttpResponse::error(422, "spawn_failed", "instance: " + inst.error().message()));

  const std::string key = tpl->spec().name;
  auto w = std::make_unique<Worker>(config_.daemon.log_buffer_bytes);
  do w->id = random_worker_id("i-");
  while (workers_.count(w->id));
  w->fwp = true;
  w->from_pool = inst.value()->path() == fwp::StartPath::pool;
  w->template_key = key;
  w->instance_id = inst.value()->id();
  w->tenant = tenant.spec.name;
  w->image = image.spec.name;
  w->argv = {image.spec.fwp.binary};
  w->created_at = std::chrono::system_clock::now();
  w->state = WorkerState::running;
  w->pid = inst.value()->pid() > 0 ? inst.value()->pid() : 0;
  w->cgroup.clear();
  const TenantLimits& tl = tenant.spec.limits;  // instances share the template's (tenant-sized) cgroup
  w->limits = {tl.memory_bytes, tl.pids_max, tl.cpu_percent, 0};
  // Its own stdout and stderr pipes, read like an exec worker's (plume logs shows them).
  w->out_fd = inst.value()->take_stdout();
  w->err_fd = inst.value()->take_stderr();
  Worker& worker = *w;
  instance_workers_[{key, worker.instance_id}] = worker.id;
  workers_[worker.id] = std::move(w);
  arm_log(worker, true);
  arm_log(worker, false);
  tenant.meter.workers_started++;
  tenant.running++;
  log::info("worker.start", {{"tenant", worker.tenant}, {"id", worker.id}, {"kind", "fwp"}, {"image", worker.image},
                             {"path", inst.value()->path() == fwp::StartPath::pool ? "pool" : "fork"}});
  if (spec.timeout_ms > 0) {
    std::string id = worker.id;
    worker.timeout_op = loop_.after(std::chrono::milliseconds(spec.timeout_ms), [this, id]() {
      Worker* wk = find_worker(id);
      if (!wk || !alive(*wk)) return;
      wk->timeout_op = 0;
      wk->killed_for_timeout = true;
      (void)signal_worker(*wk, SIGKILL);
    });
  }
  for (size_t i = 1; i < spec.input.size(); ++i) {
    const std::string& m = spec.input[i];
    if (auto r = inst.value()->queue(std::as_bytes(std::span(m.data(), m.size()))); !r.ok())
      log::warn("worker.input", {{"id", worker.id}, {"error", fwp::channel_error_name(r.error())}});
  }
  worker.messages_in = spec.input.size();
  tenant.meter.messages_in += spec.input.size();
  watch_instance_channel(worker);
  responder->send(json_response(201, worker_json(worker)));
}

void Supervisor::on_instance_exited(const std::string& key, fwp::Instance& inst) {
  auto it = instance_workers_.find({key, inst.id()});
  if (it == instance_workers_.end()) return;  // a pool instance that never served a start
  std::string id = it->second;
  instance_workers_.erase(it);
  Worker* w = find_worker(id);
  if (!w) return;
  if (inst.pid() > 0) w->pid = inst.pid();
  // What it sent before it ended, read while its channel is still mapped (forget() below unmaps
  // it); finish() then ends the wait on it and answers those still waiting for replies.
  (void)read_messages_of(*w, 4096);
  const fwp::InstanceExit& e = *inst.exit();
  ExitInfo info = exit_info_of(e);
  if (w->killed_for_timeout) info.cause = ExitCause::limit, info.message = "killed after timeout_ms";
  // The template's report (rusage from wait4, or the instance's own cgroup), never below what
  // the kernel showed while it ran (refresh_usage): the report is the tenant's own code's word.
  w->cpu_ns = std::max(w->cpu_ns, e.cpu_ns);
  w->peak_memory_bytes = std::max({w->peak_memory_bytes, e.memory_peak_bytes, e.max_rss_bytes});
  if (auto t = templates_.find(key); t != templates_.end()) t->second->forget(inst.id());
  finish(*w, info);
}

std::vector<Supervisor::TemplateView> Supervisor::template_views() {
  std::vector<TemplateView> views;
  for (auto& [key, t] : templates_) {
    const size_t slash = key.find('/');  // "<tenant>/<image>"; neither name has a slash
    views.push_back({key.substr(0, slash), key.substr(slash + 1), t->spec().pool_size, t->pool_ready(),
                     t->spinning_standbys(), t->stats()});
  }
  return views;
}

uint32_t Supervisor::spinning_standbys_granted() const {
  uint32_t n = 0;
  for (const auto& [key, t] : templates_) n += static_cast<uint32_t>(t->spinning_standbys());
  return n;
}

void Supervisor::drop_template(const std::string& key) { drop_matching([&](const std::string& k) { return k == key; }); }

void Supervisor::drop_templates(const std::string& tenant, const std::shared_ptr<void>& keep, Teardown when) {
  drop_matching(
      [&](const std::string& key) { return tenant.empty() || template_of_tenant(key, tenant); },
      keep, when);
}

void Supervisor::drop_matching(const std::function<bool(const std::string&)>& match, const std::shared_ptr<void>& keep,
                               Teardown when) {
  std::vector<std::pair<std::string, std::unique_ptr<fwp::Template>>> doomed;
  for (auto it = templates_.begin(); it != templates_.end();) {
    if (match(it->first)) {
      doomed.emplace_back(it->first, std::move(it->second));
      it = templates_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [key, tpl] : doomed) {
    // Its instances end with it (the keeper is SIGKILLed, and the kernel kills its pid namespace).
    std::vector<std::string> ended;
    for (auto iw = instance_workers_.begin(); iw != instance_workers_.end();) {
      if (iw->first.first == key) {
        ended.push_back(iw->second);
        iw = instance_workers_.erase(iw);
      } else {
        ++iw;
      }
    }
    std::string cgroup = tpl->spec().template_cgroup;
    ++template_teardowns_;
    // The lambda holds the template alone: held.reset() destroys it, whenever it runs.
    auto teardown = [this, held = std::shared_ptr<fwp::Template>(std::move(tpl)), keep = keep, cgroup,
                     name = key]() mutable {
      held.reset();
      (void)cgroups_.kill_all(cgroup);
      if (auto r = cgroups_.remove(cgroup); !r.ok())
        log::warn("template.cgroup_remove", {{"template", name}, {"error", r.error().message()}});
      keep.reset();  // the last teardown of them releases it, before shutdown may finish below
      --template_teardowns_;
      maybe_finish_shutdown();
    };
    // We may be inside one of this template's own callbacks: destroy it from the loop instead.
    if (when == Teardown::now) teardown();
    else loop_.after(std::chrono::milliseconds(0), std::move(teardown));
    for (const std::string& id : ended) {
      if (Worker* w = find_worker(id); w && alive(*w)) {
        ExitInfo info;
        info.cause = ExitCause::signal;
        info.signal = SIGKILL;
        info.code = 128 + SIGKILL;
        info.message = "its template was stopped";
        finish(*w, info);
      }
    }
  }
}

}  // namespace plume::kernel
