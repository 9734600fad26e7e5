// Every way a client can get a request wrong gets the documented status and a JSON error body, and
// none of them (nor a seeded burst of garbage) takes plumed down.
#include <signal.h>
#include <sys/wait.h>

#include <random>

#include "e2e.h"

namespace plume::test {
namespace {

class ApiErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    PLUME_SKIP_UNLESS_ROOT();
    ASSERT_TRUE(plumed_.start());
  }
  void TearDown() override {
    if (!plumed_.running()) return;
    // Whatever happened, plumed must still be alive and answering.
    int status = 0;
    EXPECT_EQ(::waitpid(plumed_.pid(), &status, WNOHANG), 0) << "plumed died; stderr:\n" << plumed_.stderr_text();
    EXPECT_EQ(plumed_.request("GET", "/v1/health", "").status, 200);
  }

  // Asserts status and {"error":{"code":code,...}} with a JSON Content-Type.
  void expect_error(const Reply& r, int status, const std::string& code) {
    EXPECT_EQ(r.status, status) << show(r);
    EXPECT_EQ(r.header("content-type").substr(0, 16), "application/json") << show(r);
    json j = json_of(r);
    ASSERT_TRUE(j.is_object()) << show(r);
    ASSERT_TRUE(j.contains("error")) << show(r);
    EXPECT_EQ(j["error"].value("code", std::string()), code) << show(r);
    EXPECT_FALSE(j["error"].value("message", std::string()).empty()) << show(r);
  }

  Plumed plumed_;
};

TEST_F(ApiErrors, MalformedHttpIs400) {
  expect_error(plumed_.raw("GARBAGE\r\n\r\n"), 400, "bad_request");
  expect_error(plumed_.raw("GET /v1/health HTTP/1.1\r\nno-colon-here\r\n\r\n"), 400, "bad_request");
  expect_error(plumed_.raw(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 16)), 400, "bad_request");
}

TEST_F(ApiErrors, MalformedJsonIs400) {
  expect_error(plumed_.admin("POST", "/v1/tenants", "{not json"), 400, "bad_request");
  expect_error(plumed_.admin("POST", "/v1/tenants", "[1,2,3]"), 400, "bad_request");
  // Wrong field types and invalid values are 400 too.
  expect_error(plumed_.admin("POST", "/v1/tenants", R"({"name":42,"token":"long-enough-token"})"), 400, "bad_request");
  expect_error(plumed_.admin("POST", "/v1/tenants", R"({"name":"Bad Name!","token":"long-enough-token"})"), 400,
               "bad_request");
  expect_error(plumed_.admin("POST", "/v1/tenants", R"({"name":"shorttoken","token":"x"})"), 400, "bad_request");
  // A tenant on the admin token would be the admin.
  auto sneaky = plumed_.admin("POST", "/v1/tenants", nlohmann::json{{"name", "sneaky"}, {"token", plumed_.admin_token()}}.dump());
  expect_error(sneaky, 400, "bad_request");
  EXPECT_NE(sneaky.body.find("token is the admin token"), std::string::npos) << sneaky.body;
  expect_error(plumed_.admin("POST", "/v1/workers", R"({"tenant":"demo","argv":[]})"), 400, "bad_request");
  expect_error(plumed_.admin("POST", "/v1/images", R"({"name":"nodir","rootfs":"/does/not/exist"})"), 400,
               "bad_request");
}

TEST_F(ApiErrors, BodyOverTheLimitIs413) {
  std::string big = R"({"name":"big","token":")" + std::string(2 * 1024 * 1024, 'a') + "\"}";
  expect_error(plumed_.admin("POST", "/v1/tenants", big), 413, "payload_too_large");
}

TEST_F(ApiErrors, HeadersOverTheLimitAre431) {
  std::string req = "GET /v1/health HTTP/1.1\r\nX-Big: " + std::string(64 * 1024, 'h') + "\r\n\r\n";
  expect_error(plumed_.raw(req), 431, "header_too_large");
}

TEST_F(ApiErrors, UnknownEndpointIs404AndWrongMethodIs405) {
  expect_error(plumed_.admin("GET", "/v1/nope"), 404, "not_found");
  expect_error(plumed_.admin("GET", "/v2/health"), 404, "not_found");
  expect_error(plumed_.admin("PUT", "/v1/tenants"), 405, "method_not_allowed");
  expect_error(plumed_.admin("DELETE", "/v1/health"), 405, "method_not_allowed");
  expect_error(plumed_.admin("POST", "/v1/stats", "{}"), 405, "method_not_allowed");
  expect_error(plumed_.admin("GET", "/v1/workers/w-00000000"), 404, "not_found");
  expect_error(plumed_.admin("DELETE", "/v1/images/no-such-image"), 404, "not_found");
}

TEST_F(ApiErrors, MissingOrWrongTokenIs401) {
  expect_error(plumed_.request("GET", "/v1/tenants", ""), 401, "unauthorized");
  expect_error(plumed_.request("GET", "/v1/workers", "not-a-token"), 401, "unauthorized");
  expect_error(plumed_.request("GET", "/metrics", plumed_.admin_token() + "x"), 401, "unauthorized");
  auto r = plumed_.raw("GET /v1/tenants HTTP/1.1\r\nAuthorization: Basic YWRtaW46YWRtaW4=\r\n\r\n");
  expect_error(r, 401, "unauthorized");
  // Health needs no token.
  EXPECT_EQ(plumed_.request("GET", "/v1/health", "").status, 200);
}

TEST_F(ApiErrors, TenantOnAdminEndpointIs403) {
  std::string token = add_tenant(plumed_, "alpha");
  expect_error(plumed_.request("GET", "/v1/tenants", token), 403, "forbidden");
  expect_error(plumed_.request("POST", "/v1/tenants", token, R"({"name":"evil","token":"evil-token-1234"})"), 403,
               "forbidden");
  expect_error(plumed_.request("DELETE", "/v1/tenants/alpha", token), 403, "forbidden");
  expect_error(plumed_.request("GET", "/metrics", token), 403, "forbidden");
  expect_error(plumed_.request("DELETE", "/v1/images/host", token), 403, "forbidden");
  // ... but what tenants may do still works.
  EXPECT_EQ(plumed_.request("GET", "/v1/images", token).status, 200);
  EXPECT_EQ(plumed_.request("GET", "/v1/workers", token).status, 200);
  EXPECT_EQ(plumed_.request("GET", "/v1/stats", token).status, 200);
}

TEST_F(ApiErrors, AnotherTenantsWorkerIs404) {
  std::string a = add_tenant(plumed_, "alpha");
  std::string b = add_tenant(plumed_, "beta");
  json w = run_worker(plumed_, b, {{"argv", {"/bin/sleep", "30"}}});
  ASSERT_TRUE(w.contains("id"));
  std::string id = w["id"];
  std::string base = "/v1/workers/" + id;
  expect_error(plumed_.request("GET", base, a), 404, "not_found");
  expect_error(plumed_.request("POST", base + "/signal", a, R"({"signal":"KILL"})"), 404, "not_found");
  expect_error(plumed_.request("GET", base + "/logs", a), 404, "not_found");
  expect_error(plumed_.request("GET", base + "/wait?timeout_ms=10", a), 404, "not_found");
  expect_error(plumed_.request("DELETE", base, a), 404, "not_found");
  // Tenant A's list does not show it; B and the admin see it.
  json list = json_of(plumed_.request("GET", "/v1/workers", a));
  ASSERT_TRUE(list.contains("workers"));
  for (const auto& x : list["workers"]) EXPECT_NE(x.value("id", std::string()), id);
  EXPECT_EQ(plumed_.request("GET", base, b).status, 200);
  EXPECT_EQ(plumed_.admin("GET", base).status, 200);
  // The worker is unharmed by A's attempts.
  EXPECT_EQ(json_of(plumed_.request("GET", base, b)).value("state", std::string()), "running");
  EXPECT_EQ(plumed_.request("POST", base + "/signal", b, R"({"signal":"KILL"})").status, 202);
  EXPECT_EQ(wait_worker(plumed_, b, id).value("state", std::string()), "exited");
}

TEST_F(ApiErrors, BadSignalIs400AndSignalAfterExitIs409) {
  std::string t = add_tenant(plumed_, "alpha");
  json w = run_worker(plumed_, t, {{"argv", {"/bin/true"}}});
  ASSERT_TRUE(w.contains("id"));
  std::string id = w["id"];
  ASSERT_EQ(wait_worker(plumed_, t, id).value("state", std::string()), "exited");
  expect_error(plumed_.request("POST", "/v1/workers/" + id + "/signal", t, R"({"signal":"NOPE"})"), 400, "bad_request");
  expect_error(plumed_.request("POST", "/v1/workers/" + id + "/signal", t, R"({"signal":"TERM"})"), 409, "conflict");
}

// 2000 requests drawn from a seeded PRNG: random bytes, truncated requests, wrong framing, random
// methods/paths/tokens/bodies. Every connection must end (reply or close) promptly and plumed must
// survive.
TEST_F(ApiErrors, SurvivesABurstOfGarbage) {
  std::mt19937 rng(20240611);
  auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
  auto random_bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xff);
    return s;
  };
  const std::vector<std::string> methods = {"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "G\x01T", ""};
  const std::vector<std::string> paths = {"/v1/health", "/v1/tenants", "/v1/tenants/demo", "/v1/images",
                                          "/v1/images/host", "/v1/workers", "/v1/workers/w-00000000",
                                          "/v1/workers/w-1/signal", "/v1/workers/../../etc/passwd", "/metrics",
                                          "/v1/stats", "/%00%ff", "*", "/v1/workers?tenant=%zz", ""};
  const std::vector<std::string> tokens = {"", "Bearer x", "Bearer " + plumed_.admin_token(), "Bearer", "Basic a"};
  const std::vector<std::string> bodies = {"", "{", "{}", "null", R"({"argv":["/nonexistent-binary"]})",
                                          R"({"name":1})", R"({"signal":[]})", "\xff\xfe", R"({"a":{"b":{"c":[[[[[]]]]]}}})"};
  int replies = 0, closed = 0, timeouts = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string req;
    switch (rng() % 5) {
      case 0:
        req = random_bytes(rng() % 512);
        break;
      case 1: {  // a plausible request, maybe truncated
        std::string body = pick(bodies);
        req = pick(methods) + " " + pick(paths) + " HTTP/1.1\r\nAuthorization: " + pick(tokens) +
              "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
        req.resize(rng() % (req.size() + 1));
        break;
      }
      case 2: {  // lying Content-Length
        std::string body = pick(bodies);
        req = "POST " + pick(paths) + " HTTP/1.1\r\nContent-Length: " +
              pick({"-1", "99999999999999999999", "abc", "5, 6", std::to_string(body.size() + 10)}) + "\r\n\r\n" + body;
        break;
      }
      case 3: {  // odd framing
        req = pick({"GET / HTTP/9.9\r\n\r\n", "GET /v1/health\r\n\r\n", "\r\n\r\n\r\n",
                    "POST /v1/tenants HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                    "GET /v1/health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "GET /v1/health HTTP/1.0\r\n\r\n"});
        break;
      }
      default: {  // a complete, well-framed request with random parts
        std::string body = pick(bodies);
        req = pick(methods) + " " + pick(paths) + " HTTP/1.1\r\nAuthorization: " + pick(tokens) +
              "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
              "\r\nConnection: close\r\n\r\n" + body;
      }
    }
    auto reply = cli::UnixHttpClient(plumed_.socket()).raw(req, true, 3000ms);
    if (reply) {
      ++replies;
      EXPECT_GE(reply->status, 100) << "request " << i;
      EXPECT_LT(reply->status, 600) << "request " << i;
    } else if (reply.error().kind == cli::ClientErrc::timeout) {
      ++timeouts;
      ADD_FAILURE() << "request " << i << " hung: " << ::testing::PrintToString(req.substr(0, 80));
      if (timeouts > 3) break;
    } else {
      ASSERT_NE(reply.error().kind, cli::ClientErrc::unreachable) << "plumed stopped accepting at request " << i
                                                                  << ": " << reply.error().message();
      ++closed;
    }
  }
  EXPECT_GT(replies, 500) << "closed=" << closed;
  EXPECT_EQ(timeouts, 0);
}

}  // namespace
}  // namespace plume::test
