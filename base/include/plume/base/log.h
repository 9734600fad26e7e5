// Structured logging: one event per line in logfmt (`ts=… level=info event=worker.start pid=42`),
// written with a single write(2) so lines from concurrent processes never interleave.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace plume::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(Level level);
Level level();
// Parses "debug|info|warn|error"; returns false and leaves `out` unchanged otherwise.
bool parse_level(std::string_view name, Level& out);
void set_fd(int fd);  // default: stderr

// One field of an event. Values are quoted when they contain spaces, quotes or '='.
struct Field {
  std::string_view key;
  std::string value;
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v ? v : "") {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  Field(std::string_view k, bool v) : key(k), value(v ? "true" : "false") {}
  template <class N, class = std::enable_if_t<std::is_arithmetic_v<N>>>
  Field(std::string_view k, N v) : key(k), value(std::to_string(v)) {}
};

void emit(Level level, std::string_view event, std::initializer_list<Field> fields);

inline void debug(std::string_view e, std::initializer_list<Field> f = {}) { emit(Level::debug, e, f); }
inline void info(std::string_view e, std::initializer_list<Field> f = {}) { emit(Level::info, e, f); }
inline void warn(std::string_view e, std::initializer_list<Field> f = {}) { emit(Level::warn, e, f); }
inline void error(std::string_view e, std::initializer_list<Field> f = {}) { emit(Level::error, e, f); }

// Formats one logfmt line (without trailing newline); exposed for tests.
std::string format_line(Level level, std::string_view event, std::initializer_list<Field> fields,
                        std::string_view timestamp);

}  // namespace plume::log
