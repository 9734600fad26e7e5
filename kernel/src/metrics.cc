#include "metrics.h"

#include <sstream>

#include "supervisor.h"

namespace plume::kernel {
namespace {

// Label values are quoted; escape what the format requires.
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') { out += "\\n"; continue; }
    out += c;
  }
  return out;
}

void header(std::ostringstream& os, const char* name, const char* type, const char* help) {
  os << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

}  // namespace

std::string render_metrics(Supervisor& sup, const HttpCounters& http) {
  std::ostringstream os;
  header(os, "plume_up", "gauge", "1 while plumed is serving.");
  os << "plume_up 1\n";
  auto tenants = sup.tenants().list();
  std::map<std::string, json> stats;
  for (Tenant* t : tenants) stats[t->spec.name] = sup.tenant_stats_json(*t);

  header(os, "plume_workers_started_total", "counter", "Workers started, per tenant.");
  for (auto& [name, s] : stats)
    os << "plume_workers_started_total{tenant=\"" << label(name) << "\"} " << s["workers_started"].get<uint64_t>() << '\n';
  header(os, "plume_workers_running", "gauge", "Workers running now, per tenant.");
  for (auto& [name, s] : stats)
    os << "plume_workers_running{tenant=\"" << label(name) << "\"} " << s["workers_running"].get<uint64_t>() << '\n';
  header(os, "plume_workers_exited_total", "counter", "Workers ended, per tenant and cause.");
  for (auto& [name, s] : stats)
    for (ExitCause c : kAllExitCauses)
      os << "plume_workers_exited_total{tenant=\"" << label(name) << "\",cause=\"" << exit_cause_name(c) << "\"} "
         << s["exited"][exit_cause_name(c)].get<uint64_t>() << '\n';
  header(os, "plume_worker_cpu_seconds_total", "counter", "CPU time used by a tenant's workers.");
  for (auto& [name, s] : stats) {
    double secs = static_cast<double>(s["cpu_ns"].get<uint64_t>()) / 1e9;
    os << "plume_worker_cpu_seconds_total{tenant=\"" << label(name) << "\"} " << secs << '\n';
  }
  header(os, "plume_worker_peak_memory_bytes", "gauge", "Largest peak memory of any of a tenant's workers.");
  for (auto& [name, s] : stats)
    os << "plume_worker_peak_memory_bytes{tenant=\"" << label(name) << "\"} " << s["peak_memory_bytes"].get<uint64_t>() << '\n';
  header(os, "plume_fwp_messages_total", "counter",
         "Messages through a tenant's featherweight instances' channels: in (start input and POST .../messages), out (read from them).");
  for (auto& [name, s] : stats)
    for (const char* direction : {"in", "out"})
      os << "plume_fwp_messages_total{tenant=\"" << label(name) << "\",direction=\"" << direction << "\"} "
         << s["messages"][direction].get<uint64_t>() << '\n';
  // Featherweight templates: how well the warm pools serve their tenants.
  auto templates = sup.template_views();
  auto tl = [](const Supervisor::TemplateView& v) {
    return "tenant=\"" + label(v.tenant) + "\",image=\"" + label(v.image) + "\"";
  };
  header(os, "plume_fwp_pool_size", "gauge", "Parked instances a template keeps ready, as configured.");
  for (auto& v : templates) os << "plume_fwp_pool_size{" << tl(v) << "} " << v.pool_size << '\n';
  header(os, "plume_fwp_pool_ready", "gauge", "Parked instances set up and waiting now.");
  for (auto& v : templates) os << "plume_fwp_pool_ready{" << tl(v) << "} " << v.pool_ready << '\n';
  header(os, "plume_fwp_spinning_standbys", "gauge",
         "Pool instances that poll instead of sleeping, as granted from the host's budget.");
  for (auto& v : templates) os << "plume_fwp_spinning_standbys{" << tl(v) << "} " << v.spinning_standbys << '\n';
  header(os, "plume_fwp_text_on_huge_pages", "gauge",
         "1 when the template's code is on a transparent huge page (the image's fwp.huge_text, taken).");
  for (auto& v : templates) os << "plume_fwp_text_on_huge_pages{" << tl(v) << "} " << (v.stats.text_on_huge_pages ? 1 : 0) << '\n';
  header(os, "plume_fwp_starts_total", "counter",
         "Instance starts: path=pool took a parked instance, path=fork forked one (the pool was empty).");
  for (auto& v : templates) {
    os << "plume_fwp_starts_total{" << tl(v) << ",path=\"pool\"} " << v.stats.pool_hits << '\n';
    os << "plume_fwp_starts_total{" << tl(v) << ",path=\"fork\"} " << v.stats.pool_misses << '\n';
  }
  header(os, "plume_fwp_channels_made_on_demand_total", "counter",
         "Channels a start had to create because none was made ahead (each raises how many are).");
  for (auto& v : templates)
    os << "plume_fwp_channels_made_on_demand_total{" << tl(v) << "} " << v.stats.channels_made_on_demand << '\n';
  header(os, "plume_fwp_template_restarts_total", "counter", "Templates restarted after they died.");
  for (auto& v : templates) os << "plume_fwp_template_restarts_total{" << tl(v) << "} " << v.stats.template_restarts << '\n';
  // The spawn helper: whether one serves, and how often it had to be replaced.
  const fwp::SpawnService* helper = sup.spawner();
  header(os, "plume_spawn_helper_up", "gauge",
         "1 while a spawn helper clones plumed's workers; 0 when plumed spawns in itself.");
  os << "plume_spawn_helper_up " << (helper != nullptr && !helper->gone() ? 1 : 0) << '\n';
  header(os, "plume_spawn_helper_restarts_total", "counter", "Spawn helpers started to replace one that died.");
  os << "plume_spawn_helper_restarts_total " << (helper != nullptr ? helper->restarts() : 0) << '\n';
  header(os, "plume_spawn_helper_requests_pending", "gauge",
         "Spawns sent to the helper and not answered yet (a cancelled one's clone is killed and reaped with its answer).");
  os << "plume_spawn_helper_requests_pending " << (helper != nullptr ? helper->pending() : 0) << '\n';
  header(os, "plume_spawn_helper_orphans_reaped_total", "counter",
         "Processes a dead spawn helper had cloned for a request it never answered, killed and reaped.");
  os << "plume_spawn_helper_orphans_reaped_total " << (helper != nullptr ? helper->orphans_reaped() : 0) << '\n';
  header(os, "plume_http_requests_total", "counter", "Control API responses, by status code.");
  for (auto& [code, n] : http.by_status) os << "plume_http_requests_total{code=\"" << code << "\"} " << n << '\n';
  return os.str();
}

}  // namespace plume::kernel
