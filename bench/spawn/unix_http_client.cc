#include "unix_http_client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace plume::bench {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

SysResult<void> UnixHttpClient::connect_socket() {
  buf_.clear();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail(sys_error("socket", path_));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.size() >= sizeof addr.sun_path) return fail(plain_error("connect", path_ + ": path too long"));
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return fail(sys_error("connect", path_));
  }
  fd_ = std::move(fd);
  return {};
}

SysResult<bool> UnixHttpClient::fill(size_t n) {
  char chunk[16384];
  while (buf_.size() < n) {
    ssize_t got = ::read(fd_.get(), chunk, sizeof chunk);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return fail(sys_error("read", path_));
    if (got == 0) return false;
    buf_.append(chunk, static_cast<size_t>(got));
  }
  return true;
}

SysResult<HttpResponse> UnixHttpClient::exchange(const std::string& wire) {
  for (size_t off = 0; off < wire.size();) {
    ssize_t put = ::send(fd_.get(), wire.data() + off, wire.size() - off, MSG_NOSIGNAL);
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) return fail(sys_error("send", path_));
    off += static_cast<size_t>(put);
  }

  size_t head_end;
  while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos) {
    auto more = fill(buf_.size() + 1);
    if (!more) return fail(more.error());
    if (!*more) return fail(plain_error("read", path_ + ": connection closed before a response"));
  }
  HttpResponse resp;
  std::string_view head(buf_.data(), head_end);
  size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/") {
    return fail(plain_error("http", path_ + ": bad status line: " + std::string(status_line)));
  }
  resp.status = std::atoi(std::string(status_line.substr(9, 3)).c_str());
  bool http10 = status_line.substr(0, 8) == "HTTP/1.0";
  while (line_end != std::string_view::npos && line_end < head.size()) {
    size_t start = line_end + 2;
    line_end = head.find("\r\n", start);
    std::string_view line = head.substr(start, line_end == std::string_view::npos ? head.npos : line_end - start);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    resp.headers[lower(std::string(line.substr(0, colon)))] = trim(line.substr(colon + 1));
  }
  buf_.erase(0, head_end + 4);

  bool close_after = http10 || lower(resp.headers["connection"]) == "close";
  if (auto it = resp.headers.find("content-length"); it != resp.headers.end()) {
    size_t len = std::strtoull(it->second.c_str(), nullptr, 10);
    auto ok = fill(len);
    if (!ok) return fail(ok.error());
    if (!*ok) return fail(plain_error("read", path_ + ": body shorter than Content-Length"));
    resp.body = buf_.substr(0, len);
    buf_.erase(0, len);
  } else if (lower(resp.headers["transfer-encoding"]) == "chunked") {
    for (;;) {
      size_t eol;
      while ((eol = buf_.find("\r\n")) == std::string::npos) {
        auto more = fill(buf_.size() + 1);
        if (!more) return fail(more.error());
        if (!*more) return fail(plain_error("read", path_ + ": truncated chunked body"));
      }
      size_t len = std::strtoull(buf_.c_str(), nullptr, 16);
      auto ok = fill(eol + 2 + len + 2);
      if (!ok) return fail(ok.error());
      if (!*ok) return fail(plain_error("read", path_ + ": truncated chunk"));
      resp.body.append(buf_, eol + 2, len);
      buf_.erase(0, eol + 2 + len + 2);
      if (len == 0) break;  // trailers are not used by plumed
    }
  } else if (resp.status != 204 && resp.status != 304) {
    auto ok = fill(SIZE_MAX);  // no length: the body runs to EOF
    if (!ok) return fail(ok.error());
    resp.body = std::move(buf_);
    buf_.clear();
    close_after = true;
  }
  if (close_after) fd_.reset();
  return resp;
}

SysResult<HttpResponse> UnixHttpClient::request(std::string_view method, std::string_view target,
                                                std::string_view token, std::string_view body) {
  std::string wire;
  wire.reserve(256 + body.size());
  wire.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: plumed\r\n");
  if (!token.empty()) wire.append("Authorization: Bearer ").append(token).append("\r\n");
  if (!body.empty()) wire.append("Content-Type: application/json\r\n");
  wire.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n\r\n").append(body);

  bool reused = fd_.valid();
  if (!reused) {
    auto c = connect_socket();
    if (!c) return fail(c.error());
  }
  auto resp = exchange(wire);
  if (!resp && reused) {  // the server may close an idle kept-alive connection: retry once, fresh
    fd_.reset();
    auto c = connect_socket();
    if (!c) return fail(c.error());
    resp = exchange(wire);
  }
  if (!resp) fd_.reset();
  return resp;
}

}  // namespace plume::bench
