// HttpServer: connections driven by one-shot polls on the EventLoop. Each connection is a small
// state machine — reading (parse buffered bytes, poll POLLIN when they run out), handling (the
// handler owns the request; only a hang-up is watched, so pipelined requests wait their turn),
// writing (send, poll POLLOUT on a short write). One timer per connection bounds the time spent
// reading a request or writing a response; it is off while the handler works.
#include "plume/kernel/http_server.h"

#include <http_parser.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <exception>
#include <new>
#include <unordered_map>
#include <utility>

#include "plume/base/log.h"

namespace plume::kernel {
namespace {

// Whether a live process listens on the Unix socket at `sa`. Accepting a connection is not
// enough: a server killed with SIGKILL still accepts for a few ms after it was reaped, because the
// kernel tears its io_uring down in a worker thread and the ring's pending accept poll holds the
// listening socket open until then. So the listener's process (SO_PEERCRED: who called listen())
// must still be running. A full backlog (EAGAIN) or a process we cannot see count as live.
bool live_listener(const sockaddr* sa, socklen_t len) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe) return false;
  if (::connect(probe.get(), sa, len) != 0) return errno == EAGAIN;
  ucred peer{};
  socklen_t n = sizeof peer;
  if (::getsockopt(probe.get(), SOL_SOCKET, SO_PEERCRED, &peer, &n) != 0 || peer.pid <= 0) return true;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, peer.pid, 0)));
  if (!pidfd) return errno != ESRCH;
  pollfd exited{pidfd.get(), POLLIN, 0};  // a pidfd turns readable once its process has exited
  return ::poll(&exited, 1, 0) == 0;
}

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += ch;
        }
    }
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto x = static_cast<unsigned char>(a[i]);
    auto y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// A handler-supplied header must not be able to split the response (CR/LF) or fake framing.
bool header_ok(std::string_view name, std::string_view value) {
  if (name.empty()) return false;
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == ':') return false;
  }
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

bool status_has_body(int status) { return !(status < 200 || status == 204 || status == 304); }

std::string serialize(const HttpResponse& r, bool close, bool head) {
  int status = (r.status < 100 || r.status > 599) ? 500 : r.status;
  const char* reason = http_status_str(static_cast<http_status>(status));
  std::string out;
  out.reserve(160 + r.body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += reason;
  out += "\r\n";
  bool body = status_has_body(status);
  if (body && !r.content_type.empty() && header_ok("Content-Type", r.content_type)) {
    out += "Content-Type: ";
    out += r.content_type;
    out += "\r\n";
  }
  if (body) {
    out += "Content-Length: ";
    out += std::to_string(r.body.size());
    out += "\r\n";
  }
  if (close) out += "Connection: close\r\n";
  for (const auto& [name, value] : r.headers) {
    if (!header_ok(name, value)) continue;
    // Framing belongs to the server.
    if (iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
        iequals(name, "connection") || iequals(name, "content-type")) {
      continue;
    }
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  out += "\r\n";
  if (body && !head) out += r.body;
  return out;
}

bool wants_close(const HttpResponse& r) {
  for (const auto& [name, value] : r.headers) {
    if (iequals(name, "connection") && iequals(value, "close")) return true;
  }
  return false;
}

}  // namespace

std::string HttpRequest::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

HttpResponse HttpResponse::error(int status, std::string_view code, std::string_view message) {
  HttpResponse r;
  r.status = status;
  r.body = "{\"error\":{\"code\":\"" + json_escape(code) + "\",\"message\":\"" + json_escape(message) + "\"}}";
  return r;
}

HttpResponse HttpResponse::json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

SysResult<UniqueFd> HttpServer::listen_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    errno = ENAMETOOLONG;
    return fail(sys_error("bind", path));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  auto* sa = reinterpret_cast<sockaddr*>(&addr);

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail(sys_error("socket", path));

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      errno = EEXIST;
      return fail(sys_error("bind", path + " (exists and is not a socket)"));
    }
    // Replace the socket only when no live server listens on it: a live server keeps its socket.
    if (live_listener(sa, sizeof(addr))) {
      errno = EADDRINUSE;
      return fail(sys_error("bind", path + " (a server is listening)"));
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return fail(sys_error("unlink", path));
  }
  if (::bind(fd.get(), sa, sizeof(addr)) != 0) return fail(sys_error("bind", path));
  if (::chmod(path.c_str(), 0660) != 0) return fail(sys_error("chmod", path));
  if (::listen(fd.get(), 128) != 0) return fail(sys_error("listen", path));
  return fd;
}

// ---------------------------------------------------------------------------------------------

struct HttpServer::Impl {
  struct Conn {
    enum class St { reading, handling, writing };

    Conn(uint64_t i, int f, const HttpLimits& l, Impl* s) : id(i), fd(f), parser(l), server(s) {}

    uint64_t id;
    UniqueFd fd;
    HttpRequestParser parser;
    Impl* server;  // null once closed

    St st = St::reading;
    bool closed = false;
    std::string in;  // received bytes not yet parsed (from in_off)
    size_t in_off = 0;
    std::string out;  // the response being written (from out_off)
    size_t out_off = 0;
    bool keep_alive = true;
    bool head = false;  // the request was HEAD: no body in the response
    bool close_after_write = false;
    bool mid_request = false;    // bytes of the next request were consumed
    bool continue_sent = false;  // "100 Continue" already written for this request
    bool peer_half_closed = false;

    EventLoop::OpId poll_op = 0;
    unsigned poll_events = 0;
    EventLoop::OpId timer_op = 0;

    bool driving = false;  // drive() is on the stack for this connection
    bool redrive = false;
  };
  class ConnResponder;

  // Declared first so it is destroyed last: responders it may own must see closed connections.
  Handler handler;
  EventLoop& loop;
  UniqueFd listen_fd;
  HttpLimits limits;
  EventLoop::OpId accept_op = 0;
  EventLoop::OpId accept_retry_op = 0;
  bool accepting = false;
  bool draining = false;
  uint64_t next_conn = 1;
  std::unordered_map<uint64_t, std::shared_ptr<Conn>> conns;
  std::array<char, 64 * 1024> rbuf{};

  Impl(EventLoop& l, UniqueFd fd, HttpLimits lim, Handler h)
      : handler(std::move(h)), loop(l), listen_fd(std::move(fd)), limits(lim) {}

  ~Impl() {
    stop_accepting();
    close_all();
  }

  // --- accepting ---------------------------------------------------------------------------

  void arm_accept() {
    if (!accepting || !listen_fd || accept_op != 0) return;
    accept_op = loop.poll(listen_fd.get(), POLLIN, [this](int res) {
      accept_op = 0;
      try {
        on_acceptable(res);
      } catch (const std::exception& e) {
        log::error("http.accept_failed", {{"what", e.what()}});
        retry_accept_later();
      }
    });
    if (accept_op == 0) retry_accept_later();
  }

  void retry_accept_later() {
    if (accept_retry_op != 0) return;
    accept_retry_op = loop.after(std::chrono::milliseconds(100), [this] {
      accept_retry_op = 0;
      arm_accept();
    });
  }

  void on_acceptable(int res) {
    if (!accepting) return;
    if (res < 0) {
      log::error("http.accept_poll_failed", {{"errno", -res}});
      retry_accept_later();
      return;
    }
    for (int i = 0; i < 64; ++i) {
      int fd = ::accept4(listen_fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK) break;
        if (e == EINTR || e == ECONNABORTED) continue;
        // EMFILE/ENFILE/ENOBUFS: the pending connection stays queued; re-polling now would spin.
        log::warn("http.accept_failed", {{"errno", e}, {"error", std::strerror(e)}});
        retry_accept_later();
        return;
      }
      if (conns.size() >= limits.max_connections) {
        reject(fd);
      } else {
        add_conn(fd);
      }
    }
    arm_accept();
  }

  // Over the connection limit: one best-effort 503, then close.
  void reject(int raw_fd) {
    UniqueFd fd(raw_fd);
    std::string msg = serialize(
        HttpResponse::error(503, "too_many_connections",
                            "connection limit of " + std::to_string(limits.max_connections) + " reached"),
        true, false);
    ssize_t n = ::send(fd.get(), msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    log::warn("http.connection_rejected", {{"limit", limits.max_connections}});
  }

  void add_conn(int fd) {
    auto c = std::make_shared<Conn>(next_conn++, fd, limits, this);
    conns.emplace(c->id, c);
    arm_timer(*c);
    drive(c);
  }

  void stop_accepting() {
    accepting = false;
    draining = true;
    if (accept_op != 0) loop.cancel(std::exchange(accept_op, 0));
    if (accept_retry_op != 0) loop.cancel(std::exchange(accept_retry_op, 0));
    listen_fd.reset();
    // Idle connections go now; the others after their current response (close_after_write).
    std::vector<std::shared_ptr<Conn>> idle;
    for (auto& [id, c] : conns) {
      if (c->st == Conn::St::reading && !c->mid_request && c->in_off >= c->in.size()) idle.push_back(c);
    }
    for (auto& c : idle) close(*c);
  }

  void close_all() {
    std::vector<std::shared_ptr<Conn>> all;
    all.reserve(conns.size());
    for (auto& [id, c] : conns) all.push_back(c);
    for (auto& c : all) close(*c);
  }

  // --- one connection ----------------------------------------------------------------------

  void close(Conn& c) {
    if (c.closed) return;
    c.closed = true;
    if (c.poll_op != 0) loop.cancel(std::exchange(c.poll_op, 0));
    if (c.timer_op != 0) loop.cancel(std::exchange(c.timer_op, 0));
    c.fd.reset();
    c.server = nullptr;
    c.in.clear();
    c.out.clear();
    conns.erase(c.id);  // callers hold a shared_ptr while they still touch `c`
  }

  std::shared_ptr<Conn> find(uint64_t id) {
    auto it = conns.find(id);
    return it == conns.end() ? nullptr : it->second;
  }

  void arm_timer(Conn& c) {
    if (c.timer_op != 0) loop.cancel(std::exchange(c.timer_op, 0));
    if (limits.idle_timeout.count() <= 0) return;
    c.timer_op = loop.after(limits.idle_timeout, [this, id = c.id] {
      auto conn = find(id);
      if (!conn) return;
      conn->timer_op = 0;
      if (conn->st == Conn::St::handling) return;
      log::debug("http.idle_timeout", {{"conn", id}});
      close(*conn);
    });
  }

  void cancel_poll(Conn& c) {
    if (c.poll_op != 0) loop.cancel(std::exchange(c.poll_op, 0));
    c.poll_events = 0;
  }

  void ensure_poll(Conn& c, unsigned events) {
    if (c.poll_op != 0 && c.poll_events == events) return;
    cancel_poll(c);
    c.poll_events = events;
    c.poll_op = loop.poll(c.fd.get(), events, [this, id = c.id](int res) { on_poll(id, res); });
    if (c.poll_op == 0) close(c);  // the ring is full: better a dropped client than a hang
  }

  void on_poll(uint64_t id, int res) {
    auto c = find(id);
    if (!c) return;
    c->poll_op = 0;
    c->poll_events = 0;
    if (res < 0) {
      close(*c);
      return;
    }
    auto revents = static_cast<unsigned>(res);
    try {
      switch (c->st) {
        case Conn::St::reading:
          if (!read_some(*c)) return;
          break;
        case Conn::St::handling:
          // Peer gone entirely: the responder becomes disconnected. A half-close (RDHUP only)
          // is a client that finished sending; it still gets its response.
          if ((revents & (POLLHUP | POLLERR)) != 0) {
            close(*c);
            return;
          }
          if ((revents & POLLRDHUP) != 0) c->peer_half_closed = true;
          break;
        case Conn::St::writing:
          break;
      }
      drive(c);
    } catch (const std::exception& e) {  // bad_alloc: drop this client, keep the server
      log::error("http.connection_failed", {{"conn", id}, {"what", e.what()}});
      c->driving = false;
      close(*c);
    }
  }

  // One recv into the connection's buffer. False when the connection was closed.
  bool read_some(Conn& c) {
    for (;;) {
      ssize_t n = ::recv(c.fd.get(), rbuf.data(), rbuf.size(), MSG_DONTWAIT);
      if (n > 0) {
        if (c.in_off >= c.in.size()) {
          c.in.clear();
          c.in_off = 0;
        }
        c.in.append(rbuf.data(), static_cast<size_t>(n));
        return true;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      close(c);  // EOF (0) or a reset: nothing more will come
      return false;
    }
  }

  // Runs the connection's state machine as far as it goes without waiting. Re-entrant calls
  // (a handler answering synchronously) only flag another round, so pipelined requests never
  // recurse.
  void drive(const std::shared_ptr<Conn>& c) {
    if (c->driving) {
      c->redrive = true;
      return;
    }
    c->driving = true;
    do {
      c->redrive = false;
      while (!c->closed && step(c)) {
      }
    } while (c->redrive && !c->closed);
    c->driving = false;
  }

  // One transition. True when another step may make progress now.
  bool step(const std::shared_ptr<Conn>& cp) {
    Conn& c = *cp;
    switch (c.st) {
      case Conn::St::reading: {
        if (c.in_off < c.in.size()) {
          size_t n = 0;
          auto st = c.parser.feed(std::string_view(c.in).substr(c.in_off), n);
          c.in_off += n;
          if (n > 0) c.mid_request = true;
          if (c.in_off >= c.in.size()) {
            c.in.clear();
            c.in_off = 0;
          }
          if (st == HttpRequestParser::State::request_ready) {
            dispatch(cp);
            return true;
          }
          if (st == HttpRequestParser::State::error) {
            queue_response(c, c.parser.error_response(), true);
            return true;
          }
          if (n == 0 && c.in_off < c.in.size()) {  // cannot happen; never spin on it
            close(c);
            return false;
          }
        }
        if (draining && !c.mid_request) {
          close(c);
          return false;
        }
        if (!c.continue_sent && c.parser.expects_continue()) {
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          c.continue_sent = true;
          ssize_t w = ::send(c.fd.get(), kContinue.data(), kContinue.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
          (void)w;  // best effort: a client that misses it sends the body after its own delay
        }
        ensure_poll(c, POLLIN | POLLRDHUP);
        return false;
      }
      case Conn::St::handling:
        if (c.peer_half_closed) {
          cancel_poll(c);
        } else {
          ensure_poll(c, POLLRDHUP);
        }
        return false;
      case Conn::St::writing:
        return flush(c);
    }
    return false;
  }

  bool flush(Conn& c) {
    while (c.out_off < c.out.size()) {
      ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_off, c.out.size() - c.out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        ensure_poll(c, POLLOUT);
        return false;
      }
      close(c);  // EPIPE, ECONNRESET: the client is gone
      return false;
    }
    c.out.clear();
    c.out_off = 0;
    if (c.close_after_write) {
      close(c);
      return false;
    }
    c.st = Conn::St::reading;
    cancel_poll(c);
    arm_timer(c);
    return true;
  }

  void queue_response(Conn& c, const HttpResponse& r, bool force_close) {
    c.close_after_write = force_close || !c.keep_alive || draining || wants_close(r);
    c.out = serialize(r, c.close_after_write, c.head);
    c.out_off = 0;
    c.st = Conn::St::writing;
    cancel_poll(c);
    arm_timer(c);  // a client that never reads its response is closed after idle_timeout
  }

  void dispatch(const std::shared_ptr<Conn>& cp);
  void respond(const std::shared_ptr<Conn>& cp, const HttpResponse& r) {
    if (cp->closed || cp->st != Conn::St::handling) return;
    queue_response(*cp, r, false);
    drive(cp);
  }
};

class HttpServer::Impl::ConnResponder final : public Responder {
 public:
  explicit ConnResponder(std::weak_ptr<Conn> c) : conn_(std::move(c)) {}
  ~ConnResponder() override {
    // A handler that dropped its request without answering must not hang the connection.
    if (sent_) return;
    try {
      send(HttpResponse::error(500, "internal_error", "the request was dropped without a response"));
    } catch (...) {  // destructors never throw
    }
  }

  void send(HttpResponse response) override {
    if (sent_) return;
    sent_ = true;
    auto c = conn_.lock();
    if (!c || c->closed || c->server == nullptr) return;  // client gone: drop it
    Impl* server = c->server;
    try {
      server->respond(c, response);
    } catch (...) {  // bad_alloc while serialising: a closed connection beats a hung one
      server->close(*c);
    }
  }

  bool connected() const override {
    auto c = conn_.lock();
    return c && !c->closed;
  }

 private:
  std::weak_ptr<Conn> conn_;
  bool sent_ = false;
};

void HttpServer::Impl::dispatch(const std::shared_ptr<Conn>& cp) {
  Conn& c = *cp;
  HttpRequest req = c.parser.take_request();
  c.keep_alive = c.parser.keep_alive();
  c.head = req.method == "HEAD";
  c.mid_request = false;
  c.continue_sent = false;
  c.st = Conn::St::handling;
  if (c.timer_op != 0) loop.cancel(std::exchange(c.timer_op, 0));  // the handler may take long
  cancel_poll(c);

  auto responder = std::make_shared<ConnResponder>(cp);
  const char* what = nullptr;
  std::string detail;
  try {
    handler(std::move(req), responder);
  } catch (const std::exception& e) {
    what = "exception";
    detail = e.what();
  } catch (...) {
    what = "exception";
    detail = "unknown exception";
  }
  if (what != nullptr) {
    log::error("http.handler_threw", {{"conn", c.id}, {"what", detail}});
    try {
      responder->send(HttpResponse::error(500, "internal_error", "internal error while handling the request"));
    } catch (const std::bad_alloc&) {
      close(c);
    }
  }
}

HttpServer::HttpServer(EventLoop& loop, UniqueFd listen_fd, HttpLimits limits, Handler handler)
    : impl_(std::make_unique<Impl>(loop, std::move(listen_fd), limits, std::move(handler))) {}

HttpServer::~HttpServer() = default;

void HttpServer::start() {
  impl_->accepting = impl_->listen_fd.valid();
  impl_->draining = false;
  impl_->arm_accept();
}

void HttpServer::stop_accepting() { impl_->stop_accepting(); }

void HttpServer::close_all() { impl_->close_all(); }

size_t HttpServer::connections() const { return impl_->conns.size(); }

}  // namespace plume::kernel
