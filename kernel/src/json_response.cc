#include "json_response.h"

namespace plume::kernel {

HttpResponse json_response(int status, const nlohmann::json& body) { return HttpResponse::json(status, body.dump()); }

HttpResponse no_content() { return HttpResponse{204, "application/json", "", {}}; }

}  // namespace plume::kernel
