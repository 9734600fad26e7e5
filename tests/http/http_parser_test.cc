// HttpRequestParser over libhttp-parser: incremental feeds, pipelining, limits, errors.
#include <gtest/gtest.h>

#include <string>

#include "plume/kernel/http_server.h"

namespace plume::kernel {
namespace {

using State = HttpRequestParser::State;

HttpLimits small_limits() {
  HttpLimits l;
  l.max_header_bytes = 512;
  l.max_body_bytes = 64;
  return l;
}

// Feeds the whole string at once; expects exactly one complete request.
HttpRequest parse_one(const std::string& raw, HttpLimits limits = {}) {
  HttpRequestParser p(limits);
  size_t consumed = 0;
  EXPECT_EQ(p.feed(raw, consumed), State::request_ready) << p.error_response().body;
  EXPECT_EQ(consumed, raw.size());
  return p.take_request();
}

// Feeds until error; returns the error response.
HttpResponse parse_error(const std::string& raw, HttpLimits limits, size_t* consumed_out = nullptr) {
  HttpRequestParser p(limits);
  size_t consumed = 0;
  EXPECT_EQ(p.feed(raw, consumed), State::error);
  if (consumed_out) *consumed_out = consumed;
  return p.error_response();
}

TEST(HttpParser, SimpleGet) {
  auto r = parse_one("GET /v1/status HTTP/1.1\r\nHost: plume\r\nX-Trace-ID:  abc 1  \r\n\r\n");
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/v1/status");
  EXPECT_TRUE(r.query.empty());
  EXPECT_EQ(r.header("host"), "plume");
  EXPECT_EQ(r.header("x-trace-id"), "abc 1");
  EXPECT_EQ(r.header("absent"), "");
  EXPECT_TRUE(r.body.empty());
}

TEST(HttpParser, KeepAliveFollowsVersionAndConnectionHeader) {
  HttpRequestParser p11({});
  size_t n = 0;
  ASSERT_EQ(p11.feed("GET / HTTP/1.1\r\n\r\n", n), State::request_ready);
  EXPECT_TRUE(p11.keep_alive());

  HttpRequestParser close11({});
  ASSERT_EQ(close11.feed("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", n), State::request_ready);
  EXPECT_FALSE(close11.keep_alive());

  HttpRequestParser p10({});
  ASSERT_EQ(p10.feed("GET / HTTP/1.0\r\n\r\n", n), State::request_ready);
  EXPECT_FALSE(p10.keep_alive());
}

TEST(HttpParser, PostBodyInOneByteFeeds) {
  const std::string raw =
      "POST /v1/tenants?dry_run=1 HTTP/1.1\r\nContent-Type: application/json\r\n"
      "X-Long-Header: " + std::string(100, 'v') + "\r\nContent-Length: 17\r\n\r\n{\"name\":\"alpha\"}\n";
  HttpRequestParser p({});
  for (size_t i = 0; i < raw.size(); ++i) {
    size_t n = 0;
    State st = p.feed(std::string_view(raw).substr(i, 1), n);
    ASSERT_EQ(n, 1U) << "at byte " << i;
    if (i + 1 < raw.size()) {
      ASSERT_EQ(st, State::need_more) << "at byte " << i;
    } else {
      ASSERT_EQ(st, State::request_ready);
    }
  }
  auto r = p.take_request();
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/v1/tenants");
  EXPECT_EQ(r.query.at("dry_run"), "1");
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.header("x-long-header"), std::string(100, 'v'));
  EXPECT_EQ(r.body, "{\"name\":\"alpha\"}\n");
}

TEST(HttpParser, PipelinedRequestsInOneFeed) {
  const std::string first = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
  const std::string second = "GET /b?x=2 HTTP/1.1\r\n\r\n";
  const std::string raw = first + second;
  HttpRequestParser p({});
  size_t n = 0;
  ASSERT_EQ(p.feed(raw, n), State::request_ready);
  EXPECT_EQ(n, first.size());
  // Until the request is taken, feeding makes no progress.
  size_t again = 99;
  EXPECT_EQ(p.feed(std::string_view(raw).substr(n), again), State::request_ready);
  EXPECT_EQ(again, 0U);
  auto a = p.take_request();
  EXPECT_EQ(a.path, "/a");
  EXPECT_EQ(a.body, "abc");

  size_t n2 = 0;
  ASSERT_EQ(p.feed(std::string_view(raw).substr(n), n2), State::request_ready);
  EXPECT_EQ(n2, second.size());
  auto b = p.take_request();
  EXPECT_EQ(b.method, "GET");
  EXPECT_EQ(b.path, "/b");
  EXPECT_EQ(b.query.at("x"), "2");
  EXPECT_TRUE(b.body.empty());
  EXPECT_TRUE(b.headers.empty()) << "headers leaked from the first request";
}

TEST(HttpParser, PathAndQueryArePercentDecoded) {
  auto r = parse_one(
      "GET /v1/images/a%20b%2Fc+d?name=hello+world&enc=%2F%26%3D&empty=&flag&k%C3%A9y=%E2%9C%93 "
      "HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r.path, "/v1/images/a b/c+d");  // '+' is literal in a path
  EXPECT_EQ(r.query.at("name"), "hello world");
  EXPECT_EQ(r.query.at("enc"), "/&=");
  EXPECT_EQ(r.query.at("empty"), "");
  EXPECT_EQ(r.query.at("flag"), "");
  EXPECT_EQ(r.query.at("k\xC3\xA9y"), "\xE2\x9C\x93");
  EXPECT_EQ(r.query.size(), 5U);
}

TEST(HttpParser, AbsoluteFormTarget) {
  auto r = parse_one("GET http://localhost/v1/x?y=1 HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r.path, "/v1/x");
  EXPECT_EQ(r.query.at("y"), "1");
}

TEST(HttpParser, NulInPathOrBadEscapeIs400) {
  for (const char* target : {"/a%00b", "/a%zzb", "/a%2", "/ok?x=%00", "/ok?x=%G1"}) {
    auto e = parse_error(std::string("GET ") + target + " HTTP/1.1\r\n\r\n", {});
    EXPECT_EQ(e.status, 400) << target;
    EXPECT_NE(e.body.find("\"code\":\"bad_request\""), std::string::npos) << e.body;
  }
}

TEST(HttpParser, OversizedContentLengthIs413BeforeTheBody) {
  const std::string head = "POST /v1/images HTTP/1.1\r\nContent-Length: 65\r\n\r\n";
  HttpRequestParser p(small_limits());
  size_t n = 0;
  // Only the header section is fed: the verdict must not wait for the body.
  ASSERT_EQ(p.feed(head, n), State::error);
  EXPECT_LE(n, head.size());
  EXPECT_EQ(p.error_response().status, 413);
  EXPECT_EQ(p.error_response().content_type, "application/json");
  EXPECT_EQ(p.error_response().body.rfind("{\"error\":{\"code\":\"payload_too_large\",\"message\":\"", 0), 0U)
      << p.error_response().body;
  // Exactly at the limit is fine.
  auto ok = parse_one("POST / HTTP/1.1\r\nContent-Length: 64\r\n\r\n" + std::string(64, 'b'), small_limits());
  EXPECT_EQ(ok.body.size(), 64U);
}

TEST(HttpParser, HeaderSectionTooLargeIs431) {
  HttpLimits l = small_limits();
  const std::string raw = "GET / HTTP/1.1\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n";
  size_t n = 0;
  auto e = parse_error(raw, l, &n);
  EXPECT_EQ(e.status, 431);
  EXPECT_NE(e.body.find("header_too_large"), std::string::npos);
  EXPECT_LE(n, l.max_header_bytes) << "parser read past the header limit";

  // Many small headers in small feeds add up the same way.
  HttpRequestParser p(l);
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 100; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  State st = State::need_more;
  size_t total = 0;
  for (size_t i = 0; i < many.size() && st == State::need_more; i += 7) {
    size_t c = 0;
    st = p.feed(std::string_view(many).substr(i, 7), c);
    total += c;
  }
  EXPECT_EQ(st, State::error);
  EXPECT_EQ(p.error_response().status, 431);
  EXPECT_LE(total, l.max_header_bytes);
}

TEST(HttpParser, HeaderSectionExactlyAtTheLimitIsAccepted) {
  std::string raw = "GET / HTTP/1.1\r\nX-Pad: \r\n\r\n";
  HttpLimits l;
  l.max_header_bytes = raw.size() + 10;
  raw.insert(raw.find("\r\n\r\n"), std::string(10, 'p'));
  ASSERT_EQ(raw.size(), l.max_header_bytes);
  auto r = parse_one(raw, l);
  EXPECT_EQ(r.header("x-pad"), std::string(10, 'p'));
  l.max_header_bytes -= 1;
  EXPECT_EQ(parse_error(raw, l).status, 431);
}

TEST(HttpParser, GarbageIs400WithTheParserError) {
  auto e = parse_error(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11), {});
  EXPECT_EQ(e.status, 400);
  EXPECT_NE(e.body.find("\"code\":\"bad_request\""), std::string::npos);
  EXPECT_NE(e.body.find("HPE_"), std::string::npos) << e.body;

  auto e2 = parse_error("GET / HTTP/1.1\r\nBad Header\r\n\r\n", {});
  EXPECT_EQ(e2.status, 400);
  // The parser stays failed.
  HttpRequestParser p({});
  size_t n = 0;
  ASSERT_EQ(p.feed("BLAH\r\n\r\n", n), State::error);
  EXPECT_EQ(p.feed("GET / HTTP/1.1\r\n\r\n", n), State::error);
}

TEST(HttpParser, ChunkedBodyIsAssembled) {
  const std::string raw =
      "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
  auto r = parse_one(raw);
  EXPECT_EQ(r.body, "hello world");
  EXPECT_EQ(r.header("x-trailer"), "") << "trailers are not headers";
  // One byte at a time too.
  HttpRequestParser p({});
  State st = State::need_more;
  for (char c : raw) {
    size_t n = 0;
    st = p.feed(std::string_view(&c, 1), n);
  }
  ASSERT_EQ(st, State::request_ready);
  EXPECT_EQ(p.take_request().body, "hello world");
}

TEST(HttpParser, ChunkedBodyIsBounded) {
  std::string raw = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 20; ++i) raw += "8\r\n12345678\r\n";  // 160 bytes > 64
  raw += "0\r\n\r\n";
  size_t n = 0;
  auto e = parse_error(raw, small_limits(), &n);
  EXPECT_EQ(e.status, 413);
  EXPECT_LT(n, raw.size());
  // A single huge chunk is refused as soon as it starts arriving.
  auto e2 = parse_error("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n" + std::string(100, 'z'),
                        small_limits());
  EXPECT_EQ(e2.status, 413);
}

TEST(HttpParser, UpgradeIs501AndOtherVersionsAre505) {
  auto up = parse_error("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", {});
  EXPECT_EQ(up.status, 501);
  EXPECT_NE(up.body.find("not_implemented"), std::string::npos);
  auto conn = parse_error("CONNECT example.com:443 HTTP/1.1\r\n\r\n", {});
  EXPECT_EQ(conn.status, 501);
  auto v2 = parse_error("GET / HTTP/2.0\r\n\r\n", {});
  EXPECT_EQ(v2.status, 505);
}

TEST(HttpParser, RepeatedHeadersAreJoined) {
  auto r = parse_one("GET / HTTP/1.1\r\nAccept: a\r\nACCEPT: b\r\n\r\n");
  EXPECT_EQ(r.header("accept"), "a, b");
}

TEST(HttpParser, ExpectContinueIsReportedUntilTheBodyStarts) {
  HttpRequestParser p({});
  size_t n = 0;
  EXPECT_FALSE(p.expects_continue());
  ASSERT_EQ(p.feed("PUT /x HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n", n), State::need_more);
  EXPECT_TRUE(p.expects_continue());
  ASSERT_EQ(p.feed("o", n), State::need_more);
  EXPECT_FALSE(p.expects_continue());
  ASSERT_EQ(p.feed("k", n), State::request_ready);
  EXPECT_EQ(p.take_request().body, "ok");
}

TEST(HttpResponse, ErrorBodyIsEscapedJson) {
  auto r = HttpResponse::error(400, "bad_request", "quote \" backslash \\ newline \n ctrl \x01");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body,
            "{\"error\":{\"code\":\"bad_request\",\"message\":\"quote \\\" backslash \\\\ newline \\n ctrl "
            "\\u0001\"}}");
  auto j = HttpResponse::json(201, "{\"id\":1}");
  EXPECT_EQ(j.status, 201);
  EXPECT_EQ(j.body, "{\"id\":1}");
}

}  // namespace
}  // namespace plume::kernel
