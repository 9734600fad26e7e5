#include "config_reload.h"

#include <algorithm>
#include <map>
#include <memory>
#include <set>

#include "plume/base/log.h"
#include "supervisor.h"

namespace plume::kernel {
namespace {

// What a reload can do with a running tenant the file still names.
enum class TenantChange { none, in_place, needs_readding };

// A file's uid_base of 0 asks plumed to pick the range, so any base it picked matches.
TenantChange tenant_change(const TenantSpec& running, const TenantSpec& wanted) {
  const bool same_range = running.uid_count == wanted.uid_count &&
                          (wanted.uid_base == 0 || running.uid_base == wanted.uid_base);
  if (!same_range) return TenantChange::needs_readding;  // its workers run mapped to the old range
  if (tokens_equal(running.token, wanted.token) && running.limits == wanted.limits)
    return TenantChange::none;
  return TenantChange::in_place;
}

template <typename Spec>
bool lists(const std::vector<Spec>& specs, const std::string& name) {
  return std::any_of(specs.begin(), specs.end(), [&](const Spec& s) { return s.name == name; });
}

// The settings only a restart applies, by their key in the file.
void settings_needing_restart(const Config& a, const Config& b, std::vector<std::string>& out) {
  const DaemonConfig& x = a.daemon;
  const DaemonConfig& y = b.daemon;
  if (x.runtime_dir != y.runtime_dir) out.emplace_back("daemon.runtime_dir");
  if (x.state_dir != y.state_dir) out.emplace_back("daemon.state_dir");
  if (x.socket != y.socket) out.emplace_back("daemon.socket");
  if (x.admin_token != y.admin_token) out.emplace_back("daemon.admin_token");
  if (x.shutdown_grace_ms != y.shutdown_grace_ms) out.emplace_back("daemon.shutdown_grace_ms");
  if (x.max_body_bytes != y.max_body_bytes) out.emplace_back("daemon.max_body_bytes");
  if (x.log_buffer_bytes != y.log_buffer_bytes) out.emplace_back("daemon.log_buffer_bytes");
  if (x.max_exited_workers != y.max_exited_workers) out.emplace_back("daemon.max_exited_workers");
  if (x.spinning_standby_budget != y.spinning_standby_budget) out.emplace_back("daemon.spinning_standby_budget");
  if (a.cgroup.root != b.cgroup.root) out.emplace_back("cgroup.root");
  if (a.cgroup.parent != b.cgroup.parent) out.emplace_back("cgroup.parent");
}

// What the previous file named and this one does not, and what an earlier reload found so while
// it ran: removed, unless it is still at work (then it is tried again at the next reload).
void remove_what_the_file_dropped(Supervisor& sup, const Config& before, const Config& after, ReloadReport& report) {
  std::set<std::string> tenants = sup.tenants_left_running();
  for (const TenantSpec& old : before.tenants) tenants.insert(old.name);
  for (const std::string& name : tenants) {
    Tenant* t = sup.tenants().find(name);
    if (lists(after.tenants, name) || t == nullptr) {
      sup.tenants_left_running().erase(name);
      continue;
    }
    if (t->removing) continue;
    const std::string what = "tenant " + name;
    if (t->running > 0) {
      report.dropped.push_back(what);
      sup.tenants_left_running().insert(name);
      continue;
    }
    sup.remove_tenant(*t, /*force=*/false, std::make_shared<NoResponse>());
    report.removed.push_back(what);
  }
  std::set<std::string> images = sup.images_left_running();
  for (const ImageSpec& old : before.images) images.insert(old.name);
  for (const std::string& name : images) {
    if (lists(after.images, name) || sup.images().find(name) == nullptr) {
      sup.images_left_running().erase(name);
      continue;
    }
    const std::string what = "image " + name;
    if (sup.running_instances_of(name) > 0) {
      report.dropped.push_back(what);
      sup.images_left_running().insert(name);
      continue;
    }
    if (auto r = sup.remove_image(name, /*force=*/false); r.ok()) report.removed.push_back(what);
    else report.failed.push_back(naming(what, r.error().message));
  }
}

// The running tenants the file gives new tokens or limits. A token may come from another running
// tenant that gives it up in this same reload (two tenants swap theirs, or a chain of them):
// those tenants take their limits first, then their tokens all at once, once it is clear that no
// two tenants end up holding one token.
//
// A tenant whose uid range changed (its workers would run mapped to the old one) is removed here
// when none of its workers runs, to be added again with the additions; its name is returned.
std::set<std::string> update_running_tenants(Supervisor& sup, const Config& after, ReloadReport& report) {
  std::set<std::string> to_readd;
  auto gives_up_its_token = [&](const Tenant& holder) {
    for (const TenantSpec& w : after.tenants)
      if (w.name == holder.spec.name)
        return tenant_change(holder.spec, w) == TenantChange::in_place && !tokens_equal(w.token, holder.spec.token);
    return false;
  };
  std::vector<std::pair<Tenant*, std::string>> moves;
  std::map<const Tenant*, TenantLimits> limits_before;  // of those that move: put back if refused
  for (const TenantSpec& wanted : after.tenants) {
    Tenant* running = sup.tenants().find(wanted.name);
    if (running == nullptr || running->removing) continue;
    const std::string what = "tenant " + wanted.name;
    const TenantChange change = tenant_change(running->spec, wanted);
    if (change == TenantChange::none) continue;
    if (change == TenantChange::needs_readding) {
      auto token_free = sup.tenants().token_free_for(wanted.name, wanted.token, running);
      if (running->running > 0) {
        report.differ.push_back(what);
      } else if (!token_free.ok()) {
        report.failed.push_back(naming(what, token_free.error().message));
      } else {
        sup.remove_tenant(*running, /*force=*/false, std::make_shared<NoResponse>());
        to_readd.insert(wanted.name);
      }
      continue;
    }
    const Tenant* holder = sup.tenants().by_token(wanted.token);
    const bool token_moves_later = holder != nullptr && holder != running && gives_up_its_token(*holder);
    if (token_moves_later) limits_before[running] = running->spec.limits;
    auto set = sup.update_tenant(*running, token_moves_later ? running->spec.token : wanted.token, wanted.limits);
    if (!set.ok()) report.failed.push_back(naming(what, set.error().message));
    else if (token_moves_later) moves.emplace_back(running, wanted.token);
    else report.updated.push_back(what);
  }
  // A move is refused when the tenant it counted on kept its token (its own update failed): all
  // or nothing, so the limits it took go back.
  std::vector<Tenant*> refused = sup.move_tokens(moves);
  for (const auto& [tenant, token] : moves) {
    const std::string what = "tenant " + tenant->spec.name;
    if (std::find(refused.begin(), refused.end(), tenant) == refused.end()) {
      report.updated.push_back(what);
      continue;
    }
    std::string why = "token already used by another tenant";
    if (auto back = sup.update_tenant(*tenant, tenant->spec.token, limits_before[tenant]); !back.ok())
      why += "; its new limits stay, the old ones were refused: " + back.error().message;
    report.failed.push_back(naming(what, why));
  }
  return to_readd;
}

}  // namespace

ReloadReport reload_config(Supervisor& sup, const Config& before, const Config& after) {
  ReloadReport report;
  // Removals first and additions last, so that a name or token the file moves from a tenant it
  // drops, or one a running tenant gives up, is free when the new holder is added.
  remove_what_the_file_dropped(sup, before, after, report);
  const std::set<std::string> readding = update_running_tenants(sup, after, report);
  for (const TenantSpec& wanted : after.tenants) {
    if (sup.tenants().find(wanted.name) != nullptr) continue;
    const std::string what = "tenant " + wanted.name;
    const bool replaces = readding.count(wanted.name) != 0;
    auto added = sup.add_tenant(wanted);
    if (added.ok()) (replaces ? report.replaced : report.added).push_back(what);
    else report.failed.push_back(naming(what, added.error().message + (replaces ? " (its old range is gone)" : "")));
  }

  for (const ImageSpec& wanted : after.images) {
    const std::string what = "image " + wanted.name;
    if (Image* running = sup.images().find(wanted.name)) {
      // A new build of the app installed at the same path changes the image too: its templates
      // run the old one.
      const bool new_build = running->fwp_binary_changed();
      if (running->spec == wanted && !new_build) continue;
      // Only the pool's size can change under running templates (PATCH /v1/images does the same).
      ImageSpec resized = running->spec;
      resized.fwp.pool_size = wanted.fwp.pool_size;
      if (resized == wanted && !new_build) {
        sup.set_pool_size(*running, wanted.fwp.pool_size);
        report.updated.push_back(what);
      } else if (sup.running_instances_of(wanted.name) > 0) {
        report.differ.push_back(what);  // its instances run the old app: replaced at a reload once they end
      } else if (auto prepared = ImageRegistry::prepare(wanted); !prepared.ok()) {
        report.failed.push_back(naming(what, prepared.error().message));  // the old image stays
      } else if (auto r = sup.replace_image(std::move(prepared.value()), /*force=*/false); r.ok()) {
        report.replaced.push_back(what);
      } else {
        report.failed.push_back(naming(what, r.error().message));
      }
      continue;
    }
    auto added = sup.images().add(wanted);
    if (added.ok()) report.added.push_back(what);
    else report.failed.push_back(naming(what, added.error().message));
  }

  // What the file names now is changed through it; what it dropped, through the API.
  sup.owned_by_config(after);
  settings_needing_restart(before, after, report.need_restart);
  if (after.daemon.log_level != before.daemon.log_level) {
    log::Level level = log::Level::info;
    if (log::parse_level(after.daemon.log_level, level)) {
      log::set_level(level);
      report.log_level_set = true;
    }
  }
  return report;
}

}  // namespace plume::kernel
