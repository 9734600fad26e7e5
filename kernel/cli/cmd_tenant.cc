// Tenant verbs: tenant add, tenant set, tenant ls, tenant rm (admin token).
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli.h"
#include "table.h"

namespace plume::cli {
namespace {

using nlohmann::json;

std::string field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string memory_field(const json& limits) {
  auto it = limits.find("memory_bytes");
  if (it == limits.end() || !it->is_number_unsigned()) return field(limits, "memory_bytes");
  return human_bytes(it->get<uint64_t>());
}

void print_tenants(const json& tenants) {
  Table t({"NAME", "ORIGIN", "UID-BASE", "UID-COUNT", "MEMORY", "PIDS", "CPU%", "CPU-WEIGHT", "MAX-WORKERS", "RUNNING"});
  for (const auto& tn : tenants) {
    const json limits = tn.contains("limits") && tn["limits"].is_object() ? tn["limits"] : json::object();
    t.add_row({field(tn, "name"), field(tn, "origin"), field(tn, "uid_base"), field(tn, "uid_count"), memory_field(limits),
               field(limits, "pids_max"), field(limits, "cpu_percent"), field(limits, "cpu_weight"),
               field(limits, "max_workers"), field(tn, "workers_running")});
  }
  std::cout << t.render();
}

struct AddOpts {
  std::string name, token, memory;
  int64_t uid_base = -1, uid_count = -1, pids = -1, cpu = -1, cpu_weight = -1, max_workers = -1;
};

// A tenant's limits as options, for `tenant add` and `tenant set`.
void add_limit_options(CLI::App& sub, AddOpts& o) {
  sub.add_option("--memory", o.memory, "Memory limit, e.g. 256M");
  sub.add_option("--pids", o.pids, "Maximum number of processes");
  sub.add_option("--cpu", o.cpu, "CPU limit in percent of one core");
  sub.add_option("--cpu-weight", o.cpu_weight, "CPU weight relative to other tenants");
  sub.add_option("--max-workers", o.max_workers, "Maximum number of running workers");
}

// The limits given on the command line; false (after saying why) when one is malformed.
bool limits_from_opts(const AddOpts& o, json& limits) {
  limits = json::object();
  if (!o.memory.empty()) {
    auto bytes = parse_size(o.memory);
    if (!bytes) {
      std::cerr << "plume: --memory: not a size: " << o.memory << " (try 256M)\n";
      return false;
    }
    limits["memory_bytes"] = *bytes;
  }
  if (o.pids >= 0) limits["pids_max"] = o.pids;
  if (o.cpu >= 0) limits["cpu_percent"] = o.cpu;
  if (o.cpu_weight >= 0) limits["cpu_weight"] = o.cpu_weight;
  if (o.max_workers >= 0) limits["max_workers"] = o.max_workers;
  return true;
}

int add_cmd(const Context& ctx, const AddOpts& o) {
  json spec = {{"name", o.name}, {"token", o.token}};
  if (o.uid_base >= 0) spec["uid_base"] = o.uid_base;
  if (o.uid_count >= 0) spec["uid_count"] = o.uid_count;
  json limits;
  if (!limits_from_opts(o, limits)) return kExitUsage;
  if (!limits.empty()) spec["limits"] = limits;
  int rc = kExitOk;
  auto j = call_json(ctx, "POST", "/v1/tenants", &spec, rc);
  if (!j) return rc;
  if (ctx.json) print_json(*j);
  else print_tenants(json::array({*j}));
  return kExitOk;
}

// Only what is given changes; the tenant's workers keep running.
int set_cmd(const Context& ctx, const AddOpts& o) {
  json change = json::object();
  if (!o.token.empty()) change["token"] = o.token;
  json limits;
  if (!limits_from_opts(o, limits)) return kExitUsage;
  if (!limits.empty()) change["limits"] = limits;
  if (change.empty()) {
    std::cerr << "plume: tenant set: nothing to change (give --token or a limit)\n";
    return kExitUsage;
  }
  int rc = kExitOk;
  auto j = call_json(ctx, "PATCH", "/v1/tenants/" + url_encode(o.name), &change, rc);
  if (!j) return rc;
  if (ctx.json) print_json(*j);
  else print_tenants(json::array({*j}));
  return kExitOk;
}

int ls_cmd(const Context& ctx) {
  int rc = kExitOk;
  auto j = call_json(ctx, "GET", "/v1/tenants", nullptr, rc);
  if (!j) return rc;
  if (ctx.json) print_json(*j);
  else print_tenants(j->contains("tenants") ? (*j)["tenants"] : json::array());
  return kExitOk;
}

int rm_cmd(const Context& ctx, const std::string& name, bool force) {
  int rc = kExitOk;
  std::string target = "/v1/tenants/" + url_encode(name);
  if (force) target += "?force=true";
  auto reply = call(ctx, "DELETE", target, nullptr, rc);
  if (!reply) return rc;
  if (!ctx.json) std::cout << name << "\n";
  return kExitOk;
}

}  // namespace

void add_tenant_commands(CLI::App& app, Context& ctx, Actions& actions) {
  auto* group = app.add_subcommand("tenant", "Manage tenants (admin)");
  group->require_subcommand(1);
  group->footer(kExitCodesFooter);
  {
    auto o = std::make_shared<AddOpts>();
    auto* sub = group->add_subcommand("add", "Add a tenant");
    sub->add_option("name", o->name, "Tenant name ([a-z0-9][a-z0-9_-]{0,31})")->required();
    sub->add_option("--token", o->token, "The tenant's API token (>= 8 characters)")->required();
    sub->add_option("--uid-base", o->uid_base, "First host uid of the tenant's range (default: next free)");
    sub->add_option("--uid-count", o->uid_count, "Size of the uid range (default 65536)");
    add_limit_options(*sub, *o);
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, o] { return add_cmd(ctx, *o); };
  }
  {
    auto o = std::make_shared<AddOpts>();
    auto* sub = group->add_subcommand("set", "Give a tenant a new token or limits; its workers keep running");
    sub->add_option("name", o->name, "Tenant name")->required();
    sub->add_option("--token", o->token, "A new API token (>= 8 characters); the old one stops working");
    add_limit_options(*sub, *o);
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, o] { return set_cmd(ctx, *o); };
  }
  {
    auto* sub = group->add_subcommand("ls", "List tenants");
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx] { return ls_cmd(ctx); };
  }
  {
    auto name = std::make_shared<std::string>();
    auto force = std::make_shared<bool>(false);
    auto* sub = group->add_subcommand("rm", "Remove a tenant");
    sub->add_flag("--force", *force, "Kill the tenant's running workers first");
    sub->add_option("name", *name, "Tenant name")->required();
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, name, force] { return rm_cmd(ctx, *name, *force); };
  }
}

}  // namespace plume::cli
