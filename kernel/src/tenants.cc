#include "tenants.h"

namespace plume::kernel {

namespace {
constexpr uint64_t kFirstTenantUid = 65536;    // below: the host's own users
constexpr uint64_t kDefaultAllocBase = 100000;
}  // namespace

const char* exit_cause_name(ExitCause c) {
  switch (c) {
    case ExitCause::exit: return "exit";
    case ExitCause::signal: return "signal";
    case ExitCause::oom: return "oom";
    case ExitCause::limit: return "limit";
    case ExitCause::spawn_failed: return "spawn_failed";
  }
  return "exit";
}

bool tokens_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = static_cast<unsigned char>(diff | (x ^ y));
  }
  return diff == 0;
}

ConfigResult<Tenant*> TenantRegistry::add(TenantSpec spec) {
  if (tenants_.count(spec.name)) return fail(ConfigError{"tenant " + spec.name + " already exists"});
  auto overlaps = [&](uint64_t base, uint64_t count) -> const Tenant* {
    for (auto& [name, t] : tenants_) {
      uint64_t b = t->spec.uid_base, e = b + t->spec.uid_count;
      if (base < e && b < base + count) return t.get();
    }
    return nullptr;
  };
  if (spec.uid_base == 0) {
    uint64_t base = kDefaultAllocBase;
    while (const Tenant* t = overlaps(base, spec.uid_count)) base = t->spec.uid_base + t->spec.uid_count;
    if (base + spec.uid_count > 0xFFFFFFFFull) return fail(ConfigError{"no free uid range for tenant " + spec.name});
    spec.uid_base = static_cast<uint32_t>(base);
  }
  if (spec.uid_base < kFirstTenantUid)
    return fail(ConfigError{"tenant " + spec.name + ": uid_base " + std::to_string(spec.uid_base) +
                            " is below 65536 (reserved for the host's users)"});
  if (const Tenant* t = overlaps(spec.uid_base, spec.uid_count))
    return fail(ConfigError{"tenant " + spec.name + ": uid range overlaps tenant " + t->spec.name});
  if (auto free = token_free_for(spec.name, spec.token, nullptr); !free.ok()) return fail(free.error());
  auto tenant = std::make_unique<Tenant>();
  tenant->spec = std::move(spec);
  Tenant* raw = tenant.get();
  tenants_[raw->spec.name] = std::move(tenant);
  return raw;
}

void TenantRegistry::remove(const std::string& name) { tenants_.erase(name); }

ConfigResult<bool> TenantRegistry::token_free_for(const std::string& name, const std::string& token,
                                                  const Tenant* self) const {
  bool taken = false;  // every tenant compared, as by_token does
  for (auto& [other_name, other] : tenants_) taken = (other.get() != self && tokens_equal(other->spec.token, token)) || taken;
  if (taken) return fail(ConfigError{"tenant " + name + ": token already used by another tenant"});
  return true;
}

Tenant* TenantRegistry::find(const std::string& name) {
  auto it = tenants_.find(name);
  return it == tenants_.end() ? nullptr : it->second.get();
}

Tenant* TenantRegistry::by_token(const std::string& token) {
  Tenant* found = nullptr;
  for (auto& [name, t] : tenants_)
    if (tokens_equal(t->spec.token, token)) found = t.get();
  return found;
}

std::vector<Tenant*> TenantRegistry::list() {
  std::vector<Tenant*> out;
  for (auto& [name, t] : tenants_) out.push_back(t.get());
  return out;
}

}  // namespace plume::kernel
