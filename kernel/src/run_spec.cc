#include "run_spec.h"

#include "plume/base/base64.h"

namespace plume::kernel {
namespace {

// A field holding a count up to `max`, left alone when absent: "" or what is wrong with it.
std::string read_count(const json& j, const char* key, uint64_t max, uint64_t& out) {
  if (!j.contains(key)) return {};
  const json& v = j[key];
  if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0))
    return std::string(key) + ": expected a non-negative integer";
  if (v.get<uint64_t>() > max) return std::string(key) + ": at most " + std::to_string(max);
  out = v.get<uint64_t>();
  return {};
}

// Messages (a start's input, a request's messages) under `key`: one string or an array of at most
// 4096, appended to `out`. Bytes: unlike argv and env, a NUL is one of them. "" or what is wrong.
std::string read_messages(const json& j, const char* key, std::vector<std::string>& out) {
  if (!j.contains(key)) return {};
  const json& m = j[key];
  std::string not_messages = std::string(key) + ": expected a string or an array of strings";
  if (m.is_string()) {
    out.push_back(m.get<std::string>());
    return {};
  }
  if (!m.is_array()) return not_messages;
  if (m.size() > 4096) return std::string(key) + ": too many entries (max 4096)";
  for (const json& v : m) {
    if (!v.is_string()) return not_messages;
    out.push_back(v.get<std::string>());
  }
  return {};
}

// The encoding named by `encoding_key`: "text" (the default: each message is the string's UTF-8
// bytes) or "base64" (each is base64, for bytes that are not text, decoded here in place).
// Sets `base64`; returns "" or the error naming the key or the first message that is not base64.
std::string decode_messages(const json& j, const char* encoding_key, const char* field,
                            std::vector<std::string>& messages, bool& base64) {
  base64 = false;
  if (!j.contains(encoding_key)) return {};
  const json& v = j[encoding_key];
  if (!v.is_string() || (v != "text" && v != "base64")) return std::string(encoding_key) + ": \"text\" or \"base64\"";
  base64 = v == "base64";
  for (size_t i = 0; base64 && i < messages.size(); ++i) {
    auto bytes = base64::decode(messages[i]);
    if (!bytes) return std::string(field) + "[" + std::to_string(i) + "]: not base64 (RFC 4648, padded)";
    messages[i] = std::move(*bytes);
  }
  return {};
}

}  // namespace

ConfigResult<RunSpec> run_spec_from_json(const json& j) {
  if (!j.is_object()) return fail(ConfigError{"body: expected a JSON object"});
  RunSpec r;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (k != "tenant" && k != "image" && k != "argv" && k != "env" && k != "cwd" && k != "limits" && k != "timeout_ms" &&
        k != "fwp" && k != "input" && k != "input_encoding")
      return fail(ConfigError{"unknown field \"" + k + "\""});
  }
  auto str = [&](const char* key, std::string& out) -> bool {
    if (!j.contains(key)) return true;
    if (!j[key].is_string()) return false;
    out = j[key].get<std::string>();
    return true;
  };
  if (!str("tenant", r.tenant)) return fail(ConfigError{"tenant: expected a string"});
  if (!str("image", r.image)) return fail(ConfigError{"image: expected a string"});
  if (!str("cwd", r.cwd)) return fail(ConfigError{"cwd: expected a string"});
  if (r.cwd.empty() || r.cwd[0] != '/') return fail(ConfigError{"cwd: must be an absolute path"});
  auto strings = [&](const char* key, std::vector<std::string>& out) -> std::string {
    if (!j.contains(key)) return {};
    if (!j[key].is_array()) return std::string(key) + ": expected an array of strings";
    if (j[key].size() > 4096) return std::string(key) + ": too many entries (max 4096)";
    for (const json& v : j[key]) {
      if (!v.is_string()) return std::string(key) + ": expected an array of strings";
      std::string s = v.get<std::string>();
      if (s.find('\0') != std::string::npos) return std::string(key) + ": NUL byte in a string";
      out.push_back(std::move(s));
    }
    return {};
  };
  if (auto e = strings("argv", r.argv); !e.empty()) return fail(ConfigError{e});
  if (auto e = strings("env", r.env); !e.empty()) return fail(ConfigError{e});
  if (j.contains("fwp")) {
    if (!j["fwp"].is_boolean()) return fail(ConfigError{"fwp: expected true or false"});
    r.fwp = j["fwp"].get<bool>();
  }
  if (auto e = read_messages(j, "input", r.input); !e.empty()) return fail(ConfigError{e});
  bool input_base64 = false;
  if (auto e = decode_messages(j, "input_encoding", "input", r.input, input_base64); !e.empty())
    return fail(ConfigError{e});
  if (!r.fwp && !r.input.empty()) return fail(ConfigError{"input: only for fwp instances (\"fwp\": true)"});
  // An instance runs the image's app: argv is the image's, not the request's.
  if (!r.fwp && (r.argv.empty() || r.argv[0].empty())) return fail(ConfigError{"argv: required, with a non-empty program"});
  for (const std::string& e : r.env)
    if (e.find('=') == std::string::npos || e[0] == '=') return fail(ConfigError{"env: \"" + e + "\" is not KEY=value"});
  if (r.env.empty()) r.env.push_back("PATH=/usr/local/bin:/usr/bin:/bin");
  if (j.contains("limits")) {
    const json& l = j["limits"];
    if (!l.is_object()) return fail(ConfigError{"limits: expected an object"});
    for (auto it = l.begin(); it != l.end(); ++it)
      if (it.key() == "max_workers" || it.key() == "cpu_weight")
        return fail(ConfigError{"limits." + it.key() + ": is a tenant limit, not a worker limit"});
    auto lim = limits_from_json(l, TenantLimits{0, 0, 0, 0, 0}, "limits");
    if (!lim.ok()) return fail(lim.error());
    r.limits = lim.value();
    r.has_memory = l.contains("memory_bytes") || l.contains("memory");
    r.has_pids = l.contains("pids_max") || l.contains("pids");
    r.has_cpu = l.contains("cpu_percent");
  }
  if (auto e = read_count(j, "timeout_ms", 365ull * 24 * 3600 * 1000, r.timeout_ms); !e.empty()) return fail(ConfigError{e});
  return r;
}

ConfigResult<MessagesRequest> messages_request_from_json(const json& j) {
  if (!j.is_object()) return fail(ConfigError{"body: expected a JSON object"});
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "messages" && it.key() != "replies" && it.key() != "timeout_ms" && it.key() != "encoding" &&
        it.key() != "wait_for_room_ms")
      return fail(ConfigError{"unknown field \"" + it.key() + "\""});
  MessagesRequest r;
  if (auto e = read_messages(j, "messages", r.messages); !e.empty()) return fail(ConfigError{e});
  uint64_t replies = 0;
  if (auto e = read_count(j, "replies", MessagesRequest::kMaxReplies, replies); !e.empty()) return fail(ConfigError{e});
  r.replies = static_cast<size_t>(replies);
  if (auto e = read_count(j, "timeout_ms", 24ull * 3600 * 1000, r.timeout_ms); !e.empty()) return fail(ConfigError{e});
  if (auto e = read_count(j, "wait_for_room_ms", 24ull * 3600 * 1000, r.wait_for_room_ms); !e.empty())
    return fail(ConfigError{e});
  if (r.messages.empty() && r.replies == 0) return fail(ConfigError{"messages: required, unless replies are awaited"});
  if (auto e = decode_messages(j, "encoding", "messages", r.messages, r.base64); !e.empty()) return fail(ConfigError{e});
  return r;
}

std::string oversized_message(const std::vector<std::string>& messages, const char* field, size_t max_message) {
  for (size_t i = 0; i < messages.size(); ++i)
    if (messages[i].size() > max_message)
      return std::string(field) + "[" + std::to_string(i) + "]: " + std::to_string(messages[i].size()) +
             " bytes, more than a message holds (" + std::to_string(max_message) + ")";
  return {};
}

}  // namespace plume::kernel
