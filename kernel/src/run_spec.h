// What POST /v1/workers and POST /v1/workers/<id>/messages ask for, read and checked from the
// request body (a tenant's input: every field is checked before anything is started or sent).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config.h"

namespace plume::kernel {

struct RunSpec {
  std::string tenant;
  std::string image = "host";
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd = "/";
  TenantLimits limits;  // per worker; capped by the tenant's (max_workers unused here)
  bool has_memory = false, has_pids = false, has_cpu = false;
  uint64_t timeout_ms = 0;
  bool fwp = false;   // start a featherweight instance of the image's app
  std::vector<std::string> input;  // its messages, in order: the first starts it (decoded bytes)
};
ConfigResult<RunSpec> run_spec_from_json(const json& j);

// Messages for a running featherweight instance, and how many of its replies to wait for.
struct MessagesRequest {
  static constexpr size_t kMaxReplies = 1024;  // with the default 1016-byte messages: ~1 MiB held per request
  // And never more than this many bytes of replies (replies × the instance's largest message):
  // an image with larger messages may ask for fewer at a time.
  static constexpr size_t kMaxReplyBytes = size_t{1} << 20;
  std::vector<std::string> messages;  // in order; bytes (decoded when base64)
  size_t replies = 0;                 // 0: answer once they are in its channel
  uint64_t timeout_ms = 0;            // for the replies; 0: until they come or it ends
  // How long it may wait for room in the instance's channel (behind the requests that wait
  // already); 0: refused at once (429 channel_full) when its messages do not all fit now.
  uint64_t wait_for_room_ms = 0;
  bool base64 = false;                // "encoding": "base64": messages and replies are base64 in JSON
};
ConfigResult<MessagesRequest> messages_request_from_json(const json& j);

// The first of `messages` longer than `max_message` bytes (a slot of an instance's channel), as
// the error that names it ("input[2]: 1200 bytes, more than a message holds (1016)"), or "".
std::string oversized_message(const std::vector<std::string>& messages, const char* field, size_t max_message);

}  // namespace plume::kernel
