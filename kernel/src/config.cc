#include "config.h"

#include <cctype>
#include <sstream>

#include <liburing.h>
#include <toml++/toml.h>

#include "files.h"

namespace plume::kernel {
namespace {

ConfigError err(std::string m) { return ConfigError{std::move(m)}; }

// TOML → JSON, so the config file and the API share one reader per object.
json toml_to_json(const toml::node& node) {
  if (auto* t = node.as_table()) {
    json o = json::object();
    for (auto&& [k, v] : *t) o[std::string(k.str())] = toml_to_json(v);
    return o;
  }
  if (auto* a = node.as_array()) {
    json arr = json::array();
    for (auto&& v : *a) arr.push_back(toml_to_json(v));
    return arr;
  }
  if (auto* s = node.as_string()) return s->get();
  if (auto* i = node.as_integer()) return i->get();
  if (auto* f = node.as_floating_point()) return f->get();
  if (auto* b = node.as_boolean()) return b->get();
  return nullptr;  // dates and times: no field of Plume's takes one, so they fail type checks
}

template <class T>
ConfigResult<T> get_uint(const json& j, const char* key, T fallback, const std::string& where, uint64_t max) {
  if (!j.contains(key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0))
    return fail(err(where + "." + key + ": expected a non-negative integer"));
  uint64_t n = v.get<uint64_t>();
  if (n > max) return fail(err(where + "." + key + ": " + std::to_string(n) + " is too large (max " + std::to_string(max) + ")"));
  return static_cast<T>(n);
}

ConfigResult<std::string> get_string(const json& j, const char* key, std::string fallback, const std::string& where) {
  if (!j.contains(key)) return fallback;
  if (!j.at(key).is_string()) return fail(err(where + "." + key + ": expected a string"));
  return j.at(key).get<std::string>();
}

ConfigResult<bool> get_bool(const json& j, const char* key, bool fallback, const std::string& where) {
  if (!j.contains(key)) return fallback;
  if (!j.at(key).is_boolean()) return fail(err(where + "." + key + ": expected true or false"));
  return j.at(key).get<bool>();
}

// Rejects keys the schema does not know: a typo in a limit must not silently mean "no limit".
ConfigResult<bool> only_keys(const json& j, std::initializer_list<const char*> keys, const std::string& where) {
  if (!j.is_object()) return fail(err(where + ": expected an object"));
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for (const char* k : keys) known = known || it.key() == k;
    if (!known) return fail(err(where + ": unknown field \"" + it.key() + "\""));
  }
  return true;
}

// `var` names a variable (and is pasted into another): it cannot take parentheses.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define PLUME_TRY(var, expr)                  \
  auto var##_r = (expr);                      \
  if (!var##_r.ok()) return fail(var##_r.error()); \
  auto var = std::move(var##_r.value())
// NOLINTEND(bugprone-macro-parentheses)

}  // namespace

std::string naming(const std::string& what, const std::string& message) {
  return message.rfind(what, 0) == 0 ? message : what + ": " + message;
}

bool valid_name(const std::string& name) {  // [a-z0-9][a-z0-9_-]{0,31}
  auto lower_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (name.empty() || name.size() > 32 || !lower_digit(name[0])) return false;
  for (char c : name)
    if (!lower_digit(c) && c != '_' && c != '-') return false;
  return true;
}

ConfigResult<uint64_t> parse_bytes(const json& v, const std::string& field) {
  if (v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0)) return v.get<uint64_t>();
  if (!v.is_string()) return fail(err(field + ": expected bytes as an integer or a string like \"256M\""));
  const std::string s = v.get<std::string>();
  size_t i = 0;
  uint64_t n = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    if (n > (UINT64_MAX - 9) / 10) return fail(err(field + ": \"" + s + "\" is too large"));
    n = n * 10 + static_cast<uint64_t>(s[i] - '0');
    ++i;
  }
  if (i == 0) return fail(err(field + ": \"" + s + "\" is not a size (use e.g. 512K, 256M, 1G)"));
  std::string unit = s.substr(i);
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (unit.size() == 2 && (unit[1] == 'i' || unit[1] == 'I')) unit.pop_back();
  unsigned shift = 0;
  if (unit.empty()) shift = 0;
  else if (unit == "K" || unit == "k") shift = 10;
  else if (unit == "M" || unit == "m") shift = 20;
  else if (unit == "G" || unit == "g") shift = 30;
  else if (unit == "T" || unit == "t") shift = 40;
  else return fail(err(field + ": unknown unit in \"" + s + "\""));
  if (shift && n > (UINT64_MAX >> shift)) return fail(err(field + ": \"" + s + "\" is too large"));
  return n << shift;
}

ConfigResult<TenantLimits> limits_from_json(const json& j, TenantLimits base, const std::string& where) {
  PLUME_TRY(ok, only_keys(j, {"memory_bytes", "memory", "pids_max", "pids", "cpu_percent", "cpu_weight", "max_workers"}, where));
  (void)ok;
  TenantLimits l = base;
  for (const char* key : {"memory_bytes", "memory"}) {
    if (j.contains(key)) {
      PLUME_TRY(bytes, parse_bytes(j.at(key), where + "." + key));
      l.memory_bytes = bytes;
    }
  }
  if (j.contains("pids")) {
    PLUME_TRY(p, get_uint<uint32_t>(j, "pids", l.pids_max, where, 4u << 20));
    l.pids_max = p;
  }
  PLUME_TRY(pids, get_uint<uint32_t>(j, "pids_max", l.pids_max, where, 4u << 20));
  PLUME_TRY(cpu, get_uint<uint32_t>(j, "cpu_percent", l.cpu_percent, where, 100000));
  PLUME_TRY(weight, get_uint<uint32_t>(j, "cpu_weight", l.cpu_weight, where, 10000));
  PLUME_TRY(maxw, get_uint<uint32_t>(j, "max_workers", l.max_workers, where, 100000));
  l.pids_max = pids;
  l.cpu_percent = cpu;
  l.cpu_weight = weight;
  l.max_workers = maxw;
  return l;
}

json limits_to_json(const TenantLimits& l) {
  return {{"memory_bytes", l.memory_bytes}, {"pids_max", l.pids_max}, {"cpu_percent", l.cpu_percent},
          {"cpu_weight", l.cpu_weight}, {"max_workers", l.max_workers}};
}

json tenant_to_json(const TenantSpec& t) {
  return {{"name", t.name}, {"token", t.token}, {"uid_base", t.uid_base}, {"uid_count", t.uid_count},
          {"limits", limits_to_json(t.limits)}};
}

ConfigResult<TenantSpec> tenant_from_json(const json& j) {
  PLUME_TRY(ok, only_keys(j, {"name", "token", "uid_base", "uid_count", "limits"}, "tenant"));
  (void)ok;
  TenantSpec t;
  PLUME_TRY(name, get_string(j, "name", "", "tenant"));
  if (!valid_name(name)) return fail(err("tenant.name: \"" + name + "\" must match [a-z0-9][a-z0-9_-]{0,31}"));
  t.name = name;
  const std::string where = "tenant " + name;
  PLUME_TRY(token, get_string(j, "token", "", where));
  if (token.size() < 8) return fail(err(where + ": token must be at least 8 characters"));
  for (char c : token)
    if (c <= ' ' || c > '~') return fail(err(where + ": token must be printable ASCII without spaces"));
  t.token = token;
  PLUME_TRY(base, get_uint<uint32_t>(j, "uid_base", 0u, where, 0xFFFFFFFEu));
  PLUME_TRY(count, get_uint<uint32_t>(j, "uid_count", 65536u, where, 1u << 24));
  if (count == 0) return fail(err(where + ".uid_count: must be at least 1"));
  if (base != 0 && static_cast<uint64_t>(base) + count > 0xFFFFFFFFull)
    return fail(err(where + ": uid range overflows"));
  t.uid_base = base;
  t.uid_count = count;
  if (j.contains("limits")) {
    PLUME_TRY(limits, limits_from_json(j.at("limits"), TenantLimits{}, where + ".limits"));
    t.limits = limits;
  }
  return t;
}

int io_uring_op_from_name(const std::string& name) {
  static const std::pair<const char*, int> kOps[] = {
      {"nop", IORING_OP_NOP},           {"readv", IORING_OP_READV},       {"writev", IORING_OP_WRITEV},
      {"fsync", IORING_OP_FSYNC},       {"poll_add", IORING_OP_POLL_ADD}, {"poll_remove", IORING_OP_POLL_REMOVE},
      {"sendmsg", IORING_OP_SENDMSG},   {"recvmsg", IORING_OP_RECVMSG},   {"timeout", IORING_OP_TIMEOUT},
      {"timeout_remove", IORING_OP_TIMEOUT_REMOVE}, {"accept", IORING_OP_ACCEPT},
      {"async_cancel", IORING_OP_ASYNC_CANCEL}, {"connect", IORING_OP_CONNECT}, {"openat", IORING_OP_OPENAT},
      {"close", IORING_OP_CLOSE},       {"statx", IORING_OP_STATX},       {"read", IORING_OP_READ},
      {"write", IORING_OP_WRITE},       {"send", IORING_OP_SEND},         {"recv", IORING_OP_RECV},
      {"splice", IORING_OP_SPLICE},     {"shutdown", IORING_OP_SHUTDOWN},
  };
  for (auto& [n, op] : kOps)
    if (name == n) return op;
  return -1;
}

namespace {

ConfigResult<FwpImageSpec> fwp_from_json(const json& j, const std::string& where) {
  PLUME_TRY(ok, only_keys(j, {"binary", "pool_size", "spinning_standbys", "io_uring_ops", "instance_cgroups", "huge_text",
                              "channel_slots", "max_message"},
                          where));
  (void)ok;
  FwpImageSpec f;
  f.enabled = true;
  PLUME_TRY(binary, get_string(j, "binary", "", where));
  if (binary.empty() || binary[0] != '/') return fail(err(where + ".binary: required, an absolute path on the host"));
  f.binary = binary;
  PLUME_TRY(pool, get_uint<uint32_t>(j, "pool_size", 0u, where, 1024));
  f.pool_size = pool;
  PLUME_TRY(spinning, get_uint<uint32_t>(j, "spinning_standbys", 0u, where, 1024));
  if (spinning > pool) return fail(err(where + ".spinning_standbys: at most pool_size (" + std::to_string(pool) + ")"));
  f.spinning_standbys = spinning;
  PLUME_TRY(mode, get_string(j, "instance_cgroups", "shared", where));
  if (mode != "shared" && mode != "own") return fail(err(where + ".instance_cgroups: \"shared\" or \"own\""));
  f.instance_cgroups = mode;
  PLUME_TRY(huge_text, get_bool(j, "huge_text", false, where));
  f.huge_text = huge_text;
  PLUME_TRY(slots, get_uint<uint32_t>(j, "channel_slots", f.channel_slots, where, FwpImageSpec::kMaxChannelSlots));
  if (slots < 2 || (slots & (slots - 1)) != 0)
    return fail(err(where + ".channel_slots: a power of two in [2, " + std::to_string(FwpImageSpec::kMaxChannelSlots) + "]"));
  f.channel_slots = slots;
  PLUME_TRY(max_message, get_uint<uint32_t>(j, "max_message", f.max_message, where, 65536 - 8));
  if (max_message < 56) return fail(err(where + ".max_message: at least 56 bytes"));
  f.max_message = max_message;
  if (uint64_t{f.channel_slots} * f.channel_slot_bytes() > FwpImageSpec::kMaxRingBytes)
    return fail(err(where + ": channel_slots × (max_message + 8, rounded up to 64) is " +
                    std::to_string(uint64_t{f.channel_slots} * f.channel_slot_bytes()) + " bytes, more than " +
                    std::to_string(FwpImageSpec::kMaxRingBytes) + " per direction"));
  if (j.contains("io_uring_ops")) {
    const json& ops = j.at("io_uring_ops");
    if (!ops.is_array()) return fail(err(where + ".io_uring_ops: expected an array of opcode names"));
    for (const json& op : ops) {
      if (!op.is_string() || io_uring_op_from_name(op.get<std::string>()) < 0)
        return fail(err(where + ".io_uring_ops: unknown opcode " + op.dump()));
      f.io_uring_ops.push_back(op.get<std::string>());
    }
  }
  return f;
}

}  // namespace

ConfigResult<ImageSpec> image_from_json(const json& j) {
  PLUME_TRY(ok, only_keys(j, {"name", "rootfs", "bundle", "seccomp_profile", "io_uring", "fwp"}, "image"));
  (void)ok;
  ImageSpec im;
  PLUME_TRY(name, get_string(j, "name", "", "image"));
  if (!valid_name(name)) return fail(err("image.name: \"" + name + "\" must match [a-z0-9][a-z0-9_-]{0,31}"));
  im.name = name;
  const std::string where = "image " + name;
  PLUME_TRY(rootfs, get_string(j, "rootfs", "", where));
  PLUME_TRY(bundle, get_string(j, "bundle", "", where));
  PLUME_TRY(profile, get_string(j, "seccomp_profile", "", where));
  PLUME_TRY(uring, get_bool(j, "io_uring", false, where));
  if (!rootfs.empty() && !bundle.empty()) return fail(err(where + ": give either rootfs or bundle, not both"));
  if (j.contains("fwp")) {
    PLUME_TRY(f, fwp_from_json(j.at("fwp"), where + ".fwp"));
    if (!f.io_uring_ops.empty() && !uring) return fail(err(where + ": fwp.io_uring_ops needs io_uring = true"));
    im.fwp = f;
  }
  // An FWP image may use the host view (its app comes in by fd); other images need a root.
  if (rootfs.empty() && bundle.empty() && !im.fwp.enabled) return fail(err(where + ": needs rootfs or bundle"));
  for (const std::string* p : {&rootfs, &bundle, &profile})
    if (!p->empty() && (*p)[0] != '/') return fail(err(where + ": paths must be absolute: " + *p));
  im.rootfs = rootfs;
  im.bundle = bundle;
  im.seccomp_profile = profile;
  im.io_uring = uring;
  return im;
}

json image_to_json(const ImageSpec& i) {
  json j = {{"name", i.name}, {"io_uring", i.io_uring}};
  if (!i.rootfs.empty()) j["rootfs"] = i.rootfs;
  if (!i.bundle.empty()) j["bundle"] = i.bundle;
  if (!i.seccomp_profile.empty()) j["seccomp_profile"] = i.seccomp_profile;
  if (i.fwp.enabled)
    j["fwp"] = {{"binary", i.fwp.binary}, {"pool_size", i.fwp.pool_size}, {"spinning_standbys", i.fwp.spinning_standbys},
                {"io_uring_ops", i.fwp.io_uring_ops}, {"instance_cgroups", i.fwp.instance_cgroups},
                {"huge_text", i.fwp.huge_text}, {"channel_slots", i.fwp.channel_slots}, {"max_message", i.fwp.max_message}};
  return j;
}

ConfigResult<Config> config_from_json(const json& j) {
  PLUME_TRY(ok, only_keys(j, {"daemon", "cgroup", "tenant", "image"}, "config"));
  (void)ok;
  Config c;
  if (j.contains("daemon")) {
    const json& d = j.at("daemon");
    PLUME_TRY(dk, only_keys(d, {"runtime_dir", "state_dir", "socket", "admin_token", "log_level", "shutdown_grace_ms",
                                "max_body_bytes", "log_buffer_bytes", "max_exited_workers",
                                "spinning_standby_budget"}, "daemon"));
    (void)dk;
    PLUME_TRY(rd, get_string(d, "runtime_dir", c.daemon.runtime_dir, "daemon"));
    PLUME_TRY(state, get_string(d, "state_dir", "", "daemon"));
    if (!state.empty() && state[0] != '/') return fail(err("daemon.state_dir: must be an absolute path"));
    c.daemon.state_dir = state;
    PLUME_TRY(sock, get_string(d, "socket", "", "daemon"));
    PLUME_TRY(tok, get_string(d, "admin_token", "", "daemon"));
    PLUME_TRY(lvl, get_string(d, "log_level", c.daemon.log_level, "daemon"));
    PLUME_TRY(grace, get_uint<uint32_t>(d, "shutdown_grace_ms", c.daemon.shutdown_grace_ms, "daemon", 3600000));
    PLUME_TRY(body, get_uint<uint64_t>(d, "max_body_bytes", c.daemon.max_body_bytes, "daemon", 64ull << 20));
    PLUME_TRY(logb, get_uint<uint64_t>(d, "log_buffer_bytes", c.daemon.log_buffer_bytes, "daemon", 64ull << 20));
    PLUME_TRY(keep, get_uint<uint32_t>(d, "max_exited_workers", c.daemon.max_exited_workers, "daemon", 1000000));
    if (keep == 0) return fail(err("daemon.max_exited_workers: must be at least 1"));
    if (d.contains("spinning_standby_budget")) {
      PLUME_TRY(budget, get_uint<uint32_t>(d, "spinning_standby_budget", 0u, "daemon", 4096));
      c.daemon.spinning_standby_budget = budget;
    }
    if (!tok.empty() && tok.size() < 8) return fail(err("daemon.admin_token: must be at least 8 characters"));
    c.daemon.runtime_dir = rd;
    c.daemon.socket = sock;
    c.daemon.admin_token = tok;
    c.daemon.log_level = lvl;
    c.daemon.shutdown_grace_ms = grace;
    c.daemon.max_body_bytes = body;
    c.daemon.log_buffer_bytes = logb;
    c.daemon.max_exited_workers = keep;
  }
  if (j.contains("cgroup")) {
    const json& g = j.at("cgroup");
    PLUME_TRY(gk, only_keys(g, {"root", "parent"}, "cgroup"));
    (void)gk;
    PLUME_TRY(root, get_string(g, "root", c.cgroup.root, "cgroup"));
    PLUME_TRY(parent, get_string(g, "parent", c.cgroup.parent, "cgroup"));
    c.cgroup.root = root;
    c.cgroup.parent = parent;
  }
  for (const char* key : {"tenant", "image"}) {
    if (!j.contains(key)) continue;
    if (!j.at(key).is_array()) return fail(err(std::string(key) + ": expected an array of tables ([[" + key + "]])"));
  }
  if (j.contains("tenant")) {
    for (const json& t : j.at("tenant")) {
      PLUME_TRY(spec, tenant_from_json(t));
      c.tenants.push_back(std::move(spec));
    }
  }
  if (j.contains("image")) {
    for (const json& i : j.at("image")) {
      PLUME_TRY(spec, image_from_json(i));
      c.images.push_back(std::move(spec));
    }
  }
  // What would make two entries one, or one tenant able to act as another: the file is wrong, and
  // which of the two to keep is not plumed's guess.
  for (size_t a = 0; a < c.tenants.size(); ++a) {
    const TenantSpec& t = c.tenants[a];
    if (!c.daemon.admin_token.empty() && t.token == c.daemon.admin_token)
      return fail(err("tenant " + t.name + ": its token is daemon.admin_token"));
    for (size_t b = 0; b < a; ++b) {
      if (c.tenants[b].name == t.name) return fail(err("tenant " + t.name + ": named twice"));
      if (c.tenants[b].token == t.token) return fail(err("tenant " + t.name + ": same token as tenant " + c.tenants[b].name));
    }
  }
  for (size_t a = 0; a < c.images.size(); ++a)
    for (size_t b = 0; b < a; ++b)
      if (c.images[b].name == c.images[a].name) return fail(err("image " + c.images[a].name + ": named twice"));
  return c;
}

ConfigResult<Config> parse_config_toml(const std::string& text, const std::string& source) {
  toml::table parsed;
  try {  // Debian's toml++ is built with exceptions; they stop here.
    parsed = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << source << ":" << e.source().begin.line << ":" << e.source().begin.column << ": " << e.description();
    return fail(err(os.str()));
  }
  auto r = config_from_json(toml_to_json(parsed));
  if (!r.ok()) return fail(err(source + ": " + r.error().message));
  return r;
}

ConfigResult<Config> load_config_file(const std::string& path) {
  auto text = read_text_file(path);
  if (!text.ok()) return fail(err("cannot read config file " + path));
  return parse_config_toml(text.value(), path);
}

const char* default_config_toml() {
  return R"(# plumed's built-in configuration (print it with `plumed --print-default-config`).
[daemon]
runtime_dir = "/run/plume"          # socket, admin token, pid file and lock live here
# state_dir = "/var/lib/plume"      # keeps tenants and images added through the API; unset: they
#                                   # last until plumed stops
# socket = "/run/plume/plumed.sock"
# admin_token = ""                  # empty: generated at start, written to <runtime_dir>/admin.token
log_level = "info"
shutdown_grace_ms = 5000            # SIGTERM to workers, then SIGKILL after this long
max_body_bytes = 1048576
log_buffer_bytes = 65536            # per worker and stream: the last bytes are kept
# spinning_standby_budget = 1       # spinning standbys host-wide; default 0 (docs/fwp.md)

[cgroup]
root = "/sys/fs/cgroup"
parent = "plume"

[[tenant]]
name = "demo"
token = "demo-token-change-me"
uid_base = 100000
uid_count = 65536
[tenant.limits]
memory = "256M"
pids_max = 128
cpu_percent = 100
cpu_weight = 100
max_workers = 16

# The image "host" is built in: a read-only view of the host's /usr, /bin, /lib, /etc.
# [[image]]
# name = "busybox"
# rootfs = "/srv/images/busybox"     # or: bundle = "/srv/bundles/app" (an OCI bundle)
# seccomp_profile = "/etc/plume/profiles/app.json"
# io_uring = false
)";
}

}  // namespace plume::kernel
