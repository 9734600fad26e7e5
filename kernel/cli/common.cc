#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>

#include "cli.h"

namespace plume::cli {

const char* const kExitCodesFooter =
    "Exit codes: 0 ok; 1 the API refused (\"plume: <code>: <message>\" on stderr); 2 usage error;\n"
    "3 cannot reach plumed (socket missing or refused); run --wait and wait exit with the worker's\n"
    "exit code (128+signal when it was killed, 124 when wait --timeout ran out, 127 when it never started);\n"
    "send exits 124 when its --timeout ran out before the replies came, 1 when the instance ended first.\n"
    "Environment: PLUME_SOCKET, PLUME_TOKEN (else the admin.token file beside the socket).";

std::optional<HttpReply> call(const Context& ctx, std::string_view method, const std::string& target,
                              const nlohmann::json* body, int& exit_code,
                              std::chrono::milliseconds timeout) {
  std::string payload = body ? body->dump() : std::string();
  auto reply = ctx.client().request(method, target, ctx.token, payload, timeout);
  if (!reply) {
    const ClientError& e = reply.error();
    if (e.kind == ClientErrc::unreachable) {
      std::cerr << "plume: cannot reach plumed at " << ctx.socket << " (" << e.message() << ")\n";
      exit_code = kExitUnreachable;
    } else {
      std::cerr << "plume: talking to plumed at " << ctx.socket << ": " << e.message() << "\n";
      exit_code = kExitUnreachable;
    }
    return std::nullopt;
  }
  if (reply->status >= 200 && reply->status < 300) return std::move(*reply);
  auto j = nlohmann::json::parse(reply->body, nullptr, false);
  std::string code = "http_" + std::to_string(reply->status);
  std::string message = reply->body;
  if (!j.is_discarded() && j.is_object() && j.contains("error") && j["error"].is_object()) {
    const auto& err = j["error"];
    if (err.contains("code") && err["code"].is_string()) code = err["code"].get<std::string>();
    if (err.contains("message") && err["message"].is_string()) message = err["message"].get<std::string>();
  }
  std::cerr << "plume: " << code << ": " << message << "\n";
  exit_code = kExitRefused;
  return std::nullopt;
}

std::optional<nlohmann::json> parse_json(const HttpReply& reply, int& exit_code) {
  auto j = nlohmann::json::parse(reply.body, nullptr, false);
  if (j.is_discarded()) {
    std::cerr << "plume: bad reply: the body is not JSON\n";
    exit_code = kExitRefused;
    return std::nullopt;
  }
  return j;
}

std::optional<nlohmann::json> call_json(const Context& ctx, std::string_view method, const std::string& target,
                                        const nlohmann::json* body, int& exit_code,
                                        std::chrono::milliseconds timeout) {
  auto reply = call(ctx, method, target, body, exit_code, timeout);
  if (!reply) return std::nullopt;
  return parse_json(*reply, exit_code);
}

void print_json(const nlohmann::json& j) { std::cout << j.dump(2) << "\n"; }

std::optional<uint64_t> parse_size(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t n = 0;
  size_t i = 0;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    if (n > (UINT64_MAX - 9) / 10) return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(s[i] - '0');
  }
  if (i == 0) return std::nullopt;
  std::string unit;
  for (; i < s.size(); ++i) unit.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(s[i]))));
  unsigned shift = 0;
  if (unit.empty() || unit == "B") shift = 0;
  else if (unit == "K" || unit == "KB" || unit == "KIB") shift = 10;
  else if (unit == "M" || unit == "MB" || unit == "MIB") shift = 20;
  else if (unit == "G" || unit == "GB" || unit == "GIB") shift = 30;
  else if (unit == "T" || unit == "TB" || unit == "TIB") shift = 40;
  else return std::nullopt;
  if (shift && n > (UINT64_MAX >> shift)) return std::nullopt;
  return n << shift;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) {
  if (s.empty()) return std::nullopt;
  size_t i = 0;
  while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) ++i;
  if (i == 0) return std::nullopt;
  std::string num(s.substr(0, i));
  char* end = nullptr;
  double v = std::strtod(num.c_str(), &end);
  if (end != num.c_str() + num.size() || !std::isfinite(v) || v < 0) return std::nullopt;
  std::string_view unit = s.substr(i);
  double ms;
  if (unit.empty() || unit == "ms") ms = v;
  else if (unit == "s") ms = v * 1000.0;
  else if (unit == "m") ms = v * 60000.0;
  else if (unit == "h") ms = v * 3600000.0;
  else return std::nullopt;
  if (ms > 1e15) return std::nullopt;
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(ms)));
}

std::optional<int64_t> parse_rfc3339(std::string_view s) {
  std::tm tm{};
  int consumed = 0;
  std::string str(s);
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &consumed) != 6)
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  int64_t t = static_cast<int64_t>(timegm(&tm));
  std::string_view rest = s.substr(static_cast<size_t>(consumed));
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    while (!rest.empty() && rest.front() >= '0' && rest.front() <= '9') rest.remove_prefix(1);
  }
  if (rest == "Z" || rest == "z" || rest.empty()) return t;
  int hh = 0, mm = 0;
  std::string off(rest);
  if ((off[0] == '+' || off[0] == '-') && std::sscanf(off.c_str() + 1, "%2d:%2d", &hh, &mm) == 2) {
    int64_t delta = hh * 3600 + mm * 60;
    return off[0] == '+' ? t - delta : t + delta;
  }
  return std::nullopt;
}

}  // namespace plume::cli
