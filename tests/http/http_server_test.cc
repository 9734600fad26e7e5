// HttpServer on a real Unix socket in a temp dir, driven by a real EventLoop; the clients are
// real sockets (and curl, where installed).
#include "plume/kernel/http_server.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "http_test_util.h"

namespace plume::kernel {
namespace {

using namespace std::chrono_literals;
using test::RawClient;
using test::run_until;

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    auto loop = EventLoop::create(256);
    ASSERT_TRUE(loop.ok()) << loop.error().message();
    loop_ = std::move(loop).value();
    sock_ = dir_.file("plumed.sock");
  }

  void TearDown() override {
    server_.reset();
    // Let cancellations complete so nothing stays in flight.
    if (loop_) (void)loop_->run_once(false);
  }

  // Starts a server whose handler forwards to `handler_` (tests may swap it).
  void start(HttpLimits limits = {}) {
    auto fd = HttpServer::listen_unix(sock_);
    ASSERT_TRUE(fd.ok()) << fd.error().message();
    server_ = std::make_unique<HttpServer>(*loop_, std::move(fd).value(), limits,
                                           [this](HttpRequest req, std::shared_ptr<Responder> r) {
                                             ++handled_;
                                             handler_(std::move(req), std::move(r));
                                           });
    server_->start();
  }

  RawClient connect() {
    auto c = RawClient::connect_to(sock_);
    EXPECT_TRUE(c.ok()) << "connect errno " << c.connect_errno();
    return c;
  }

  static HttpServer::Handler echo_handler() {
    return [](HttpRequest req, std::shared_ptr<Responder> r) {
      r->send(HttpResponse::json(200, "{\"method\":\"" + req.method + "\",\"path\":\"" + req.path +
                                          "\",\"body_bytes\":" + std::to_string(req.body.size()) + "}"));
    };
  }

  test::TempDir dir_{"http"};
  std::string sock_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<HttpServer> server_;
  HttpServer::Handler handler_ = echo_handler();
  int handled_ = 0;
};

TEST_F(HttpServerTest, ListenUnixSetsModeAndReplacesOnlyStaleSockets) {
  {
    auto fd = HttpServer::listen_unix(sock_);
    ASSERT_TRUE(fd.ok()) << fd.error().message();
    struct stat st {};
    ASSERT_EQ(::stat(sock_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0660U);
    // A live server's socket is not taken over.
    auto second = HttpServer::listen_unix(sock_);
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.error().err, EADDRINUSE);
  }
  // The listener is gone: the socket file is stale now and gets replaced.
  auto again = HttpServer::listen_unix(sock_);
  ASSERT_TRUE(again.ok()) << again.error().message();

  // A regular file is never unlinked.
  std::string file = dir_.file("not-a-socket");
  FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  auto refused = HttpServer::listen_unix(file);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().err, EEXIST);
  EXPECT_NE(refused.error().message().find(file), std::string::npos);
  struct stat st {};
  EXPECT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

// A server killed with SIGKILL can leave its listening socket open for a while after it is gone
// (its io_uring's teardown holds it): the socket answers, but nobody will ever accept. Here a
// child calls listen() and exits while this process keeps the socket open: a listener whose
// process is gone is stale, and the socket is replaced.
TEST_F(HttpServerTest, ListenUnixReplacesASocketWhoseListenerIsGone) {
  UniqueFd held(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(held);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(sock_.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, sock_.c_str(), sock_.size() + 1);
  ASSERT_EQ(::bind(held.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(::listen(held.get(), 8) == 0 ? 0 : 1);  // listen() records the child as its owner
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // The socket still accepts connections (we hold it), but its listener is gone.
  auto still = RawClient::connect_to(sock_);
  ASSERT_TRUE(still.ok()) << "the held socket should still accept";
  auto replaced = HttpServer::listen_unix(sock_);
  ASSERT_TRUE(replaced.ok()) << replaced.error().message();
  auto fresh = RawClient::connect_to(sock_);
  ASSERT_TRUE(fresh.ok());
  EXPECT_GE(::accept4(replaced->get(), nullptr, nullptr, SOCK_CLOEXEC), 0) << "the new socket is the one served";
}

TEST_F(HttpServerTest, GetRoundTripWithKeepAlive) {
  start();
  auto c = connect();
  ASSERT_TRUE(c.send_all("GET /v1/one HTTP/1.1\r\nHost: plume\r\n\r\n"));
  auto r1 = c.read_response(*loop_);
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->status, 200);
  EXPECT_EQ(r1->headers["content-type"], "application/json");
  EXPECT_EQ(r1->body, R"({"method":"GET","path":"/v1/one","body_bytes":0})");
  EXPECT_EQ(r1->headers.count("connection"), 0U);
  EXPECT_EQ(server_->connections(), 1U);

  ASSERT_TRUE(c.send_all("POST /v1/two HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"));
  auto r2 = c.read_response(*loop_);
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->body, R"({"method":"POST","path":"/v1/two","body_bytes":5})");
  EXPECT_EQ(server_->connections(), 1U) << "the second request used the same connection";
  EXPECT_EQ(handled_, 2);

  // Connection: close is honoured.
  ASSERT_TRUE(c.send_all("GET /bye HTTP/1.1\r\nConnection: close\r\n\r\n"));
  auto r3 = c.read_response(*loop_);
  ASSERT_TRUE(r3);
  EXPECT_EQ(r3->headers["connection"], "close");
  EXPECT_TRUE(c.wait_eof(*loop_));
  EXPECT_EQ(server_->connections(), 0U);
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  std::vector<std::string> seen;
  std::shared_ptr<Responder> held;
  handler_ = [&](HttpRequest req, std::shared_ptr<Responder> r) {
    seen.push_back(req.path);
    if (req.path == "/slow") {
      held = r;  // answered later; /fast must not overtake it
      loop_->after(30ms, [&] { held->send(HttpResponse::json(200, "\"slow\"")); });
    } else {
      r->send(HttpResponse::json(200, "\"fast\""));
    }
  };
  start();
  auto c = connect();
  ASSERT_TRUE(c.send_all("GET /slow HTTP/1.1\r\n\r\nGET /fast HTTP/1.1\r\n\r\n"));
  auto a = c.read_response(*loop_);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->body, "\"slow\"");
  auto b = c.read_response(*loop_);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->body, "\"fast\"");
  EXPECT_EQ(seen, (std::vector<std::string>{"/slow", "/fast"}));
}

TEST_F(HttpServerTest, DeferredResponseFromATimer) {
  std::shared_ptr<Responder> held;
  handler_ = [&](HttpRequest, std::shared_ptr<Responder> r) {
    held = r;
    loop_->after(20ms, [&] {
      EXPECT_TRUE(held->connected());
      held->send(HttpResponse::json(202, R"({"state":"done"})"));
      held->send(HttpResponse::json(500, "ignored"));  // only the first send counts
    });
  };
  start();
  auto c = connect();
  ASSERT_TRUE(c.send_all("POST /v1/jobs HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
  auto r = c.read_response(*loop_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(r->body, R"({"state":"done"})");
  // Nothing else arrives: the second send was dropped.
  ASSERT_TRUE(c.send_all("GET /next HTTP/1.1\r\n\r\n"));
  handler_ = echo_handler();
  auto n = c.read_response(*loop_);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->status, 200);
}

TEST_F(HttpServerTest, ClientGoneBeforeDeferredSend) {
  std::shared_ptr<Responder> held;
  handler_ = [&](HttpRequest, std::shared_ptr<Responder> r) { held = std::move(r); };
  start();
  {
    auto c = connect();
    ASSERT_TRUE(c.send_all("GET /v1/wait HTTP/1.1\r\n\r\n"));
    ASSERT_TRUE(run_until(*loop_, [&] { return held != nullptr; }));
    EXPECT_TRUE(held->connected());
  }  // the client closes its socket
  ASSERT_TRUE(run_until(*loop_, [&] { return !held->connected(); }));
  EXPECT_EQ(server_->connections(), 0U);
  held->send(HttpResponse::json(200, "{}"));  // dropped, no crash
  EXPECT_FALSE(held->connected());
}

TEST_F(HttpServerTest, HalfClosedClientStillGetsItsResponse) {
  std::shared_ptr<Responder> held;
  handler_ = [&](HttpRequest, std::shared_ptr<Responder> r) { held = std::move(r); };
  start();
  auto c = connect();
  ASSERT_TRUE(c.send_all("GET /v1/x HTTP/1.1\r\n\r\n"));
  ASSERT_EQ(::shutdown(c.fd(), SHUT_WR), 0);
  ASSERT_TRUE(run_until(*loop_, [&] { return held != nullptr; }));
  bool sent = false;
  loop_->after(30ms, [&] {
    EXPECT_TRUE(held->connected());
    held->send(HttpResponse::json(200, "\"late\""));
    sent = true;
  });
  auto r = c.read_response(*loop_);
  ASSERT_TRUE(r);
  EXPECT_TRUE(sent);
  EXPECT_EQ(r->body, "\"late\"");
  EXPECT_TRUE(c.wait_eof(*loop_));
}

TEST_F(HttpServerTest, MaxConnectionsExceededGets503) {
  HttpLimits limits;
  limits.max_connections = 2;
  start(limits);
  auto a = connect();
  auto b = connect();
  ASSERT_TRUE(run_until(*loop_, [&] { return server_->connections() == 2; }));
  auto c = connect();
  auto r = c.read_response(*loop_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->headers["connection"], "close");
  EXPECT_NE(r->body.find("\"code\":\"too_many_connections\""), std::string::npos) << r->body;
  EXPECT_TRUE(c.wait_eof(*loop_));
  EXPECT_EQ(server_->connections(), 2U);
  // The admitted connections still work; once one leaves there is room again.
  ASSERT_TRUE(a.send_all("GET /a HTTP/1.1\r\n\r\n"));
  auto ra = a.read_response(*loop_);
  ASSERT_TRUE(ra);
  EXPECT_EQ(ra->status, 200);
  b.close();
  ASSERT_TRUE(run_until(*loop_, [&] { return server_->connections() == 1; }));
  auto d = connect();
  ASSERT_TRUE(d.send_all("GET /d HTTP/1.1\r\n\r\n"));
  auto rd = d.read_response(*loop_);
  ASSERT_TRUE(rd);
  EXPECT_EQ(rd->status, 200);
}

TEST_F(HttpServerTest, IdleConnectionIsClosed) {
  HttpLimits limits;
  limits.idle_timeout = 100ms;
  start(limits);
  auto c = connect();
  // A request keeps it alive, then it idles.
  ASSERT_TRUE(c.send_all("GET / HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(c.read_response(*loop_));
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.wait_eof(*loop_, 3000ms));
  auto idle = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(idle, 90ms);
  EXPECT_EQ(server_->connections(), 0U);

  // A request that never completes (slowloris) is cut off the same way.
  auto s = connect();
  ASSERT_TRUE(s.send_all("GET / HTTP/1.1\r\nX-Slow: "));
  ASSERT_TRUE(s.wait_eof(*loop_, 3000ms));
}

TEST_F(HttpServerTest, HandlerExceptionBecomes500AndServerSurvives) {
  handler_ = [](HttpRequest req, std::shared_ptr<Responder> r) {
    if (req.path == "/throw") throw std::runtime_error("handler bug");
    if (req.path == "/drop") return;  // never answers and drops the responder
    r->send(HttpResponse::json(200, "\"ok\""));
  };
  start();
  auto c = connect();
  ASSERT_TRUE(c.send_all("GET /throw HTTP/1.1\r\n\r\n"));
  auto r = c.read_response(*loop_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("internal_error"), std::string::npos);
  EXPECT_EQ(r->body.find("handler bug"), std::string::npos) << "internals leaked to the client";

  ASSERT_TRUE(c.send_all("GET /drop HTTP/1.1\r\n\r\n"));
  auto d = c.read_response(*loop_);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, 500);

  ASSERT_TRUE(c.send_all("GET /fine HTTP/1.1\r\n\r\n"));
  auto ok = c.read_response(*loop_);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(HttpServerTest, MalformedRequestGets400AndClose) {
  start();
  auto c = connect();
  ASSERT_TRUE(c.send_all("NOT HTTP AT ALL\r\n\r\n"));
  auto r = c.read_response(*loop_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->headers["connection"], "close");
  EXPECT_TRUE(c.wait_eof(*loop_));
  EXPECT_EQ(handled_, 0);
}

TEST_F(HttpServerTest, OversizedBodyIs413WithoutSendingIt) {
  HttpLimits limits;
  limits.max_body_bytes = 1000;
  start(limits);
  auto c = connect();
  ASSERT_TRUE(c.send_all("POST /v1/images HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n"));
  auto r = c.read_response(*loop_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_TRUE(c.wait_eof(*loop_));
  EXPECT_EQ(handled_, 0);
}

TEST_F(HttpServerTest, LargeResponseSurvivesPartialWrites) {
  const std::string big(4 * 1024 * 1024, 'q');  // far beyond the socket buffer
  handler_ = [&](HttpRequest, std::shared_ptr<Responder> r) {
    HttpResponse resp;
    resp.content_type = "application/octet-stream";
    resp.body = big;
    resp.headers.emplace_back("X-Plume", "1");
    resp.headers.emplace_back("X-Evil", "a\r\nInjected: yes");  // dropped: would split the response
    r->send(std::move(resp));
  };
  start();
  auto c = connect();
  ASSERT_TRUE(c.send_all("GET /blob HTTP/1.1\r\n\r\nHEAD /blob HTTP/1.1\r\n\r\n"));
  auto r = c.read_response(*loop_, 10000ms);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->headers["content-type"], "application/octet-stream");
  EXPECT_EQ(r->headers["x-plume"], "1");
  EXPECT_EQ(r->headers.count("x-evil"), 0U);
  EXPECT_EQ(r->headers.count("injected"), 0U);
  EXPECT_EQ(r->body.size(), big.size());
  EXPECT_EQ(r->body, big);
  // HEAD: same headers, no body.
  auto h = c.read_response(*loop_, 5000ms, /*head=*/true);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->headers["content-length"], std::to_string(big.size()));
  EXPECT_TRUE(c.buffered().empty());
}

TEST_F(HttpServerTest, StopAcceptingAndCloseAll) {
  std::shared_ptr<Responder> held;
  handler_ = [&](HttpRequest req, std::shared_ptr<Responder> r) {
    if (req.path == "/hold") {
      held = std::move(r);
    } else {
      r->send(HttpResponse::json(200, "{}"));
    }
  };
  start();
  auto idle = connect();
  auto busy = connect();
  ASSERT_TRUE(busy.send_all("GET /hold HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(run_until(*loop_, [&] { return held != nullptr && server_->connections() == 2; }));

  server_->stop_accepting();
  EXPECT_TRUE(idle.wait_eof(*loop_)) << "idle connections close on shutdown";
  auto late = RawClient::connect_to(sock_);
  EXPECT_FALSE(late.ok());
  EXPECT_EQ(late.connect_errno(), ECONNREFUSED);

  // The busy one finishes its request, marked Connection: close.
  held->send(HttpResponse::json(200, "\"last\""));
  auto r = busy.read_response(*loop_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->headers["connection"], "close");
  EXPECT_TRUE(busy.wait_eof(*loop_));
  EXPECT_EQ(server_->connections(), 0U);
}

TEST_F(HttpServerTest, CloseAllDisconnectsResponders) {
  std::shared_ptr<Responder> held;
  handler_ = [&](HttpRequest, std::shared_ptr<Responder> r) { held = std::move(r); };
  start();
  auto c = connect();
  ASSERT_TRUE(c.send_all("GET /hold HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(run_until(*loop_, [&] { return held != nullptr; }));
  server_->close_all();
  EXPECT_EQ(server_->connections(), 0U);
  EXPECT_FALSE(held->connected());
  EXPECT_TRUE(c.wait_eof(*loop_));
  held->send(HttpResponse::json(200, "{}"));  // dropped
}

TEST_F(HttpServerTest, ResponderOutlivesTheServer) {
  std::shared_ptr<Responder> held;
  handler_ = [&](HttpRequest, std::shared_ptr<Responder> r) { held = std::move(r); };
  start();
  auto c = connect();
  ASSERT_TRUE(c.send_all("GET /hold HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(run_until(*loop_, [&] { return held != nullptr; }));
  server_.reset();
  EXPECT_FALSE(held->connected());
  held->send(HttpResponse::json(200, "{}"));
  held.reset();  // destructor of a sent responder: nothing to do
  EXPECT_TRUE(c.wait_eof(*loop_));
}

TEST_F(HttpServerTest, CurlOverTheUnixSocket) {
  if (::system("command -v curl >/dev/null 2>&1") != 0) GTEST_SKIP() << "curl not installed";
  start();
  // The loop runs on its own thread so curl (a child process) can be waited for here; an
  // eventfd asks it to stop from this thread.
  UniqueFd stop_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(stop_fd);
  loop_->poll(stop_fd.get(), POLLIN, [&](int) { loop_->stop(); });
  std::thread loop_thread([&] { ASSERT_TRUE(loop_->run().ok()); });

  auto run_curl = [](const std::string& args) {
    std::string out;
    FILE* p = ::popen(("curl -sS --max-time 10 " + args + " 2>&1").c_str(), "r");
    if (p == nullptr) return out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    ::pclose(p);
    return out;
  };
  std::string get = run_curl("--unix-socket " + sock_ + " -w ' %{http_code}' http://localhost/v1/hello%20world?x=1");
  // With "Expect: 100-continue" curl holds the body back until the 100 (or 5 s pass).
  std::string post = run_curl("--unix-socket " + sock_ +
                              " --expect100-timeout 5 -w ' %{http_code} %{time_total}' -H 'Content-Type: "
                              "application/json' --data-binary @- http://localhost/v1/tenants < /dev/null");
  std::string big_body(2048, 'x');
  std::string post_big = run_curl("--unix-socket " + sock_ +
                                  " --expect100-timeout 5 -H 'Expect: 100-continue' -w ' %{http_code} %{time_total}' --data-binary '" +
                                  big_body + "' http://localhost/v1/big");

  uint64_t one = 1;
  ASSERT_EQ(::write(stop_fd.get(), &one, sizeof(one)), 8);
  loop_thread.join();

  EXPECT_EQ(get, R"({"method":"GET","path":"/v1/hello world","body_bytes":0} 200)");
  EXPECT_EQ(post.rfind(R"({"method":"POST","path":"/v1/tenants","body_bytes":0} 200)", 0), 0U) << post;
  ASSERT_EQ(post_big.rfind(R"({"method":"POST","path":"/v1/big","body_bytes":2048} 200 )", 0), 0U) << post_big;
  double seconds = std::stod(post_big.substr(post_big.rfind(' ') + 1));
  EXPECT_LT(seconds, 3.0) << "no 100 Continue: curl waited for its expect timeout";
}

}  // namespace
}  // namespace plume::kernel
