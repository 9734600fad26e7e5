// Image verbs: image add (and add --replace), image set, image ls, image rm.
#include <climits>
#include <cstdlib>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli.h"
#include "table.h"

namespace plume::cli {
namespace {

using nlohmann::json;

// plumed resolves paths in its own cwd; send absolute ones.
std::string absolute(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf)) return buf;
  return path;  // let plumed report the missing path
}

std::string field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get<std::string>().empty() ? "-" : it->get<std::string>();
  return it->dump();
}

void print_images(const json& images) {
  Table t({"NAME", "ORIGIN", "SOURCE", "ROOTFS", "SECCOMP", "IO-URING", "POOL"});
  for (const auto& im : images) {
    const bool fwp = im.contains("fwp") && im["fwp"].is_object();
    t.add_row({field(im, "name"), field(im, "origin"), field(im, "source"), field(im, "rootfs"), field(im, "seccomp"),
               field(im, "io_uring"), fwp ? field(im["fwp"], "pool_size") : "-"});
  }
  std::cout << t.render();
}

struct AddOpts {
  std::string name, rootfs, bundle, seccomp, fwp_binary, instance_cgroups;
  std::vector<std::string> io_uring_ops;
  int64_t pool = -1;
  int64_t spinning = -1;
  int64_t channel_slots = -1;
  int64_t max_message = -1;
  bool io_uring = false;
  bool huge_text = false;
  bool replace = false;  // PUT over an existing image of that name
  bool force = false;    // ... stopping its running instances
};

int add_cmd(const Context& ctx, const AddOpts& o) {
  json spec = {{"name", o.name}};
  if (!o.rootfs.empty()) spec["rootfs"] = absolute(o.rootfs);
  if (!o.bundle.empty()) spec["bundle"] = absolute(o.bundle);
  if (!o.seccomp.empty()) spec["seccomp_profile"] = absolute(o.seccomp);
  if (o.io_uring) spec["io_uring"] = true;
  if (!o.fwp_binary.empty()) {
    json fwp = {{"binary", absolute(o.fwp_binary)}};
    if (o.pool >= 0) fwp["pool_size"] = o.pool;
    if (o.spinning >= 0) fwp["spinning_standbys"] = o.spinning;
    if (!o.io_uring_ops.empty()) fwp["io_uring_ops"] = o.io_uring_ops;
    if (!o.instance_cgroups.empty()) fwp["instance_cgroups"] = o.instance_cgroups;
    if (o.huge_text) fwp["huge_text"] = true;
    if (o.channel_slots >= 0) fwp["channel_slots"] = o.channel_slots;
    if (o.max_message >= 0) fwp["max_message"] = o.max_message;
    spec["fwp"] = fwp;
  } else if (o.pool >= 0 || o.spinning >= 0 || !o.io_uring_ops.empty() || !o.instance_cgroups.empty() ||
             o.huge_text || o.channel_slots >= 0 || o.max_message >= 0) {
    std::cerr << "plume: --pool, --spinning, --io-uring-op, --instance-cgroups, --huge-text, --channel-slots and "
                 "--max-message need --fwp-binary\n";
    return kExitUsage;
  }
  if (o.force && !o.replace) {
    std::cerr << "plume: --force needs --replace\n";
    return kExitUsage;
  }
  int rc = kExitOk;
  std::string target = "/v1/images";
  if (o.replace) target += "/" + url_encode(o.name) + (o.force ? "?force=true" : "");
  auto j = call_json(ctx, o.replace ? "PUT" : "POST", target, &spec, rc);
  if (!j) return rc;
  if (ctx.json) print_json(*j);
  else print_images(json::array({*j}));
  return kExitOk;
}

int ls_cmd(const Context& ctx) {
  int rc = kExitOk;
  auto j = call_json(ctx, "GET", "/v1/images", nullptr, rc);
  if (!j) return rc;
  if (ctx.json) print_json(*j);
  else print_images(j->contains("images") ? (*j)["images"] : json::array());
  return kExitOk;
}

int rm_cmd(const Context& ctx, const std::string& name, bool force) {
  int rc = kExitOk;
  std::string target = "/v1/images/" + url_encode(name);
  if (force) target += "?force=true";
  auto reply = call(ctx, "DELETE", target, nullptr, rc);
  if (!reply) return rc;
  if (!ctx.json) std::cout << name << "\n";
  return kExitOk;
}

// A featherweight image's warm pool, resized in every template of it.
int set_cmd(const Context& ctx, const std::string& name, int64_t pool) {
  json change = {{"fwp", {{"pool_size", pool}}}};
  int rc = kExitOk;
  auto j = call_json(ctx, "PATCH", "/v1/images/" + url_encode(name), &change, rc);
  if (!j) return rc;
  if (ctx.json) print_json(*j);
  else print_images(json::array({*j}));
  return kExitOk;
}

}  // namespace

void add_image_commands(CLI::App& app, Context& ctx, Actions& actions) {
  auto* group = app.add_subcommand("image", "Manage images");
  group->require_subcommand(1);
  group->footer(kExitCodesFooter);
  {
    auto o = std::make_shared<AddOpts>();
    auto* sub = group->add_subcommand("add", "Add an image from a rootfs directory or an OCI bundle (admin)");
    sub->add_option("name", o->name, "Image name")->required();
    auto* rootfs = sub->add_option("--rootfs", o->rootfs, "Root filesystem directory");
    auto* bundle = sub->add_option("--bundle", o->bundle, "OCI bundle directory (config.json + rootfs)");
    rootfs->excludes(bundle);
    bundle->excludes(rootfs);
    sub->add_option("--seccomp", o->seccomp, "OCI seccomp profile (JSON)");
    sub->add_flag("--io-uring", o->io_uring, "Allow the (restricted) io_uring in this image");
    sub->add_option("--fwp-binary", o->fwp_binary,
                    "An app linked with libplume: run as featherweight instances (plume run --fwp NAME)");
    sub->add_option("--pool", o->pool, "Parked instances kept ready per tenant (with --fwp-binary)");
    sub->add_option("--spinning", o->spinning,
                    "Of those, how many poll at SCHED_IDLE instead of sleeping: starts without a "
                    "wake-up, for a CPU kept busy; granted from plumed's "
                    "daemon.spinning_standby_budget, 0 unless raised (with --fwp-binary)");
    sub->add_option("--io-uring-op", o->io_uring_ops, "io_uring opcode an instance's ring may use (repeatable)")
        ->allow_extra_args(false);
    sub->add_option("--instance-cgroups", o->instance_cgroups, "own (a cgroup per instance) or shared")
        ->check(CLI::IsMember({"own", "shared"}));
    sub->add_flag("--huge-text", o->huge_text,
                  "Keep the template's code on a 2 MiB transparent huge page: faster template forks, "
                  "2 MiB more memory per tenant (with --fwp-binary)");
    sub->add_option("--channel-slots", o->channel_slots,
                    "Messages each instance's channel holds each way: a power of two, 2 to 256 (default 16; "
                    "with --fwp-binary)");
    sub->add_option("--max-message", o->max_message,
                    "Largest message either way, in bytes: 56 to 65528, rounded up so that a slot is a "
                    "multiple of 64 (default 1016; with --fwp-binary)");
    sub->add_flag("--replace", o->replace,
                  "Replace the image of that name (PUT): its templates and pools go, the next start makes new "
                  "ones; also picks up a new build of its app. Refused while its instances run");
    sub->add_flag("--force", o->force, "With --replace: stop the image's running instances first");
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, o] {
      if (o->rootfs.empty() && o->bundle.empty() && o->fwp_binary.empty()) {
        std::cerr << "plume: image add: one of --rootfs, --bundle or --fwp-binary is required\n";
        return static_cast<int>(kExitUsage);
      }
      return add_cmd(ctx, *o);
    };
  }
  {
    auto name = std::make_shared<std::string>();
    auto pool = std::make_shared<int64_t>(-1);
    auto* sub = group->add_subcommand("set", "Resize a featherweight image's warm pool in every tenant's template (admin)");
    sub->add_option("name", *name, "Image name")->required();
    sub->add_option("--pool", *pool, "Parked instances kept ready per tenant")->required()->check(CLI::NonNegativeNumber);
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, name, pool] { return set_cmd(ctx, *name, *pool); };
  }
  {
    auto* sub = group->add_subcommand("ls", "List images");
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx] { return ls_cmd(ctx); };
  }
  {
    auto name = std::make_shared<std::string>();
    auto force = std::make_shared<bool>(false);
    auto* sub = group->add_subcommand("rm", "Remove an image and its templates and warm pools (admin)");
    sub->add_option("name", *name, "Image name")->required();
    sub->add_flag("--force", *force, "Stop the image's running featherweight instances first");
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, name, force] { return rm_cmd(ctx, *name, *force); };
  }
}

}  // namespace plume::cli
