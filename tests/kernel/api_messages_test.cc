// Talking to running featherweight instances through plumed (POST /v1/workers/<id>/messages):
// messages go into a real instance's channel, its replies come back as it sends them and fill its
// log, a full channel refuses a request whole, and instances that ring their doorbell for nothing
// or lie in their channel cost plumed little and are killed alone. Every test of the exchange runs
// three times: with plumed waiting on channels through io_uring futex waits, from futex_waitv
// threads as on kernels before 6.7 (PLUME_FUTEX_WAIT=threads), and with the sweep it uses on
// kernels before 5.16 (PLUME_FUTEX_WAIT=off).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "e2e.h"

namespace plume::test {
namespace {

using namespace std::chrono_literals;

// How plumed waits on instances' channels: io_uring futex waits (Linux 6.7+), futex_waitv threads
// (what it does on 5.16-6.6 kernels), or the sweep (older ones).
enum class ChannelWait { io_uring, threads, sweep };

class InstanceMessages : public ::testing::TestWithParam<ChannelWait> {
 protected:
  void SetUp() override {
    PLUME_SKIP_UNLESS_ROOT();
    PlumedOptions options;
    if (GetParam() == ChannelWait::sweep) options.extra_env = {"PLUME_FUTEX_WAIT=off"};
    if (GetParam() == ChannelWait::threads) options.extra_env = {"PLUME_FUTEX_WAIT=threads"};
    plumed_ = std::make_unique<Plumed>(options);
    ASSERT_TRUE(plumed_->start());
    token_ = add_tenant(*plumed_, "alpha");
    for (auto [name, binary] : {std::pair{"echo", PLUME_ECHO_APP}, std::pair{"probe", PLUME_PROBE_APP}}) {
      json image = {{"name", name}, {"fwp", {{"binary", binary}, {"pool_size", 1}}}};
      auto r = plumed_->admin("POST", "/v1/images", image.dump());
      ASSERT_EQ(r.status, 201) << show(r);
    }
  }
  bool futex_waits() const { return GetParam() != ChannelWait::sweep; }
  // What plumed says it waits with ("futex" or "sweep"), from its start-up log line.
  std::string channel_wait() const {
    const std::string text = plumed_->stderr_text();
    const size_t at = text.find("event=plumed.channels wait=");
    if (at == std::string::npos) return "";
    const size_t from = at + std::string("event=plumed.channels wait=").size();
    return text.substr(from, text.find_first_of(" \n", from) - from);
  }
  Reply post(const std::string& id, const json& body, const std::string& token = "") {
    return plumed_->request("POST", "/v1/workers/" + id + "/messages", token.empty() ? token_ : token, body.dump(), 30s);
  }
  // Sends and expects 200; returns the answer.
  json exchange(const std::string& id, const std::vector<std::string>& messages, int replies, int timeout_ms = 15000) {
    auto r = post(id, {{"messages", messages}, {"replies", replies}, {"timeout_ms", timeout_ms}});
    EXPECT_EQ(r.status, 200) << show(r);
    json j = json_of(r);
    return j.is_object() ? j : json::object();
  }
  std::string log(const std::string& id) {
    auto r = plumed_->request("GET", "/v1/workers/" + id + "/logs", token_);
    EXPECT_EQ(r.status, 200) << show(r);
    return r.body;
  }
  // The log once it reads `want` (asked again until it does, for up to 10 s): what an instance
  // sent with nobody waiting arrives whenever it sends it.
  std::string await_log(const std::string& id, const std::string& want) {
    std::string got;
    for (int i = 0; i < 500 && (got = log(id)) != want; ++i) std::this_thread::sleep_for(20ms);
    return got;
  }
  // How many requests wait for room in its channel, once that is `want` (asked again until it is,
  // for up to 10 s): the other requests are on connections of their own.
  int await_waiting_for_room(const std::string& id, int want) {
    int got = -1;
    for (int i = 0; i < 500; ++i) {
      json w = json_of(plumed_->request("GET", "/v1/workers/" + id, token_));
      got = w.contains("messages") ? w["messages"].value("waiting_for_room", -1) : -1;
      if (got == want) break;
      std::this_thread::sleep_for(20ms);
    }
    return got;
  }
  // An echo instance that has answered its start ("first"), then stopped (SIGSTOP: it reads
  // nothing more) with `held` in its channel; "" (and a failure) if any step went wrong.
  std::string stopped_echo_holding(const std::vector<std::string>& held) {
    const std::string id = start("echo", "first");
    if (id.empty() || await_log(id, "first\n") != "first\n") {
      ADD_FAILURE() << "echo did not start";
      return "";
    }
    auto stop = plumed_->request("POST", "/v1/workers/" + id + "/signal", token_, R"({"signal":"STOP"})");
    if (stop.status != 202) {
      ADD_FAILURE() << show(stop);
      return "";
    }
    const json in = exchange(id, held, 0);
    if (in.value("sent", -1) != static_cast<int>(held.size())) {
      ADD_FAILURE() << in.dump();
      return "";
    }
    return id;
  }
  std::string start(const std::string& image, const std::string& first) {
    json w = run_worker(*plumed_, token_, {{"fwp", true}, {"image", image}, {"input", first}});
    return w.value("id", std::string());
  }
  std::unique_ptr<Plumed> plumed_;
  std::string token_;
};

std::vector<std::string> numbered(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

std::string lines(const std::vector<std::string>& messages) {
  std::string out;
  for (const auto& m : messages) out += m + "\n";
  return out;
}

TEST_P(InstanceMessages, RepliesComeBackAsTheyAreSentAndAllAreLogged) {
  EXPECT_EQ(channel_wait(), GetParam() == ChannelWait::io_uring  ? "futex"
                            : GetParam() == ChannelWait::threads ? "futex_waitv"
                                                                 : "sweep");
  const std::string id = start("echo", "first");
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(await_log(id, "first\n"), "first\n");
  json a = exchange(id, {"a", "b"}, 2);
  EXPECT_EQ(a["replies"], json({"a", "b"})) << a.dump();
  EXPECT_EQ(a.value("sent", -1), 2);
  EXPECT_FALSE(a.value("timed_out", true));
  EXPECT_FALSE(a.value("ended", true));
  // Twelve channels' worth, each answered in full: the instance's replies are read while it runs
  // (an instance whose 16 unread replies filled its channel used to block, then fail its send).
  std::string expected = "first\na\nb\n";
  for (int round = 0; round < 12; ++round) {
    const auto batch = numbered("r" + std::to_string(round) + "-", 16);
    json got = exchange(id, batch, 16);
    ASSERT_EQ(got["replies"], json(batch)) << got.dump();
    expected += lines(batch);
  }
  EXPECT_EQ(log(id), expected);
  json w = json_of(plumed_->request("GET", "/v1/workers/" + id, token_));
  EXPECT_EQ(w["messages"].value("in", -1), 1 + 2 + 12 * 16) << w.dump();
  EXPECT_EQ(w["messages"].value("out", -1), 1 + 2 + 12 * 16) << w.dump();
  // Metered per tenant too.
  json stats = json_of(plumed_->request("GET", "/v1/stats", token_));
  EXPECT_EQ(stats["tenants"][0]["messages"].value("in", -1), 1 + 2 + 12 * 16) << stats.dump();
  EXPECT_EQ(metric(*plumed_, "plume_fwp_messages_total{tenant=\"alpha\",direction=\"out\"}"), 1 + 2 + 12 * 16);
  // echo ends on an empty message, without a reply: the request says it ended.
  json last = exchange(id, {""}, 1);
  EXPECT_TRUE(last.value("ended", false)) << last.dump();
  EXPECT_EQ(last["replies"], json::array()) << last.dump();
  json done = wait_worker(*plumed_, token_, id);
  EXPECT_EQ(done["exit"].value("cause", std::string()), "exit") << done.dump();
  EXPECT_EQ(done["exit"].value("code", -1), 0) << done.dump();
  // An ended instance takes nothing more.
  EXPECT_EQ(post(id, {{"messages", "late"}}).status, 409);
}

TEST_P(InstanceMessages, AFullChannelRefusesTheWholeRequestAndLosesNothing) {
  // Stopped, it reads nothing: its 16-slot channel fills.
  const auto held = numbered("s", 16);
  const std::string id = stopped_echo_holding(held);
  ASSERT_FALSE(id.empty());
  auto full = post(id, {{"messages", {"t0", "t1"}}});
  EXPECT_EQ(full.status, 429) << show(full);
  EXPECT_EQ(json_of(full)["error"].value("code", std::string()), "channel_full") << show(full);
  // Waiting for a reply that cannot come ends at the timeout, with none.
  json waited = exchange(id, {}, 1, 200);
  EXPECT_TRUE(waited.value("timed_out", false)) << waited.dump();
  EXPECT_EQ(waited["replies"], json::array());
  ASSERT_EQ(plumed_->request("POST", "/v1/workers/" + id + "/signal", token_, R"({"signal":"CONT"})").status, 202);
  // Everything accepted is answered, in order; nothing of the refused request went in.
  EXPECT_EQ(await_log(id, "first\n" + lines(held)), "first\n" + lines(held));
  json end = exchange(id, {""}, 1);
  EXPECT_TRUE(end.value("ended", false)) << end.dump();
  EXPECT_EQ(log(id).find("t0"), std::string::npos);
}

// An instance that sends faster than plumed reads fills its 16 slots again and again: each time it
// waits, asleep, for plumed to read them (it used to spin for up to a second, then fail). With the
// sweep, plumed reads every millisecond while a request waits, so the 400 replies take some 25
// sweeps, and an instance that slept through them used a fraction of that time on a CPU.
TEST_P(InstanceMessages, AnInstanceThatOutpacesPlumedWaitsAsleepForRoom) {
  const std::string id = start("probe", "x");
  ASSERT_EQ(await_log(id, "x\n"), "x\n");
  const json got = exchange(id, {"flood 400"}, 401, 30000);
  const json replies = got.value("replies", json::array());
  ASSERT_EQ(replies.size(), 401u) << got.dump().substr(0, 300);
  const auto want = numbered("f", 400);
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(replies[i], want[i]) << i;
  const std::string last = replies[400].get<std::string>();
  long long cpu_ns = -1, wall_ns = -1;
  ASSERT_EQ(std::sscanf(last.c_str(), "flooded cpu_ns=%lld wall_ns=%lld", &cpu_ns, &wall_ns), 2) << last;
  if (!futex_waits()) {
    // 0.5-0.7 ms of CPU in 25 ms here; an instance spinning on its full channel used all of it.
    EXPECT_LT(cpu_ns * 4, wall_ns) << last << ": the instance spun while its channel was full";
  }
  EXPECT_EQ(exchange(id, {""}, 0).value("sent", -1), 1);
  json done = wait_worker(*plumed_, token_, id);
  EXPECT_EQ(done["exit"].value("code", -1), 0) << done.dump();
}

// plume_send_timeout with no time to wait gives up on a full channel at once and sends nothing of
// that message: with the sweep, plumed reads every 10 ms (and when a log is asked for), and 2000
// messages sent in a tight loop fill the 16 slots long before that (reading as the instance sends,
// plumed may keep up). What was sent arrives, in order, and nothing else.
TEST_P(InstanceMessages, ASendThatMayNotWaitGivesUpOnAFullChannelAndSendsNothing) {
  const std::string id = start("probe", "x");
  ASSERT_EQ(await_log(id, "x\n"), "x\n");
  EXPECT_EQ(exchange(id, {"burst 2000"}, 0).value("sent", -1), 1);
  std::string log_text;
  for (int i = 0; i < 500 && (log_text = log(id)).find("burst sent=") == std::string::npos; ++i)
    std::this_thread::sleep_for(20ms);
  const size_t at = log_text.find("burst sent=");
  ASSERT_NE(at, std::string::npos) << log_text.substr(0, 300);
  int sent = -1, first_full = -2;
  ASSERT_EQ(std::sscanf(log_text.c_str() + at, "burst sent=%d first_full=%d", &sent, &first_full), 2) << log_text.substr(at);
  if (!futex_waits() || first_full >= 0) {
    EXPECT_GE(first_full, 16) << "the channel holds 16 before it is full";
    EXPECT_LT(sent, 2000);
  } else {
    EXPECT_EQ(sent, 2000);
  }
  // Exactly the messages that were sent, in order: b0 … b<first_full - 1> at least, and no gap
  // filled twice.
  std::vector<std::string> got;
  for (size_t from = 2; from < at;) {  // after "x\n"
    const size_t nl = log_text.find('\n', from);
    got.push_back(log_text.substr(from, nl - from));
    from = nl + 1;
  }
  ASSERT_EQ(got.size(), static_cast<size_t>(sent));
  for (int i = 0; i < (first_full < 0 ? sent : first_full); ++i) EXPECT_EQ(got[static_cast<size_t>(i)], "b" + std::to_string(i));
  for (size_t i = 1; i < got.size(); ++i)
    EXPECT_LT(std::stoi(got[i - 1].substr(1)), std::stoi(got[i].substr(1))) << "out of order at " << i;
  EXPECT_EQ(exchange(id, {""}, 0).value("sent", -1), 1);
}

// An image sizes its instances' channel: more messages in flight and larger ones than the default
// 16 × 1016 bytes, each bound said when crossed, and replies held per request bounded in bytes.
TEST_P(InstanceMessages, AnImageSizesItsInstancesChannel) {
  json image = {{"name", "wide"}, {"fwp", {{"binary", PLUME_ECHO_APP}, {"channel_slots", 64}, {"max_message", 4000}}}};
  auto r = plumed_->admin("POST", "/v1/images", image.dump());
  ASSERT_EQ(r.status, 201) << show(r);
  EXPECT_EQ(json_of(r)["fwp"].value("channel_slots", 0), 64) << r.body;
  EXPECT_EQ(json_of(r)["fwp"].value("max_message", 0), 4024) << r.body;  // 4000 + 8, rounded up to 64, - 8

  // 40 messages at its start, more than a default channel holds: all go in, all are answered.
  const auto first = numbered("m", 40);
  json w = run_worker(*plumed_, token_, {{"fwp", true}, {"image", "wide"}, {"input", first}});
  const std::string id = w.value("id", std::string());
  ASSERT_FALSE(id.empty()) << w.dump();
  EXPECT_EQ(await_log(id, lines(first)), lines(first));

  const std::string big(4024, 'b');
  json got = exchange(id, {big}, 1);
  EXPECT_EQ(got["replies"], json({big})) << got.dump().substr(0, 200);
  auto too_big = post(id, {{"messages", {big + "!"}}});
  EXPECT_EQ(too_big.status, 400) << show(too_big);
  EXPECT_NE(too_big.body.find("4025 bytes, more than a message holds (4024)"), std::string::npos) << too_big.body;
  auto too_many = post(id, {{"messages", json::array()}, {"replies", 300}});
  EXPECT_EQ(too_many.status, 400) << show(too_many);
  EXPECT_NE(too_many.body.find("at most 260 at a time"), std::string::npos) << too_many.body;
  EXPECT_EQ(exchange(id, {""}, 0).value("sent", -1), 1);
  EXPECT_EQ(wait_worker(*plumed_, token_, id)["exit"].value("code", -1), 0);

  // The default image's channel is as before: 16 messages at a start at most.
  json refused = {{"fwp", true}, {"image", "echo"}, {"input", numbered("d", 17)}};
  auto start17 = plumed_->request("POST", "/v1/workers", token_, refused.dump());
  EXPECT_EQ(start17.status, 400) << show(start17);
}

// Bytes that are not UTF-8 go in and come back in base64, unchanged (as text, a JSON string
// cannot carry them in, and a reply that is not UTF-8 comes back with U+FFFD in its place).
TEST_P(InstanceMessages, BytesThatAreNotTextTravelInBase64) {
  // "\x00\xff\xfe\x80 ok" and "\xc3\x28" (an invalid UTF-8 sequence), as base64.
  const std::string raw("\x00\xff\xfe\x80 ok\n", 8);
  json start = {{"fwp", true}, {"image", "echo"}, {"input", {"AP/+gCBvaw=="}}, {"input_encoding", "base64"}};
  json w = run_worker(*plumed_, token_, start);
  const std::string id = w.value("id", std::string());
  ASSERT_FALSE(id.empty()) << w.dump();
  EXPECT_EQ(await_log(id, raw), raw);  // the log keeps the bytes
  auto r = post(id, {{"messages", {"wyg=", "AP/+gCBvaw=="}}, {"replies", 2}, {"encoding", "base64"}});
  ASSERT_EQ(r.status, 200) << show(r);
  const json got = json_of(r);
  EXPECT_EQ(got["replies"], json({"wyg=", "AP/+gCBvaw=="})) << got.dump();
  EXPECT_EQ(got.value("encoding", std::string()), "base64") << got.dump();
  auto bad = post(id, {{"messages", {"wyg"}}, {"encoding", "base64"}});
  EXPECT_EQ(bad.status, 400) << show(bad);
  EXPECT_NE(bad.body.find("messages[0]: not base64"), std::string::npos) << bad.body;
  EXPECT_EQ(exchange(id, {""}, 0).value("sent", -1), 1);
  EXPECT_EQ(wait_worker(*plumed_, token_, id)["exit"].value("code", -1), 0);
}

TEST_P(InstanceMessages, BadRequestsAreRefusedAndStartNothing) {
  EXPECT_EQ(post("i-00000000", {{"messages", "x"}}).status, 404);
  // An exec-mode worker has no channel.
  json exec = run_worker(*plumed_, token_, {{"argv", {"/bin/sleep", "30"}}});
  ASSERT_TRUE(exec.contains("id"));
  EXPECT_EQ(post(exec["id"], {{"messages", "x"}}).status, 400);
  // A start's input must fit the channel (16 messages of up to 1016 bytes), or nothing starts.
  const long started = json_of(plumed_->request("GET", "/v1/stats", token_))["tenants"][0].value("workers_started", -1L);
  auto too_many = start_worker(*plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", numbered("m", 17)}});
  EXPECT_EQ(too_many.status, 400) << show(too_many);
  EXPECT_NE(too_many.body.find("(16)"), std::string::npos) << show(too_many);
  auto too_big = start_worker(*plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", {"ok", std::string(1017, 'x')}}});
  EXPECT_EQ(too_big.status, 400) << show(too_big);
  EXPECT_NE(too_big.body.find("input[1]"), std::string::npos) << show(too_big);
  EXPECT_EQ(json_of(plumed_->request("GET", "/v1/stats", token_))["tenants"][0].value("workers_started", -1L), started);

  const std::string id = start("echo", "first");
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(await_log(id, "first\n"), "first\n");
  for (const json& body : {json{{"messages", std::string(1017, 'x')}}, json{{"messages", "x"}, {"nope", 1}},
                           json{{"replies", 1025}}, json::object(), json{{"messages", 5}},
                           json{{"messages", "x"}, {"timeout_ms", -1}}, json{{"messages", "x"}, {"wait_for_room_ms", "1s"}},
                           json{{"messages", "x"}, {"wait_for_room_ms", 86400001}}, json::array()}) {
    auto r = post(id, body);
    EXPECT_EQ(r.status, 400) << body.dump() << " → " << show(r);
  }
  // Another tenant's instance is not there for it.
  const std::string other = add_tenant(*plumed_, "beta");
  EXPECT_EQ(post(id, {{"messages", "x"}}, other).status, 404);
  // None of it reached the instance.
  json end = exchange(id, {""}, 1);
  EXPECT_TRUE(end.value("ended", false)) << end.dump();
  EXPECT_EQ(log(id), "first\n");
  (void)plumed_->request("POST", "/v1/workers/" + exec["id"].get<std::string>() + "/signal", token_, R"({"signal":"KILL"})");
}

TEST_P(InstanceMessages, AtMostFourRequestsWaitForOneInstancesReplies) {
  const std::string id = start("echo", "first");
  ASSERT_EQ(await_log(id, "first\n"), "first\n");
  ASSERT_EQ(plumed_->request("POST", "/v1/workers/" + id + "/signal", token_, R"({"signal":"STOP"})").status, 202);
  // Four requests wait for its replies, each on a connection of its own.
  std::vector<std::thread> waiting;
  std::vector<json> answers(4);
  for (int i = 0; i < 4; ++i)
    waiting.emplace_back([&, i] { answers[i] = exchange(id, {"w" + std::to_string(i)}, 1); });
  // They are in once their messages are (both happen in one turn of plumed's loop).
  json w;
  for (int i = 0; i < 500; ++i) {
    w = json_of(plumed_->request("GET", "/v1/workers/" + id, token_));
    if (w["messages"].value("in", 0) == 5) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(w["messages"].value("in", 0), 5) << w.dump();
  auto fifth = post(id, {{"messages", "w4"}, {"replies", 1}});
  EXPECT_EQ(fifth.status, 429) << show(fifth);
  EXPECT_EQ(json_of(fifth)["error"].value("code", std::string()), "limit_exceeded") << show(fifth);
  // Sending without waiting is still taken.
  EXPECT_EQ(post(id, {{"messages", "w5"}}).status, 200);
  ASSERT_EQ(plumed_->request("POST", "/v1/workers/" + id + "/signal", token_, R"({"signal":"CONT"})").status, 202);
  for (auto& t : waiting) t.join();
  // Each got the reply to its own message: they queued in the order their messages went in.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(answers[i]["replies"], json({"w" + std::to_string(i)})) << answers[i].dump();
  std::string text;
  for (int i = 0; i < 500 && (text = log(id)).find("w5\n") == std::string::npos; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_NE(text.find("w5\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("w4"), std::string::npos) << text;
}

// Requests that say wait_for_room_ms queue in plumed while the channel is full, and go in whole,
// oldest first, once the instance has read enough; one that may not wait is refused rather than
// overtake them. (Replies are not checked here: they are the stream's next, whichever request
// waits; the log shows what went in, in order.)
TEST_P(InstanceMessages, RequestsThatMayWaitForRoomGoInWholeAndInOrderOnceItReads) {
  const auto held = numbered("s", 16);
  const std::string id = stopped_echo_holding(held);
  ASSERT_FALSE(id.empty());
  Reply first, second;
  std::thread t1([&] { first = post(id, {{"messages", {"t0", "t1"}}, {"wait_for_room_ms", 20000}}); });
  ASSERT_EQ(await_waiting_for_room(id, 1), 1);
  std::thread t2([&] { second = post(id, {{"messages", {"u0"}}, {"wait_for_room_ms", 20000}}); });
  ASSERT_EQ(await_waiting_for_room(id, 2), 2);
  // One that may not wait does not overtake them, though it alone would not fit either.
  auto now = post(id, {{"messages", "v0"}});
  EXPECT_EQ(now.status, 429) << show(now);
  EXPECT_EQ(json_of(now)["error"].value("code", std::string()), "channel_full") << show(now);
  EXPECT_NE(json_of(now)["error"].value("message", std::string()).find("2 requests wait for room ahead"), std::string::npos)
      << show(now);
  // More than the whole channel can never fit: refused at once, waiting or not.
  auto huge = post(id, {{"messages", numbered("h", 17)}, {"wait_for_room_ms", 20000}});
  EXPECT_EQ(huge.status, 400) << show(huge);
  // Nor do requests queue without bound: plumed holds their messages.
  std::vector<std::thread> more;
  std::vector<Reply> more_answers(2);
  for (int i = 0; i < 2; ++i)
    more.emplace_back([&, i] { more_answers[i] = post(id, {{"messages", {"m" + std::to_string(i)}}, {"wait_for_room_ms", 20000}}); });
  ASSERT_EQ(await_waiting_for_room(id, 4), 4);
  auto fifth = post(id, {{"messages", "m9"}, {"wait_for_room_ms", 20000}});
  EXPECT_EQ(fifth.status, 429) << show(fifth);
  EXPECT_EQ(json_of(fifth)["error"].value("code", std::string()), "limit_exceeded") << show(fifth);
  ASSERT_EQ(plumed_->request("POST", "/v1/workers/" + id + "/signal", token_, R"({"signal":"CONT"})").status, 202);
  t1.join();
  t2.join();
  for (auto& t : more) t.join();
  EXPECT_EQ(first.status, 200) << show(first);
  EXPECT_EQ(json_of(first).value("sent", -1), 2) << show(first);
  EXPECT_EQ(second.status, 200) << show(second);
  for (const Reply& r : more_answers) EXPECT_EQ(r.status, 200) << show(r);
  // The two that queued behind each other went in in the order they came; m0 and m1 after them
  // (between themselves, in whichever order their connections reached plumed).
  const std::string want = "first\n" + lines(held) + "t0\nt1\nu0\n";
  std::string text;
  for (int i = 0; i < 500 && (text = log(id)).size() < want.size() + 6; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(text.substr(0, want.size()), want) << text;
  const std::string tail = text.size() >= want.size() ? text.substr(want.size()) : "";
  EXPECT_TRUE(tail == "m0\nm1\n" || tail == "m1\nm0\n") << text;
  EXPECT_EQ(text.find("v0"), std::string::npos) << text;
  EXPECT_EQ(text.find("h0"), std::string::npos) << text;
  EXPECT_EQ(text.find("m9"), std::string::npos) << text;
  EXPECT_EQ(await_waiting_for_room(id, 0), 0);
}

// A wait for room ends with nothing sent: when its time is up (429, as a request that may not
// wait), or when the instance ends first (409).
TEST_P(InstanceMessages, AWaitForRoomThatEndsInVainSendsNothing) {
  const auto held = numbered("s", 16);
  const std::string id = stopped_echo_holding(held);
  ASSERT_FALSE(id.empty());
  const auto asked = std::chrono::steady_clock::now();
  auto late = post(id, {{"messages", "late"}, {"wait_for_room_ms", 300}});
  EXPECT_GE(std::chrono::steady_clock::now() - asked, 300ms);
  EXPECT_EQ(late.status, 429) << show(late);
  EXPECT_EQ(json_of(late)["error"].value("code", std::string()), "channel_full") << show(late);
  EXPECT_EQ(await_waiting_for_room(id, 0), 0);
  // Ended while one waits.
  Reply orphan;
  std::thread waiting([&] { orphan = post(id, {{"messages", "orphan"}, {"replies", 1}, {"wait_for_room_ms", 20000}}); });
  ASSERT_EQ(await_waiting_for_room(id, 1), 1);
  ASSERT_EQ(plumed_->request("POST", "/v1/workers/" + id + "/signal", token_, R"({"signal":"KILL"})").status, 202);
  waiting.join();
  EXPECT_EQ(orphan.status, 409) << show(orphan);
  EXPECT_NE(json_of(orphan)["error"].value("message", std::string()).find("ended before"), std::string::npos) << show(orphan);
  json done = wait_worker(*plumed_, token_, id);
  EXPECT_EQ(done["messages"].value("in", -1), 17) << done.dump();  // first and the 16 held
  EXPECT_EQ(done["messages"].value("waiting_for_room", -1), 0) << done.dump();
}

// `plume logs -f`'s way: from a byte offset, waiting in plumed until there is more.
TEST_P(InstanceMessages, ALogIsFollowedFromAnOffsetUntilTheInstanceEnds) {
  const std::string id = start("echo", "first");
  ASSERT_EQ(await_log(id, "first\n"), "first\n");
  auto get = [&](const std::string& query) {
    return plumed_->request("GET", "/v1/workers/" + id + "/logs?" + query, token_, "", 30s);
  };
  auto all = get("since=0");
  ASSERT_EQ(all.status, 200) << show(all);
  EXPECT_EQ(all.body, "first\n");
  EXPECT_EQ(all.header("x-plume-log-offset"), "6");
  EXPECT_EQ(all.header("x-plume-log-end"), "false");
  // Nothing new: the wait ends at wait_ms with nothing, at the same offset.
  auto none = get("since=6&wait_ms=200");
  EXPECT_EQ(none.body, "");
  EXPECT_EQ(none.header("x-plume-log-offset"), "6");
  EXPECT_EQ(none.header("x-plume-log-end"), "false");
  // A follower waiting (or not yet: then it finds the bytes there) gets the next message.
  Reply next;
  std::thread follower([&] { next = get("since=6&wait_ms=15000"); });
  EXPECT_EQ(post(id, {{"messages", "second"}}).status, 200);
  follower.join();
  EXPECT_EQ(next.body, "second\n") << show(next);
  EXPECT_EQ(next.header("x-plume-log-offset"), "13");
  // Its end ends the follower's wait, and says there is no more.
  Reply last;
  std::thread waiting([&] { last = get("since=13&wait_ms=15000"); });
  EXPECT_EQ(post(id, {{"messages", ""}}).status, 200);
  waiting.join();
  EXPECT_EQ(last.status, 200) << show(last);
  EXPECT_EQ(last.body, "") << show(last);
  EXPECT_EQ(last.header("x-plume-log-end"), "true") << show(last);  // echo ends without a word
  EXPECT_EQ(get("since=0").body, "first\nsecond\n");
  EXPECT_EQ(get("since=x").status, 400);
  EXPECT_EQ(get("wait_ms=600001").status, 400);
}

// plumed's own CPU time so far, in clock ticks (utime + stime of /proc/<pid>/stat).
long cpu_ticks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) {
      stime = std::stol(field);
      break;
    }
  }
  return utime + stime;
}

// Context switches of all of a process's threads so far (/proc/<pid>/task/*/status).
long context_switches(pid_t pid) {
  long total = 0;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(tasks)) {
    std::ifstream in(task.path() / "status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0 || line.rfind("nonvoluntary_ctxt_switches:", 0) == 0)
        total += std::stol(line.substr(line.find(':') + 1));
  }
  return total;
}

// Nothing polls: with an instance running and quiet, a plumed that waits on its doorbell (either
// way) is not woken at all; one that sweeps is, 100 times a second.
TEST_P(InstanceMessages, AQuietRunningInstanceWakesPlumedOnlyIfItSweeps) {
  const std::string id = start("echo", "first");
  ASSERT_EQ(await_log(id, "first\n"), "first\n");
  const long before = context_switches(plumed_->pid());
  std::this_thread::sleep_for(1s);  // the window measured, not a wait for anything
  const long woken = context_switches(plumed_->pid()) - before;
  if (futex_waits()) {
    EXPECT_LT(woken, 10) << "plumed was woken while its only instance said nothing";
  } else {
    EXPECT_GT(woken, 50) << "the sweep runs every 10 ms: the count would show it";
  }
  std::cout << "plumed context switches in 1 s: " << woken << "\n";
  EXPECT_EQ(exchange(id, {"still here"}, 1)["replies"], json({"still here"}));
}

TEST_P(InstanceMessages, AnInstanceRingingForNothingCostsPlumedLittle) {
  const std::string id = start("probe", "hello");
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(await_log(id, "hello\n"), "hello\n");
  const long before = cpu_ticks(plumed_->pid());
  json rang = exchange(id, {"ring 1000"}, 1, 20000);
  const long spent = cpu_ticks(plumed_->pid()) - before;
  ASSERT_EQ(rang["replies"].size(), 1u) << rang.dump();
  const std::string reply = rang["replies"][0];
  ASSERT_EQ(reply.rfind("rang ", 0), 0u) << reply;
  const long rings = std::stol(reply.substr(5));
  EXPECT_GT(rings, 10000) << "it hardly rang: the test proves nothing";
  // Each ring ends plumed's futex wait with nothing to read; past 16 in a row plumed backs off
  // (up to a second), so a second of ringing costs it a few dozen wake-ups, not one per ring.
  // (Sweeping, plumed does not wait on the doorbell at all.)
  EXPECT_LT(spent, ::sysconf(_SC_CLK_TCK) / 5) << rings << " rings cost plumed " << spent << " ticks";
  std::cout << rings << " rings cost plumed " << spent << " ticks\n";
  // It is still served once it behaves.
  json after = exchange(id, {"ids"}, 1);
  ASSERT_EQ(after["replies"].size(), 1u) << after.dump();
  EXPECT_EQ(after["replies"][0].get<std::string>().rfind("pid=", 0), 0u) << after.dump();
}

// The same with the space bell plumed waits on while a request waits for room: the probe rings it
// for a second while its channel is full (it reads nothing meanwhile), and plumed backs off.
TEST_P(InstanceMessages, AnInstanceRingingItsSpaceBellForNothingCostsPlumedLittle) {
  const std::string id = start("probe", "hello");
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(await_log(id, "hello\n"), "hello\n");
  const long before = cpu_ticks(plumed_->pid());
  ASSERT_EQ(exchange(id, {"ring-space 1000"}, 0).value("sent", -1), 1);
  // 15 more fill its 16 slots, whether it has taken the ring command out yet or not.
  const auto filler = numbered("fill", 15);
  ASSERT_EQ(exchange(id, filler, 0).value("sent", -1), 15);
  auto waited = post(id, {{"messages", {"ids", "w1"}}, {"wait_for_room_ms", 20000}});
  const long spent = cpu_ticks(plumed_->pid()) - before;
  ASSERT_EQ(waited.status, 200) << show(waited);
  EXPECT_EQ(json_of(waited).value("sent", -1), 2) << show(waited);
  // The stream: the ring command's answer, the 15 fillers echoed, then ids' answer and w1.
  std::string text;
  for (int i = 0; i < 500 && (text = log(id)).find("w1\n") == std::string::npos; ++i) std::this_thread::sleep_for(20ms);
  ASSERT_EQ(text.rfind("hello\nrang ", 0), 0u) << text;
  const long rings = std::stol(text.substr(11));
  EXPECT_GT(rings, 10000) << "it hardly rang: the test proves nothing";
  const size_t fillers_at = text.find('\n', 11) + 1;
  EXPECT_EQ(text.substr(fillers_at, lines(filler).size()), lines(filler)) << text;
  const std::string rest = text.substr(std::min(text.size(), fillers_at + lines(filler).size()));
  EXPECT_EQ(rest.rfind("pid=", 0), 0u) << text;
  EXPECT_EQ(rest.substr(rest.find('\n') + 1), "w1\n") << text;
  EXPECT_LT(spent, ::sysconf(_SC_CLK_TCK) / 5) << rings << " rings cost plumed " << spent << " ticks";
  std::cout << rings << " space bell rings cost plumed " << spent << " ticks\n";
}

TEST_P(InstanceMessages, AnInstanceThatLiesInItsChannelIsKilledAlone) {
  const std::string bystander = start("probe", "hello");
  const std::string liar = start("probe", "hello");
  ASSERT_FALSE(bystander.empty());
  ASSERT_FALSE(liar.empty());
  ASSERT_EQ(await_log(liar, "hello\n"), "hello\n");
  ASSERT_EQ(await_log(bystander, "hello\n"), "hello\n");
  auto r = post(liar, {{"messages", "scribble"}, {"replies", 1}, {"timeout_ms", 15000}});
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_TRUE(json_of(r).value("ended", false)) << show(r);
  json done = wait_worker(*plumed_, token_, liar);
  EXPECT_EQ(done["exit"].value("signal", 0), 9) << done.dump();
  EXPECT_NE(plumed_->stderr_text().find("event=worker.channel_broken"), std::string::npos);
  json still = exchange(bystander, {"ids"}, 1);
  ASSERT_EQ(still["replies"].size(), 1u) << still.dump();
  EXPECT_EQ(still["replies"][0].get<std::string>().rfind("pid=", 0), 0u) << still.dump();
}

INSTANTIATE_TEST_SUITE_P(Waits, InstanceMessages,
                         ::testing::Values(ChannelWait::io_uring, ChannelWait::threads, ChannelWait::sweep),
                         [](const ::testing::TestParamInfo<ChannelWait>& p) {
                           return p.param == ChannelWait::io_uring  ? "FutexWait"
                                  : p.param == ChannelWait::threads ? "FutexWaitvThreads"
                                                                    : "Sweep";
                         });

}  // namespace
}  // namespace plume::test
