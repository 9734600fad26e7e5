// HttpRequestParser: libhttp-parser 2.9 driven incrementally. Every limit is checked before the
// bytes it guards are stored: the header section is fed in slices no longer than the room left
// under max_header_bytes, Content-Length is checked when the headers end (413 before any body
// byte is read), and chunked bodies are checked as they grow. The parser pauses after each
// message so pipelined requests come out one at a time, with an exact consumed count.
#include <http_parser.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>
#include <utility>

#include "plume/kernel/http_server.h"

namespace plume::kernel {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX-decodes `in`; '+' becomes a space in query components. False on a malformed escape or a
// decoded NUL (a NUL would truncate the value for any C API it later reaches).
bool percent_decode(std::string_view in, bool plus_is_space, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;  // fewer than two hex digits follow
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    if (c == '\0') return false;
    out.push_back(c);
  }
  return true;
}

char lower_ascii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

void trim_trailing_space(std::string& s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
}

}  // namespace

struct HttpRequestParser::Impl {
  HttpLimits limits;
  http_parser parser{};
  http_parser_settings settings{};

  // The message being parsed.
  HttpRequest req;
  std::string url;
  std::string field;
  std::string value;
  bool in_value = false;         // the last header callback was a value
  bool headers_done = false;
  size_t header_bytes = 0;       // bytes fed while the header section was still open
  size_t trailer_bytes = 0;      // chunked trailers: counted against max_header_bytes, not kept
  bool ready = false;            // a complete request waits in `req`
  bool last_keep_alive = false;

  bool failed = false;
  HttpResponse error;

  explicit Impl(const HttpLimits& l) : limits(l) {
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = this;
    settings.on_url = &Impl::on_url;
    settings.on_header_field = &Impl::on_header_field;
    settings.on_header_value = &Impl::on_header_value;
    settings.on_headers_complete = &Impl::on_headers_complete;
    settings.on_body = &Impl::on_body;
    settings.on_message_complete = &Impl::on_message_complete;
  }

  static Impl& self(http_parser* p) { return *static_cast<Impl*>(p->data); }

  // Records the first error only; returns the value that makes http-parser stop.
  int fail_with(int status, std::string_view code, std::string_view message) {
    if (!failed) {
      failed = true;
      error = HttpResponse::error(status, code, message);
    }
    return -1;
  }

  void reset_message() {
    req = HttpRequest{};
    url.clear();
    field.clear();
    value.clear();
    in_value = false;
    headers_done = false;
    header_bytes = 0;
    trailer_bytes = 0;
    ready = false;
  }

  void commit_header() {
    if (field.empty()) return;
    trim_trailing_space(value);
    std::string name(field.size(), '\0');
    std::transform(field.begin(), field.end(), name.begin(), lower_ascii);
    auto [it, inserted] = req.headers.try_emplace(std::move(name), value);
    if (!inserted) {  // repeated field: one comma-separated list (RFC 9110 5.3)
      it->second += ", ";
      it->second += value;
    }
    field.clear();
    value.clear();
    in_value = false;
  }

  bool trailer_overflow(size_t len) {
    trailer_bytes += len;
    return trailer_bytes > limits.max_header_bytes;
  }

  static int on_url(http_parser* p, const char* at, size_t len) {
    self(p).url.append(at, len);
    return 0;
  }

  static int on_header_field(http_parser* p, const char* at, size_t len) {
    Impl& s = self(p);
    if (s.headers_done) {  // chunked trailer: bounded, then ignored
      return s.trailer_overflow(len) ? s.fail_with(431, "header_too_large", "trailer section too large") : 0;
    }
    if (s.in_value) s.commit_header();
    s.field.append(at, len);
    return 0;
  }

  static int on_header_value(http_parser* p, const char* at, size_t len) {
    Impl& s = self(p);
    if (s.headers_done) {
      return s.trailer_overflow(len) ? s.fail_with(431, "header_too_large", "trailer section too large") : 0;
    }
    s.value.append(at, len);
    s.in_value = true;
    return 0;
  }

  static int on_headers_complete(http_parser* p) {
    Impl& s = self(p);
    s.commit_header();
    s.headers_done = true;

    if (p->http_major != 1 || p->http_minor > 1) {
      return s.fail_with(505, "http_version_not_supported",
                         "HTTP/" + std::to_string(p->http_major) + "." + std::to_string(p->http_minor) +
                             " is not supported; use HTTP/1.1");
    }
    if (p->upgrade) {
      return s.fail_with(501, "not_implemented", "protocol upgrade and CONNECT are not supported");
    }
    s.req.method = http_method_str(static_cast<http_method>(p->method));

    http_parser_url u{};
    http_parser_url_init(&u);
    if (http_parser_parse_url(s.url.data(), s.url.size(), 0, &u) != 0) {
      return s.fail_with(400, "bad_request", "invalid request target");
    }
    std::string_view raw_path = "/";
    if ((u.field_set & (1U << UF_PATH)) != 0) {
      raw_path = std::string_view(s.url).substr(u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    }
    if (!percent_decode(raw_path, false, s.req.path)) {
      return s.fail_with(400, "bad_request", "invalid percent-encoding or NUL byte in path");
    }
    if ((u.field_set & (1U << UF_QUERY)) != 0) {
      std::string_view q =
          std::string_view(s.url).substr(u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
      std::string key;
      std::string val;
      while (!q.empty()) {
        size_t amp = q.find('&');
        std::string_view pair = q.substr(0, amp);
        q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
        if (pair.empty()) continue;
        size_t eq = pair.find('=');
        std::string_view k = pair.substr(0, eq);
        std::string_view v = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
        if (!percent_decode(k, true, key) || !percent_decode(v, true, val)) {
          return s.fail_with(400, "bad_request", "invalid percent-encoding or NUL byte in query");
        }
        s.req.query[key] = val;  // a repeated key: the last one wins
      }
    }

    bool chunked = (p->flags & F_CHUNKED) != 0;
    if (!chunked && p->content_length != ULLONG_MAX) {
      if (p->content_length > s.limits.max_body_bytes) {
        return s.fail_with(413, "payload_too_large",
                           "Content-Length " + std::to_string(p->content_length) + " exceeds the limit of " +
                               std::to_string(s.limits.max_body_bytes) + " bytes");
      }
      s.req.body.reserve(static_cast<size_t>(p->content_length));
    }
    return 0;
  }

  static int on_body(http_parser* p, const char* at, size_t len) {
    Impl& s = self(p);
    if (len > s.limits.max_body_bytes || s.req.body.size() > s.limits.max_body_bytes - len) {
      return s.fail_with(413, "payload_too_large",
                         "request body exceeds the limit of " + std::to_string(s.limits.max_body_bytes) +
                             " bytes");
    }
    s.req.body.append(at, len);
    return 0;
  }

  static int on_message_complete(http_parser* p) {
    Impl& s = self(p);
    s.ready = true;
    // HTTP/1.0 keep-alive would need "Connection: keep-alive" echoed back; such clients are
    // rare here, so HTTP/1.0 always gets one request per connection.
    s.last_keep_alive = http_should_keep_alive(p) != 0 && p->http_minor >= 1;
    // Stop right after this message: the rest of the buffer is the next (pipelined) request.
    http_parser_pause(p, 1);
    return 0;
  }

  State parser_error() {
    if (failed) return State::error;
    failed = true;
    auto err = static_cast<http_errno>(HTTP_PARSER_ERRNO(&parser));
    if (err == HPE_HEADER_OVERFLOW) {
      error = HttpResponse::error(431, "header_too_large", "request header section too large");
    } else {
      error = HttpResponse::error(400, "bad_request",
                                  std::string("malformed request: ") + http_errno_name(err) + " (" +
                                      http_errno_description(err) + ")");
    }
    return State::error;
  }

  State feed(std::string_view bytes, size_t& consumed) {
    consumed = 0;
    if (failed) return State::error;
    if (ready) return State::request_ready;  // take_request() first
    if (HTTP_PARSER_ERRNO(&parser) == HPE_PAUSED) http_parser_pause(&parser, 0);

    while (consumed < bytes.size()) {
      size_t chunk = bytes.size() - consumed;
      bool header_phase = !headers_done;
      if (header_phase) chunk = std::min(chunk, limits.max_header_bytes - header_bytes);
      size_t n = http_parser_execute(&parser, &settings, bytes.data() + consumed, chunk);
      consumed += n;
      auto err = static_cast<http_errno>(HTTP_PARSER_ERRNO(&parser));
      if (failed) return State::error;  // one of our callbacks refused the message
      if (err != HPE_OK && err != HPE_PAUSED) return parser_error();
      if (ready) return State::request_ready;
      if (header_phase && !headers_done) {
        header_bytes += n;
        if (header_bytes >= limits.max_header_bytes) {
          failed = true;
          error = HttpResponse::error(431, "header_too_large",
                                      "request header section exceeds " +
                                          std::to_string(limits.max_header_bytes) + " bytes");
          return State::error;
        }
      }
      if (n == 0) return parser_error();  // no progress without an error: never spin
    }
    return State::need_more;
  }
};

HttpRequestParser::HttpRequestParser(const HttpLimits& limits) : impl_(std::make_unique<Impl>(limits)) {
  if (impl_->limits.max_header_bytes == 0) impl_->limits.max_header_bytes = 1;
}

HttpRequestParser::~HttpRequestParser() = default;

HttpRequestParser::State HttpRequestParser::feed(std::string_view bytes, size_t& consumed) {
  return impl_->feed(bytes, consumed);
}

HttpRequest HttpRequestParser::take_request() {
  HttpRequest r = std::move(impl_->req);
  impl_->reset_message();
  return r;
}

bool HttpRequestParser::keep_alive() const { return impl_->last_keep_alive; }

const HttpResponse& HttpRequestParser::error_response() const { return impl_->error; }

bool HttpRequestParser::expects_continue() const {
  const Impl& s = *impl_;
  if (s.failed || s.ready || !s.headers_done || !s.req.body.empty()) return false;
  std::string v = s.req.header("expect");
  std::transform(v.begin(), v.end(), v.begin(), lower_ascii);
  return v == "100-continue";
}

}  // namespace plume::kernel
