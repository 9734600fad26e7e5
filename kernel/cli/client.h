// UnixHttpClient: one HTTP/1.1 request per connection over an AF_UNIX socket; the transport of the
// `plume` CLI and of the end-to-end tests. Deliberately small: Content-Length framing only (plumed
// never sends chunked bodies), errors as values naming the call, errno and the socket path.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "plume/base/result.h"
#include "plume/base/sys_error.h"

namespace plume::cli {

struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  std::string header(const std::string& lower_name) const;  // "" when absent
};

enum class ClientErrc {
  unreachable,  // socket missing, refused, or not a socket: plumed is not there
  io,           // the connection broke mid-request
  protocol,     // the reply was not HTTP we understand
  timeout,      // no complete reply before the deadline
};

struct ClientError {
  ClientErrc kind = ClientErrc::io;
  SysError sys;
  std::string message() const { return sys.message(); }
};

template <class T>
using ClientResult = Result<T, ClientError>;

class UnixHttpClient {
 public:
  explicit UnixHttpClient(std::string socket_path) : path_(std::move(socket_path)) {}

  const std::string& socket_path() const { return path_; }

  // Sends `method target` with Authorization: Bearer <token> when token is non-empty, and a JSON
  // body when body is non-empty. timeout 0 = wait as long as it takes (GET .../wait).
  ClientResult<HttpReply> request(std::string_view method, std::string_view target,
                                  std::string_view token, std::string_view body = {},
                                  std::chrono::milliseconds timeout = std::chrono::milliseconds{0}) const;

  // Writes `bytes` verbatim (half-closing the write side afterwards when `shutdown_write`) and
  // reads one reply: the tests' way to send malformed requests.
  ClientResult<HttpReply> raw(std::string_view bytes, bool shutdown_write,
                              std::chrono::milliseconds timeout) const;

 private:
  std::string path_;
};

// Parses a complete reply from `bytes`; nullopt while more bytes are needed (with `eof` set a
// reply without Content-Length ends at EOF). Sets `bad` when the bytes cannot be a reply.
std::optional<HttpReply> parse_reply(std::string_view bytes, bool eof, bool& bad);

// Percent-encodes a path segment or query value.
std::string url_encode(std::string_view s);

}  // namespace plume::cli
