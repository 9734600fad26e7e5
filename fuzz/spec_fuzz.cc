// libFuzzer target for what operators and tenants write: the TOML config file, and the JSON
// objects the API reads (POST /v1/tenants, /v1/images, /v1/workers and /v1/workers/<id>/messages
// bodies, a tenant's limits, the state file's entries). The first byte picks TOML or JSON. Checks that nothing throws or
// crashes, and that what tenant_to_json and image_to_json write reads back the same: the state
// file (kernel/src/api_state.cc) relies on it to bring tenants and images back after a restart.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "config.h"
#include "plume/base/base64.h"
#include "run_spec.h"

namespace {

using namespace plume::kernel;

void check(bool ok) {
  if (!ok) std::abort();
}

void round_trip(const TenantSpec& t) {
  const json written = tenant_to_json(t);
  auto back = tenant_from_json(written);
  check(back.ok());
  check(tenant_to_json(back.value()) == written);
}

void round_trip(const ImageSpec& i) {
  const json written = image_to_json(i);
  auto back = image_from_json(written);
  check(back.ok());
  check(back.value() == i);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((data[0] & 1) != 0) {
    auto config = parse_config_toml(text, "fuzz.toml");
    if (config.ok()) {
      for (const TenantSpec& t : config->tenants) round_trip(t);
      for (const ImageSpec& i : config->images) round_trip(i);
    }
    return 0;
  }
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  if (auto t = tenant_from_json(j); t.ok()) round_trip(t.value());
  if (auto i = image_from_json(j); i.ok()) round_trip(i.value());
  (void)run_spec_from_json(j);
  if (auto m = messages_request_from_json(j); m.ok()) {  // what the supervisor relies on
    check(m->replies <= MessagesRequest::kMaxReplies && (!m->messages.empty() || m->replies > 0));
    check(m->wait_for_room_ms <= 24ull * 3600 * 1000);  // a timer plumed arms as given
    // Base64 is taken only in its one canonical spelling: encoding what was decoded gives it back.
    if (m->base64) {
      const json& given = j["messages"];
      for (size_t i = 0; i < m->messages.size(); ++i)
        check(plume::base64::encode(m->messages[i]) == (given.is_string() ? given : given[i]).get<std::string>());
    }
  }
  (void)limits_from_json(j, TenantLimits{}, "limits");
  (void)config_from_json(j);
  return 0;
}
