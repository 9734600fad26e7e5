// A small blocking HTTP/1.1 client over a Unix socket: just enough to drive plumed's control API
// from a benchmark (keep-alive, Content-Length and chunked bodies). Not a general-purpose client.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "plume/base/sys_error.h"
#include "plume/base/unique_fd.h"

namespace plume::bench {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

class UnixHttpClient {
 public:
  explicit UnixHttpClient(std::string socket_path) : path_(std::move(socket_path)) {}

  // One request; reuses the kept-alive connection when the server allows it and reconnects once
  // when a reused connection turns out to have been closed by the server.
  SysResult<HttpResponse> request(std::string_view method, std::string_view target,
                                  std::string_view token, std::string_view body = {});

 private:
  SysResult<void> connect_socket();
  SysResult<HttpResponse> exchange(const std::string& wire);
  // Reads until `buf_` holds at least `n` bytes; false on EOF.
  SysResult<bool> fill(size_t n);

  std::string path_;
  UniqueFd fd_;
  std::string buf_;  // bytes received but not consumed yet
};

}  // namespace plume::bench
