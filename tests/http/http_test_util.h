// Helpers for the http tests: running the loop until a condition holds (with a deadline timer on
// the same loop, so nothing sleeps), and a raw Unix-socket HTTP client whose reads are driven by
// the loop too (the server and the client share one thread). Their temp dir: support/temp_dir.h.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "plume/base/unique_fd.h"
#include "plume/kernel/event_loop.h"
#include "support/temp_dir.h"

namespace plume::test {

using namespace std::chrono_literals;

// Runs the loop until pred() holds or `timeout` passes. Returns pred().
inline bool run_until(kernel::EventLoop& loop, const std::function<bool()>& pred,
                      std::chrono::milliseconds timeout = 5000ms) {
  if (pred()) return true;
  bool expired = false;
  auto deadline = loop.after(timeout, [&] { expired = true; });
  while (!pred() && !expired) {
    if (!loop.run_once(true)) break;
  }
  loop.cancel(deadline);
  return pred();
}

struct ParsedResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

class RawClient {
 public:
  static RawClient connect_to(const std::string& path) {
    RawClient c;
    c.fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (::connect(c.fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      c.connect_errno_ = errno;
      c.fd_.reset();
    }
    return c;
  }

  bool ok() const { return fd_.valid(); }
  int connect_errno() const { return connect_errno_; }
  int fd() const { return fd_.get(); }
  void close() { fd_.reset(); }

  // Small writes only (they fit the socket buffer); MSG_NOSIGNAL: the server may have closed.
  bool send_all(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads (driving the loop) until a whole response is buffered, EOF, or the timeout.
  std::optional<ParsedResponse> read_response(kernel::EventLoop& loop,
                                              std::chrono::milliseconds timeout = 5000ms,
                                              bool head = false) {
    auto start = std::chrono::steady_clock::now();
    for (;;) {
      if (auto r = try_parse(head)) return r;
      if (eof_) return std::nullopt;
      auto left = timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - start);
      if (left <= 0ms || !wait_readable(loop, left)) return std::nullopt;
      read_available();
    }
  }

  // True when the server closes the connection (EOF) within the timeout. Discards data.
  bool wait_eof(kernel::EventLoop& loop, std::chrono::milliseconds timeout = 5000ms) {
    auto start = std::chrono::steady_clock::now();
    while (!eof_) {
      auto left = timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - start);
      if (left <= 0ms || !wait_readable(loop, left)) return false;
      read_available();
    }
    return true;
  }

  const std::string& buffered() const { return buf_; }

 private:
  bool wait_readable(kernel::EventLoop& loop, std::chrono::milliseconds timeout) {
    bool ready = false;
    auto id = loop.poll(fd_.get(), POLLIN, [&](int) { ready = true; });
    bool got = run_until(loop, [&] { return ready; }, timeout);
    if (!got) loop.cancel(id);
    return got;
  }

  void read_available() {
    char tmp[65536];
    ssize_t n = ::recv(fd_.get(), tmp, sizeof(tmp), MSG_DONTWAIT);
    if (n > 0) {
      buf_.append(tmp, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      eof_ = true;  // EOF or a reset
    }
  }

  std::optional<ParsedResponse> try_parse(bool head) {
    size_t end = buf_.find("\r\n\r\n");
    if (end == std::string::npos) return std::nullopt;
    ParsedResponse r;
    std::string head_text = buf_.substr(0, end);
    size_t line_end = head_text.find("\r\n");
    std::string status_line = head_text.substr(0, line_end);
    if (status_line.size() < 12) return std::nullopt;
    r.status = std::atoi(status_line.c_str() + 9);
    size_t pos = line_end == std::string::npos ? head_text.size() : line_end + 2;
    while (pos < head_text.size()) {
      size_t e = head_text.find("\r\n", pos);
      if (e == std::string::npos) e = head_text.size();
      std::string line = head_text.substr(pos, e - pos);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        size_t v = line.find_first_not_of(' ', colon + 1);
        r.headers[name] = v == std::string::npos ? "" : line.substr(v);
      }
      pos = e + 2;
    }
    size_t len = 0;
    if (!head && r.headers.count("content-length") != 0) len = std::stoul(r.headers["content-length"]);
    if (buf_.size() < end + 4 + len) return std::nullopt;
    r.body = buf_.substr(end + 4, len);
    buf_.erase(0, end + 4 + len);
    return r;
  }

  UniqueFd fd_;
  int connect_errno_ = 0;
  std::string buf_;
  bool eof_ = false;
};

}  // namespace plume::test
