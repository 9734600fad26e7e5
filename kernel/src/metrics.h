// Prometheus text exposition (format 0.0.4) of plumed's meters.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace plume::kernel {

class Supervisor;

struct HttpCounters {
  std::map<int, uint64_t> by_status;  // responses sent, by HTTP status
};

std::string render_metrics(Supervisor& sup, const HttpCounters& http);

}  // namespace plume::kernel
