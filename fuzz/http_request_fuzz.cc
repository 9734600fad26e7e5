// libFuzzer target for HttpRequestParser: arbitrary bytes, cut into feeds of fuzzer-chosen sizes,
// with small limits so the 413/431 paths are reached. Checks the parser's contract: consumed
// never exceeds what was fed, progress is always made, every error carries a JSON error body,
// and no request exceeds the limits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "plume/kernel/http_server.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using plume::kernel::HttpLimits;
  using plume::kernel::HttpRequestParser;
  if (size < 2) return 0;
  // First byte: feed size pattern; second: limits.
  const size_t step = 1 + (data[0] & 0x3f);
  const bool one_shot = (data[0] & 0x40) != 0;
  HttpLimits limits;
  limits.max_header_bytes = 64 + static_cast<size_t>(data[1]) * 4;
  limits.max_body_bytes = static_cast<size_t>(data[1]) * 2;
  std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);

  HttpRequestParser parser(limits);
  size_t pos = 0;
  int requests = 0;
  while (pos < input.size()) {
    size_t len = one_shot ? input.size() - pos : std::min(step, input.size() - pos);
    std::string_view chunk = input.substr(pos, len);
    size_t consumed = 0;
    auto st = parser.feed(chunk, consumed);
    check(consumed <= chunk.size());
    pos += consumed;
    if (st == HttpRequestParser::State::error) {
      const auto& e = parser.error_response();
      check(e.status >= 400 && e.status <= 599);
      check(e.body.rfind("{\"error\":{\"code\":\"", 0) == 0);
      return 0;
    }
    if (st == HttpRequestParser::State::request_ready) {
      auto req = parser.take_request();
      check(req.body.size() <= limits.max_body_bytes);
      check(!req.method.empty());
      check(req.path.find('\0') == std::string::npos);
      (void)parser.keep_alive();
      ++requests;
      continue;
    }
    check(consumed == chunk.size());  // need_more: everything fed was taken
    (void)parser.expects_continue();
  }
  return 0;
}
