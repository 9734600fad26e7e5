// plumed's configuration. One schema serves the TOML config file, the JSON control API and the
// CLI: TOML tables are converted to JSON and every object is read by the same *_from_json function.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plume/base/result.h"

namespace plume::kernel {

using nlohmann::json;

// A configuration or request error: which field, and what is wrong with it.
struct ConfigError {
  std::string message;
};
template <class T>
using ConfigResult = Result<T, ConfigError>;

struct TenantLimits {
  uint64_t memory_bytes = 256ull << 20;
  uint32_t pids_max = 128;
  uint32_t cpu_percent = 100;  // of one CPU
  uint32_t cpu_weight = 100;
  uint32_t max_workers = 16;   // concurrently running
  bool operator==(const TenantLimits&) const = default;
};

struct TenantSpec {
  std::string name;
  std::string token;
  uint32_t uid_base = 0;  // 0: allocate the next free range
  uint32_t uid_count = 65536;
  TenantLimits limits;
};

// An image whose app is linked with libplume runs as featherweight instances forked from a
// per-tenant template (docs/fwp.md).
struct FwpImageSpec {
  bool enabled = false;
  std::string binary;                     // the app on the host (exec'd into the sandbox by fd)
  uint32_t pool_size = 0;                 // parked instances kept ready per tenant
  uint32_t spinning_standbys = 0;         // of those, polling at SCHED_IDLE (≤ pool_size)
  std::vector<std::string> io_uring_ops;  // opcodes an instance's ring may carry ("nop", "read")
  std::string instance_cgroups = "shared";  // "own": a cgroup per instance; "shared": the template's
  bool huge_text = false;  // the template's code on a 2 MiB transparent huge page (TemplateSpec::huge_text)
  // Each instance's channel: slots per direction, and the largest message either way (rounded up
  // so that a slot, the message and its 8-byte header, is a multiple of 64 bytes).
  static constexpr uint32_t kMaxChannelSlots = 256;
  static constexpr uint32_t kMaxRingBytes = 1u << 20;  // slots × slot size, per direction
  uint32_t channel_slots = 16;
  uint32_t max_message = 1016;
  uint32_t channel_slot_bytes() const { return (max_message + 8 + 63) / 64 * 64; }
  bool operator==(const FwpImageSpec&) const = default;
};

struct ImageSpec {
  std::string name;
  std::string rootfs;           // directory; empty with bundle empty = the host view
  std::string bundle;           // OCI bundle directory (config.json's root.path is the rootfs)
  std::string seccomp_profile;  // OCI seccomp JSON file; empty = the built-in default
  bool io_uring = false;
  FwpImageSpec fwp;
  bool operator==(const ImageSpec&) const = default;
};

// IORING_OP_* by name ("read" → IORING_OP_READ); -1 when unknown.
int io_uring_op_from_name(const std::string& name);

struct DaemonConfig {
  std::string runtime_dir = "/run/plume";
  // Where tenants and images added through the API are kept (api_state.h); empty: they last
  // until plumed stops.
  std::string state_dir;
  std::string socket;  // default <runtime_dir>/plumed.sock
  std::string admin_token;  // empty: generate one and write <runtime_dir>/admin.token
  std::string log_level = "info";
  uint32_t shutdown_grace_ms = 5000;
  uint64_t max_body_bytes = 1 << 20;
  uint64_t log_buffer_bytes = 64 << 10;  // per worker and stream
  uint32_t max_exited_workers = 1024;     // exited records kept per tenant before the oldest go
  // Spinning standbys (fwp.spinning_standbys) granted host-wide, over all templates; none unless
  // the operator grants them (see fwp_workers.cc). Pollers beyond the free CPUs would slow each
  // other.
  uint32_t spinning_standby_budget = 0;
};

struct CgroupConfig {
  std::string root = "/sys/fs/cgroup";
  std::string parent = "plume";
};

struct Config {
  DaemonConfig daemon;
  CgroupConfig cgroup;
  std::vector<TenantSpec> tenants;
  std::vector<ImageSpec> images;
};

// `message` naming what it is about ("tenant x: …") once: prefixed unless it begins with `what`.
std::string naming(const std::string& what, const std::string& message);

// Names of tenants, images: [a-z0-9][a-z0-9_-]{0,31}.
bool valid_name(const std::string& name);
// "256M", "1G", "4096", or a JSON number → bytes.
ConfigResult<uint64_t> parse_bytes(const json& value, const std::string& field);

ConfigResult<TenantLimits> limits_from_json(const json& j, TenantLimits base, const std::string& where);
ConfigResult<TenantSpec> tenant_from_json(const json& j);
ConfigResult<ImageSpec> image_from_json(const json& j);
json limits_to_json(const TenantLimits& l);
// The inverses of tenant_from_json and image_from_json: what they give back reads back the same.
json tenant_to_json(const TenantSpec& t);
json image_to_json(const ImageSpec& i);

ConfigResult<Config> config_from_json(const json& j);
ConfigResult<Config> load_config_file(const std::string& path);
ConfigResult<Config> parse_config_toml(const std::string& text, const std::string& source);
// The built-in configuration: one demo tenant, the host image.
const char* default_config_toml();

}  // namespace plume::kernel
