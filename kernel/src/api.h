// The control API: routes HTTP requests to the Supervisor, after authenticating the caller by
// token. The contract is docs/api/openapi.json; the tests check the server against it.
#pragma once

#include <memory>

#include "metrics.h"
#include "plume/kernel/http_server.h"

namespace plume::kernel {

class Supervisor;
struct Tenant;

class Api {
 public:
  explicit Api(Supervisor& sup) : sup_(sup) {}
  void handle(HttpRequest request, std::shared_ptr<Responder> responder);
  const HttpCounters& counters() const { return counters_; }

 private:
  struct Caller {
    bool admin = false;
    Tenant* tenant = nullptr;
  };
  Supervisor& sup_;
  HttpCounters counters_;
};

}  // namespace plume::kernel
