#include "plume/base/log.h"

#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>

#include "plume/base/time_format.h"

namespace plume::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::info)};
std::atomic<int> g_fd{STDERR_FILENO};

const char* level_name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "info";
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return true;
  }
  return false;
}

void append_value(std::string& out, std::string_view v) {
  if (!needs_quotes(v)) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

}  // namespace

void set_level(Level level) { g_level = static_cast<int>(level); }
Level level() { return static_cast<Level>(g_level.load()); }
void set_fd(int fd) { g_fd = fd; }

bool parse_level(std::string_view name, Level& out) {
  for (Level l : {Level::debug, Level::info, Level::warn, Level::error}) {
    if (name == level_name(l)) {
      out = l;
      return true;
    }
  }
  return false;
}

std::string format_line(Level level, std::string_view event, std::initializer_list<Field> fields,
                        std::string_view timestamp) {
  std::string line;
  line.reserve(128);
  line += "ts=";
  line += timestamp;
  line += " level=";
  line += level_name(level);
  line += " event=";
  append_value(line, event);
  for (const Field& f : fields) {
    line += ' ';
    line += f.key;
    line += '=';
    append_value(line, f.value);
  }
  return line;
}

void emit(Level level, std::string_view event, std::initializer_list<Field> fields) {
  if (static_cast<int>(level) < g_level.load(std::memory_order_relaxed)) return;
  std::string line =
      format_line(level, event, fields, format_rfc3339(std::chrono::system_clock::now(), SubSecond::micros));
  line += '\n';
  // One write per line: atomic for pipes up to PIPE_BUF and never interleaved mid-line in practice.
  ssize_t n = ::write(g_fd.load(std::memory_order_relaxed), line.data(), line.size());
  (void)n;
}

}  // namespace plume::log
