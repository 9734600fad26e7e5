// HTTP over AF_UNIX, one request per connection (Connection: close keeps framing trivial).
#include "client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "plume/base/unique_fd.h"

namespace plume::cli {
namespace {

using Clock = std::chrono::steady_clock;

ClientError make_error(ClientErrc kind, SysError sys) { return ClientError{kind, std::move(sys)}; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Milliseconds left before `deadline`, or -1 (infinite) when there is none.
int poll_budget(std::optional<Clock::time_point> deadline) {
  if (!deadline) return -1;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

ClientResult<UniqueFd> connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path))
    return fail(make_error(ClientErrc::unreachable, plain_error("connect", path + ": socket path too long")));
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail(make_error(ClientErrc::io, sys_error("socket", path)));
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return fail(make_error(ClientErrc::unreachable, sys_error("connect", path)));
  // Non-blocking from here on, so the deadline also bounds a peer that stops reading.
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0)
    return fail(make_error(ClientErrc::io, sys_error("fcntl", path)));
  return fd;
}

// Writes everything; a peer that closes early (it answered an error already) is not an error
// here: the reply is still waiting to be read.
ClientResult<bool> write_all(int fd, std::string_view bytes, const std::string& path,
                             std::optional<Clock::time_point> deadline) {
  while (!bytes.empty()) {
    pollfd p{fd, POLLOUT, 0};
    int pr = ::poll(&p, 1, poll_budget(deadline));
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) return fail(make_error(ClientErrc::io, sys_error("poll", path)));
    if (pr == 0) return fail(make_error(ClientErrc::timeout, plain_error("send", path + ": timed out")));
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) return false;
    if (n < 0) return fail(make_error(ClientErrc::io, sys_error("send", path)));
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

ClientResult<HttpReply> read_reply(int fd, const std::string& path,
                                   std::optional<Clock::time_point> deadline) {
  std::string buf;
  char chunk[16384];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int pr = ::poll(&p, 1, poll_budget(deadline));
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) return fail(make_error(ClientErrc::io, sys_error("poll", path)));
    if (pr == 0) return fail(make_error(ClientErrc::timeout, plain_error("recv", path + ": timed out waiting for a reply")));
    ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    bool eof = n == 0 || (n < 0 && errno == ECONNRESET);
    if (n < 0 && !eof) return fail(make_error(ClientErrc::io, sys_error("recv", path)));
    if (n > 0) buf.append(chunk, static_cast<size_t>(n));
    bool bad = false;
    auto reply = parse_reply(buf, eof, bad);
    if (bad) return fail(make_error(ClientErrc::protocol, plain_error("recv", path + ": malformed HTTP reply")));
    if (reply) return std::move(*reply);
    if (eof) {
      if (buf.empty())
        return fail(make_error(ClientErrc::io, plain_error("recv", path + ": connection closed without a reply")));
      return fail(make_error(ClientErrc::protocol, plain_error("recv", path + ": truncated HTTP reply")));
    }
  }
}

}  // namespace

std::string HttpReply::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

std::optional<HttpReply> parse_reply(std::string_view bytes, bool eof, bool& bad) {
  bad = false;
  size_t head_end = bytes.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    if (bytes.size() > 64 * 1024) bad = true;
    return std::nullopt;
  }
  std::string_view head = bytes.substr(0, head_end);
  size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  // "HTTP/1.1 200 OK"
  if (status_line.substr(0, 5) != "HTTP/" || status_line.size() < 12 || status_line[8] != ' ') {
    bad = true;
    return std::nullopt;
  }
  HttpReply reply;
  for (size_t i = 9; i < 12; ++i) {
    char c = status_line[i];
    if (c < '0' || c > '9') {
      bad = true;
      return std::nullopt;
    }
    reply.status = reply.status * 10 + (c - '0');
  }
  std::string_view rest = line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);
  while (!rest.empty()) {
    size_t e = rest.find("\r\n");
    std::string_view line = rest.substr(0, e);
    rest = e == std::string_view::npos ? std::string_view() : rest.substr(e + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      bad = true;
      return std::nullopt;
    }
    reply.headers[lower(trim(line.substr(0, colon)))] = std::string(trim(line.substr(colon + 1)));
  }
  std::string_view body = bytes.substr(head_end + 4);
  std::string cl = reply.header("content-length");
  if (!cl.empty()) {
    size_t len = 0;
    for (char c : cl) {
      if (c < '0' || c > '9' || len > (size_t{1} << 40)) {
        bad = true;
        return std::nullopt;
      }
      len = len * 10 + static_cast<size_t>(c - '0');
    }
    if (body.size() < len) return std::nullopt;
    reply.body = std::string(body.substr(0, len));
    return reply;
  }
  if (reply.status == 204 || reply.status == 304 || (reply.status >= 100 && reply.status < 200)) return reply;
  if (!eof) return std::nullopt;
  reply.body = std::string(body);
  return reply;
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

ClientResult<HttpReply> UnixHttpClient::request(std::string_view method, std::string_view target,
                                                std::string_view token, std::string_view body,
                                                std::chrono::milliseconds timeout) const {
  std::string req;
  req.reserve(256 + body.size());
  req.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: plumed\r\n");
  if (!token.empty()) req.append("Authorization: Bearer ").append(token).append("\r\n");
  if (!body.empty()) req.append("Content-Type: application/json\r\n");
  req.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  req.append("Connection: close\r\n\r\n").append(body);
  return raw(req, false, timeout);
}

ClientResult<HttpReply> UnixHttpClient::raw(std::string_view bytes, bool shutdown_write,
                                            std::chrono::milliseconds timeout) const {
  std::optional<Clock::time_point> deadline;
  if (timeout.count() > 0) deadline = Clock::now() + timeout;
  auto fd = connect_unix(path_);
  if (!fd) return fail(fd.error());
  auto wrote = write_all(fd->get(), bytes, path_, deadline);
  if (!wrote) return fail(wrote.error());
  if (shutdown_write && *wrote) ::shutdown(fd->get(), SHUT_WR);
  return read_reply(fd->get(), path_, deadline);
}

}  // namespace plume::cli
