#include "plume/base/time_format.h"

#include <cstdio>
#include <ctime>

namespace plume {

std::string format_rfc3339(std::chrono::system_clock::time_point t, SubSecond precision) {
  const auto secs = std::chrono::system_clock::to_time_t(t);
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];  // generous: -Wformat-truncation cannot see that tm fields are small
  if (precision == SubSecond::millis) {
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(micros / 1000));
  } else {
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(micros));
  }
  return buf;
}

}  // namespace plume
