// HttpServer: HTTP/1.1 with keep-alive on a listening (Unix) socket, driven by the EventLoop.
// Request bytes are parsed by libhttp-parser (HttpRequestParser); every limit is enforced before
// memory is spent, and a bad request gets a JSON error with the right status, never a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "plume/base/sys_error.h"
#include "plume/base/unique_fd.h"
#include "plume/kernel/event_loop.h"

namespace plume::kernel {

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string path;                            // percent-decoded, without the query string
  std::map<std::string, std::string> query;    // decoded query parameters
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  std::string header(const std::string& lower_name) const;  // "" when absent
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers

  // {"error":{"code":code,"message":message}} with the given status.
  static HttpResponse error(int status, std::string_view code, std::string_view message);
  static HttpResponse json(int status, std::string body);
};

struct HttpLimits {
  size_t max_header_bytes = 16 * 1024;   // request line + headers; more → 431
  size_t max_body_bytes = 1024 * 1024;   // more → 413 (checked against Content-Length up front)
  size_t max_connections = 256;          // more are accepted and closed with 503
  std::chrono::milliseconds idle_timeout{30000};  // idle keep-alive connections are closed
};

// Feeds raw bytes to libhttp-parser and yields complete requests. Pure (no I/O): the fuzz target
// and the unit tests drive it directly.
class HttpRequestParser {
 public:
  explicit HttpRequestParser(const HttpLimits& limits);
  ~HttpRequestParser();
  HttpRequestParser(const HttpRequestParser&) = delete;
  HttpRequestParser& operator=(const HttpRequestParser&) = delete;

  enum class State { need_more, request_ready, error };
  // Consumes as many bytes as it can; returns how many were consumed via `consumed`. After
  // request_ready, take_request() and call feed() again with the rest (pipelining).
  State feed(std::string_view bytes, size_t& consumed);
  HttpRequest take_request();
  bool keep_alive() const;  // of the last complete request
  // When State::error: the response to send before closing (400, 413, 431, 505, ...).
  const HttpResponse& error_response() const;
  // True while the current request's headers are complete, it sent `Expect: 100-continue`, and
  // no body byte has arrived yet: the server answers "100 Continue" so clients (curl) go on.
  bool expects_continue() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Lets a handler answer later (e.g. after a worker exits). Safe to call after the client went
// away: the response is then dropped. Exactly one send() per request; later ones are ignored.
class Responder {
 public:
  virtual ~Responder() = default;
  virtual void send(HttpResponse response) = 0;
  virtual bool connected() const = 0;
};

// For a call plumed makes of itself (a reload, a rollback): nobody waits for the answer.
class NoResponse : public Responder {
 public:
  void send(HttpResponse) override {}
  bool connected() const override { return false; }
};

class HttpServer {
 public:
  using Handler = std::function<void(HttpRequest request, std::shared_ptr<Responder> responder)>;

  // Binds and listens on a Unix socket at `path` (replacing a stale socket file), mode 0660.
  static SysResult<UniqueFd> listen_unix(const std::string& path);

  HttpServer(EventLoop& loop, UniqueFd listen_fd, HttpLimits limits, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  void start();
  // Stops accepting new connections (shutdown); open connections finish their current request.
  void stop_accepting();
  // Closes every connection now.
  void close_all();
  size_t connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace plume::kernel
