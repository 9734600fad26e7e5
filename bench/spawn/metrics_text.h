// Reading one value out of plumed's /metrics text (Prometheus exposition format), for the
// benchmarks that wait on plumed's state.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

namespace plume::bench {

// The value of `series` (name and labels exactly as plumed writes them, e.g.
// plume_fwp_pool_ready{tenant="demo",image="echo"}) in `body`; nullopt if it is not there.
inline std::optional<uint64_t> metric_value(const std::string& body, const std::string& series) {
  const std::string key = series + " ";
  for (size_t at = body.find(key); at != std::string::npos; at = body.find(key, at + 1)) {
    if (at == 0 || body[at - 1] == '\n') return std::strtoull(body.c_str() + at + key.size(), nullptr, 10);
  }
  return std::nullopt;
}

}  // namespace plume::bench
