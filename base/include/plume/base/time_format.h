// RFC 3339 timestamps in UTC ("2026-01-01T12:34:56.789Z"), shared by the logger and the control API.
#pragma once

#include <chrono>
#include <string>

namespace plume {

// How many sub-second digits follow the seconds: logs keep microseconds, the API milliseconds.
enum class SubSecond { millis, micros };

// Formats `t` as YYYY-MM-DDTHH:MM:SS.fffZ (millis) or YYYY-MM-DDTHH:MM:SS.ffffffZ (micros), UTC.
// The fraction is truncated, not rounded.
std::string format_rfc3339(std::chrono::system_clock::time_point t, SubSecond precision);

}  // namespace plume
