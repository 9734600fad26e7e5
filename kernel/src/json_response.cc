#include "json_response.h"

namespace plume::kernel {

// Strings from workers (an instance's replies, argv) need not be UTF-8: such bytes are sent as
// U+FFFD rather than failing the answer (a strict dump throws).
HttpResponse json_response(int status, const nlohmann::json& body) {
  return HttpResponse::json(status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

HttpResponse no_content() { return HttpResponse{204, "application/json", "", {}}; }

}  // namespace plume::kernel
