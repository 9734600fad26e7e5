// Observability verbs: stats (per tenant) and health.
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli.h"
#include "table.h"

namespace plume::cli {
namespace {

using nlohmann::json;

uint64_t u(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

int stats_cmd(const Context& ctx) {
  int rc = kExitOk;
  auto j = call_json(ctx, "GET", "/v1/stats", nullptr, rc);
  if (!j) return rc;
  if (ctx.json) {
    print_json(*j);
    return kExitOk;
  }
  Table t({"TENANT", "STARTED", "RUNNING", "EXIT", "SIGNAL", "OOM", "LIMIT", "SPAWN-FAILED", "CPU", "PEAK-MEM"});
  if (j->contains("tenants") && (*j)["tenants"].is_array())
    for (const auto& s : (*j)["tenants"]) {
      const json ex = s.contains("exited") && s["exited"].is_object() ? s["exited"] : json::object();
      t.add_row({s.value("name", std::string("-")), std::to_string(u(s, "workers_started")),
                 std::to_string(u(s, "workers_running")), std::to_string(u(ex, "exit")),
                 std::to_string(u(ex, "signal")), std::to_string(u(ex, "oom")), std::to_string(u(ex, "limit")),
                 std::to_string(u(ex, "spawn_failed")), cpu_seconds(u(s, "cpu_ns")),
                 human_bytes(u(s, "peak_memory_bytes"))});
    }
  std::cout << t.render();
  return kExitOk;
}

int health_cmd(const Context& ctx) {
  int rc = kExitOk;
  auto j = call_json(ctx, "GET", "/v1/health", nullptr, rc);
  if (!j) return rc;
  if (ctx.json) {
    print_json(*j);
    return kExitOk;
  }
  auto s = [&](const char* k) {
    auto it = j->find(k);
    if (it == j->end()) return std::string("-");
    return it->is_string() ? it->get<std::string>() : it->dump();
  };
  std::cout << "status " << s("status") << "  version " << s("version") << "  uptime "
            << human_age(static_cast<int64_t>(u(*j, "uptime_ms") / 1000)) << "  cgroup " << s("cgroup")
            << "  workers_running " << s("workers_running") << "\n";
  return kExitOk;
}

}  // namespace

void add_stats_commands(CLI::App& app, Context& ctx, Actions& actions) {
  auto* stats = app.add_subcommand("stats", "Per-tenant worker counts, CPU time and peak memory");
  stats->footer(kExitCodesFooter);
  actions[stats] = [&ctx] { return stats_cmd(ctx); };
  auto* health = app.add_subcommand("health", "Is plumed up? (no token needed)");
  health->footer(kExitCodesFooter);
  actions[health] = [&ctx] { return health_cmd(ctx); };
}

}  // namespace plume::cli
