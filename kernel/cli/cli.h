// What every `plume` verb shares: the global options, the call-the-API-and-report-errors helper,
// the exit codes, and the argument parsers (sizes, durations). One verb group per cmd_*.cc file.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "client.h"

namespace CLI {
class App;
}

namespace plume::cli {

// Exit codes of `plume` (also printed in the --help footer).
enum Exit : int {
  kExitOk = 0,
  kExitRefused = 1,      // the API answered an error: "plume: <code>: <message>" on stderr
  kExitUsage = 2,        // bad command line
  kExitUnreachable = 3,  // no plumed at the socket path
  kExitTimeout = 124,    // `wait --timeout` ran out while the worker still runs
  kExitSpawnFailed = 127 // the worker never started (wait on a failed worker)
};

struct Context {
  std::string socket;
  std::string token;
  bool json = false;

  UnixHttpClient client() const { return UnixHttpClient(socket); }
};

// One API call. Returns the reply when its status is 2xx; otherwise prints the error on stderr and
// sets `exit_code` (1 for an API error, 3 when plumed cannot be reached).
std::optional<HttpReply> call(const Context& ctx, std::string_view method, const std::string& target,
                              const nlohmann::json* body, int& exit_code,
                              std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Parses the reply body as JSON; prints "plume: bad reply" and sets exit_code 1 when it is not.
std::optional<nlohmann::json> parse_json(const HttpReply& reply, int& exit_code);

// call() then parse_json(): the JSON of a 2xx reply, or nullopt with exit_code set.
std::optional<nlohmann::json> call_json(const Context& ctx, std::string_view method, const std::string& target,
                                        const nlohmann::json* body, int& exit_code,
                                        std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Prints `j` indented (inspect, --json).
void print_json(const nlohmann::json& j);

// "64M", "1G", "512K", "1048576" (bytes; K/M/G/T are powers of 1024, "KiB"/"MB" spellings allowed).
std::optional<uint64_t> parse_size(std::string_view s);
// "500ms", "2s", "1.5s", "3m"; a bare number is milliseconds.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view s);
// Seconds since the epoch of an RFC 3339 time ("2026-01-02T03:04:05.123Z", "+01:00" offsets).
std::optional<int64_t> parse_rfc3339(std::string_view s);

// Registers verbs on the app. An action runs when its (sub)command is the one selected and returns
// the process exit code.
using Action = std::function<int()>;
using Actions = std::map<const CLI::App*, Action>;

void add_worker_commands(CLI::App& app, Context& ctx, Actions& actions);
void add_tenant_commands(CLI::App& app, Context& ctx, Actions& actions);
void add_image_commands(CLI::App& app, Context& ctx, Actions& actions);
void add_stats_commands(CLI::App& app, Context& ctx, Actions& actions);

extern const char* const kExitCodesFooter;

}  // namespace plume::cli
