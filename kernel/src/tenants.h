// Tenants: who may call the API (by token), which uid range their workers get, their limits, and
// what they have used (metering). A tenant sees and touches only its own workers.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config.h"

namespace plume::kernel {

// Why a worker ended; the order is the order of the metric labels.
enum class ExitCause { exit, signal, oom, limit, spawn_failed };
inline constexpr ExitCause kAllExitCauses[] = {ExitCause::exit, ExitCause::signal, ExitCause::oom,
                                               ExitCause::limit, ExitCause::spawn_failed};
const char* exit_cause_name(ExitCause c);

struct TenantMeter {
  uint64_t workers_started = 0;
  uint64_t exited[5] = {};      // indexed by ExitCause
  uint64_t cpu_ns_exited = 0;   // CPU of exited workers; running ones are added at read time
  uint64_t peak_memory_bytes = 0;
  uint64_t messages_in = 0, messages_out = 0;  // through its instances' channels (instance_messages.cc)
};

struct Tenant {
  TenantSpec spec;
  TenantMeter meter;
  uint32_t running = 0;
  bool removing = false;  // DELETE ?force=true in progress
};

class TenantRegistry {
 public:
  // Validates the uid range (no overlap with another tenant, nothing below 65536, which is the
  // host's own users) and allocates one when spec.uid_base is 0.
  ConfigResult<Tenant*> add(TenantSpec spec);
  void remove(const std::string& name);
  // Whether tenant `name` may take `token`: not while another tenant than `self` (the tenant
  // itself, or nullptr for one being added) holds it, since two tenants on one token would each
  // act as the other. add() checks it; so does Supervisor::update_tenant.
  ConfigResult<bool> token_free_for(const std::string& name, const std::string& token, const Tenant* self) const;
  Tenant* find(const std::string& name);
  // Constant-time over every tenant's token, so timing does not tell which prefix matched.
  Tenant* by_token(const std::string& token);
  std::vector<Tenant*> list();

 private:
  std::map<std::string, std::unique_ptr<Tenant>> tenants_;
};

// Compares without an early exit on the first differing byte.
bool tokens_equal(const std::string& a, const std::string& b);

}  // namespace plume::kernel
