// The control API's JSON replies, for the routes (api.cc) and the supervisor's deferred replies.
#pragma once

#include <nlohmann/json.hpp>

#include "plume/kernel/http_server.h"

namespace plume::kernel {

// `status` with `body` serialised as application/json.
HttpResponse json_response(int status, const nlohmann::json& body);
// 204 No Content (application/json, empty body): a successful DELETE.
HttpResponse no_content();

}  // namespace plume::kernel
