// The control API: routes HTTP requests to the Supervisor, after authenticating the caller by
// token. The contract is docs/api/openapi.json; the tests check the server against it.
#pragma once

#include <memory>

#include "api_state.h"
#include "metrics.h"
#include "plume/kernel/http_server.h"

namespace plume::kernel {

class Supervisor;
struct Tenant;

class Api {
 public:
  // What the API adds and removes is recorded in `state` (a no-op one without a state_dir).
  Api(Supervisor& sup, ApiState& state) : sup_(sup), state_(state) {}
  void handle(HttpRequest request, std::shared_ptr<Responder> responder);
  const HttpCounters& counters() const { return counters_; }

 private:
  struct Caller {
    bool admin = false;
    Tenant* tenant = nullptr;
  };
  HttpResponse update_tenant(Tenant& t, const json& body);
  HttpResponse update_image(const std::string& name, const json& body);
  HttpResponse replace_image(const std::string& name, json body, bool force);

  Supervisor& sup_;
  ApiState& state_;
  HttpCounters counters_;
};

}  // namespace plume::kernel
