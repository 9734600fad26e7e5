// The plume CLI against a real plumed: exit codes (worker's, API refusal, usage, unreachable),
// JSON output, and --help for every verb.
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "e2e.h"

namespace plume::test {
namespace {

const std::vector<std::vector<std::string>> kVerbs = {
    {"run"}, {"ps"}, {"inspect"}, {"kill"}, {"logs"}, {"wait"}, {"rm"}, {"send"}, {"stats"}, {"health"},
    {"tenant"}, {"tenant", "add"}, {"tenant", "ls"}, {"tenant", "rm"},
    {"image"}, {"image", "add"}, {"image", "ls"}, {"image", "rm"}};

// These need no plumed at all.
TEST(CliOffline, HelpWorksForEveryVerb) {
  for (auto args : kVerbs) {
    args.push_back("--help");
    auto r = run_cli(args);
    SCOPED_TRACE(::testing::PrintToString(args));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Exit codes"), std::string::npos) << r.out;
  }
  auto top = run_cli({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  for (const char* verb : {"run", "ps", "inspect", "kill", "logs", "wait", "rm", "send", "stats", "tenant", "image", "health"})
    EXPECT_NE(top.out.find(verb), std::string::npos) << verb;
}

TEST(CliOffline, UsageErrorsExit2) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {}, {"frobnicate"}, {"--bogus", "ps"}, {"run"}, {"kill"}, {"tenant"}, {"tenant", "add", "x"},
           {"image", "add", "x"}, {"image", "add", "x", "--rootfs", "/a", "--bundle", "/b"},
           {"image", "add", "x", "--rootfs", "/a", "--spinning", "1"},
           {"run", "--memory", "lots", "--", "/bin/true"}, {"wait", "--timeout", "soon", "w-1"},
           {"send"}, {"send", "i-1"}, {"send", "i-1", "x", "--timeout", "soon"}, {"send", "-r", "-1", "i-1"}}) {
    auto r = run_cli(args, {"PLUME_SOCKET=/nonexistent/plumed.sock"});
    EXPECT_EQ(r.exit_code, 2) << ::testing::PrintToString(args) << " out=" << r.out << " err=" << r.err;
  }
}

TEST(CliOffline, UnreachableSocketExits3NamingThePath) {
  auto r = run_cli({"--socket", "/nonexistent/dir/plumed.sock", "ps"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/dir/plumed.sock"), std::string::npos) << r.err;
  // A socket file nobody listens on is "refused", also 3.
  TempDir dir;
  std::string path = dir.path() + "/dead.sock";
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  auto refused = run_cli({"health"}, {"PLUME_SOCKET=" + path});
  EXPECT_EQ(refused.exit_code, 3) << refused.err;
  EXPECT_NE(refused.err.find(path), std::string::npos) << refused.err;
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    PLUME_SKIP_UNLESS_ROOT();
    ASSERT_TRUE(plumed_.start());
    token_ = add_tenant(plumed_, "clitest");
    env_ = {"PLUME_SOCKET=" + plumed_.socket(), "PLUME_TOKEN=" + token_};
  }
  CliResult cli(const std::vector<std::string>& args) { return run_cli(args, env_); }

  Plumed plumed_;
  std::string token_;
  std::vector<std::string> env_;
};

TEST_F(Cli, RunWaitExitsWithTheWorkersCode) {
  auto r = cli({"run", "--wait", "--", "/bin/sh", "-c", "exit 5"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  auto echo = cli({"run", "-w", "--", "/bin/sh", "-c", "echo hi; echo oops >&2"});
  EXPECT_EQ(echo.exit_code, 0) << echo.err;
  EXPECT_EQ(echo.out, "hi\n");
  EXPECT_NE(echo.err.find("oops\n"), std::string::npos) << echo.err;
  auto killed = cli({"run", "--wait", "--timeout", "200ms", "--", "/bin/sleep", "10"});
  EXPECT_EQ(killed.exit_code, 128 + 9) << killed.err;
  auto env = cli({"run", "--wait", "-e", "GREETING=hello", "--cwd", "/tmp", "--", "/bin/sh", "-c", "echo $GREETING; pwd"});
  EXPECT_EQ(env.exit_code, 0) << env.err;
  EXPECT_EQ(env.out, "hello\n/tmp\n");
}

TEST_F(Cli, RunPrintsTheIdThenPsKillWaitLogsRm) {
  auto run = cli({"run", "--", "/bin/sleep", "30"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::string id = run.out.substr(0, run.out.find('\n'));
  ASSERT_EQ(id.rfind("w-", 0), 0u) << run.out;

  auto ps = cli({"ps", "--json"});
  ASSERT_EQ(ps.exit_code, 0) << ps.err;
  json j = json::parse(ps.out, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("workers")) << ps.out;
  bool found = false;
  for (const auto& w : j["workers"]) found |= w.value("id", std::string()) == id;
  EXPECT_TRUE(found) << ps.out;
  auto table = cli({"ps"});
  EXPECT_EQ(table.exit_code, 0);
  for (const char* col : {"ID", "TENANT", "IMAGE", "PID", "STATE", "EXIT", "CPU", "PEAK-MEM", "AGE", "COMMAND"})
    EXPECT_NE(table.out.find(col), std::string::npos) << col << "\n" << table.out;
  EXPECT_NE(table.out.find(id), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("/bin/sleep 30"), std::string::npos) << table.out;

  auto timeout = cli({"wait", "--timeout", "100ms", id});
  EXPECT_EQ(timeout.exit_code, 124) << timeout.out << timeout.err;

  auto inspect = cli({"inspect", id});
  EXPECT_EQ(inspect.exit_code, 0);
  EXPECT_EQ(json::parse(inspect.out, nullptr, false).value("state", std::string()), "running") << inspect.out;

  EXPECT_EQ(cli({"rm", id}).exit_code, 1);  // still running: 409
  auto kill = cli({"kill", id});
  EXPECT_EQ(kill.exit_code, 0) << kill.err;
  auto wait = cli({"wait", id});
  EXPECT_EQ(wait.exit_code, 137) << wait.out << wait.err;
  EXPECT_NE(wait.out.find("signal"), std::string::npos) << wait.out;

  // Exited workers show in ps -a only.
  EXPECT_EQ(cli({"ps"}).out.find(id), std::string::npos);
  EXPECT_NE(cli({"ps", "-a"}).out.find(id), std::string::npos);

  EXPECT_EQ(cli({"rm", id}).exit_code, 0);
  auto gone = cli({"inspect", id});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_EQ(gone.err.rfind("plume: not_found: ", 0), 0u) << gone.err;
}

TEST_F(Cli, KillWithASignalNameAndNumber) {
  for (const char* sig : {"TERM", "15"}) {
    auto run = cli({"run", "--", "/bin/sleep", "30"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    std::string id = run.out.substr(0, run.out.find('\n'));
    EXPECT_EQ(cli({"kill", "-s", sig, id}).exit_code, 0);
    EXPECT_EQ(cli({"wait", "--timeout", "5s", id}).exit_code, 128 + 15) << "signal " << sig << " did not end " << id;
    cli({"kill", id});
  }
}

TEST_F(Cli, LogsOfBothStreams) {
  auto run = cli({"run", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::string id = run.out.substr(0, run.out.find('\n'));
  EXPECT_EQ(cli({"wait", id}).exit_code, 3);
  auto out = cli({"logs", id});
  EXPECT_EQ(out.exit_code, 0);
  EXPECT_EQ(out.out, "out\n");
  auto err = cli({"logs", "--stderr", id});
  EXPECT_EQ(err.exit_code, 0);
  EXPECT_EQ(err.out, "err\n");
}

TEST_F(Cli, StatsHealthAndImages) {
  ASSERT_EQ(cli({"run", "--wait", "--", "/bin/true"}).exit_code, 0);
  auto stats = cli({"stats"});
  EXPECT_EQ(stats.exit_code, 0) << stats.err;
  EXPECT_NE(stats.out.find("TENANT"), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("clitest"), std::string::npos) << stats.out;
  auto sj = cli({"stats", "--json"});
  json s = json::parse(sj.out, nullptr, false);
  ASSERT_TRUE(s.contains("tenants")) << sj.out;
  EXPECT_EQ(s["tenants"][0].value("workers_started", 0), 1) << sj.out;
  auto health = cli({"health"});
  EXPECT_EQ(health.exit_code, 0);
  EXPECT_NE(health.out.find("ok"), std::string::npos) << health.out;
  auto images = cli({"image", "ls"});
  EXPECT_EQ(images.exit_code, 0);
  EXPECT_NE(images.out.find("host"), std::string::npos) << images.out;
}

TEST_F(Cli, ImageAddTakesAnFwpImagesPoolAndChannel) {
  auto admin = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--socket", plumed_.socket(), "--token", plumed_.admin_token()});
    return run_cli(args);
  };
  auto added = admin({"image", "add", "spin", "--fwp-binary", PLUME_ECHO_APP, "--pool", "2", "--spinning", "1", "--huge-text",
                       "--channel-slots", "32", "--max-message", "2000"});
  EXPECT_EQ(added.exit_code, 0) << added.out << added.err;
  auto images = json_of(plumed_.admin("GET", "/v1/images"));
  bool found = false;
  for (const auto& im : images["images"]) {
    if (im.value("name", std::string()) != "spin") continue;
    found = true;
    EXPECT_EQ(im["fwp"].value("pool_size", -1), 2) << im.dump();
    EXPECT_EQ(im["fwp"].value("spinning_standbys", -1), 1) << im.dump();
    EXPECT_EQ(im["fwp"].value("huge_text", false), true) << im.dump();
    EXPECT_EQ(im["fwp"].value("channel_slots", -1), 32) << im.dump();
    EXPECT_EQ(im["fwp"].value("max_message", -1), 2040) << im.dump();  // 2000 + 8 rounded up to 64, - 8
  }
  EXPECT_TRUE(found) << images.dump();
  // More spinners than the pool holds: the API's refusal, as exit 1.
  auto refused = admin({"image", "add", "spin2", "--fwp-binary", PLUME_ECHO_APP, "--pool", "1", "--spinning", "2"});
  EXPECT_EQ(refused.exit_code, 1) << refused.out;
  EXPECT_NE(refused.err.find("spinning_standbys"), std::string::npos) << refused.err;
  auto odd = admin({"image", "add", "odd", "--fwp-binary", PLUME_ECHO_APP, "--channel-slots", "24"});
  EXPECT_EQ(odd.exit_code, 1) << odd.out;
  EXPECT_NE(odd.err.find("channel_slots: a power of two"), std::string::npos) << odd.err;
  auto no_app = admin({"image", "add", "bare", "--rootfs", "/", "--max-message", "2000"});
  EXPECT_EQ(no_app.exit_code, 2) << no_app.err;
  EXPECT_NE(no_app.err.find("--max-message need --fwp-binary"), std::string::npos) << no_app.err;
}

TEST_F(Cli, LogsFollowAWorkerUntilItEnds) {
  // The worker's own pauses, not the test's: the follower must wait for the second line.
  auto run = cli({"run", "--", "/bin/sh", "-c", "echo one; sleep 0.3; echo two; sleep 0.3; echo three >&2"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string id = run.out.substr(0, run.out.find('\n'));
  auto out = cli({"logs", "-f", id});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(out.out, "one\ntwo\n");
  // Once it has ended, following prints the whole log and returns.
  auto err = cli({"logs", "--follow", "--stderr", id});
  EXPECT_EQ(err.exit_code, 0) << err.err;
  EXPECT_EQ(err.out, "three\n");
  EXPECT_EQ(cli({"logs", "-f", "w-00000000"}).exit_code, 1);
}

TEST_F(Cli, SendPrintsAnInstancesRepliesAndSaysWhyItStopped) {
  json image = {{"name", "echo"}, {"fwp", {{"binary", PLUME_ECHO_APP}, {"pool_size", 1}}}};
  ASSERT_EQ(plumed_.admin("POST", "/v1/images", image.dump()).status, 201);
  auto run = cli({"run", "--fwp", "echo", "--input", "hello"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string id = run.out.substr(0, run.out.find('\n'));
  // Its reply to the start message first, so that the replies below are those to `send`'s.
  std::string log;
  for (int i = 0; i < 500 && log != "hello\n"; ++i) {
    log = cli({"logs", id}).out;
    if (log != "hello\n") std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(log, "hello\n");
  auto two = cli({"send", "-r", "2", id, "one", "two words"});
  EXPECT_EQ(two.exit_code, 0) << two.err;
  EXPECT_EQ(two.out, "one\ntwo words\n");
  auto none = cli({"send", "--replies", "1", "--timeout", "100ms", id});
  EXPECT_EQ(none.exit_code, 124) << none.err;
  EXPECT_NE(none.err.find("timed out after 0 of 1 replies"), std::string::npos) << none.err;
  auto binary = cli({"send", "--base64", "-r", "2", id, "AP/+gCBvaw==", "wyg="});  // bytes that are not text
  EXPECT_EQ(binary.exit_code, 0) << binary.err;
  EXPECT_EQ(binary.out, "AP/+gCBvaw==\nwyg=\n");
  auto json_out = cli({"--json", "send", "-r", "1", id, "three"});
  ASSERT_EQ(json_out.exit_code, 0) << json_out.err;
  EXPECT_EQ(json::parse(json_out.out, nullptr, false)["replies"], json({"three"})) << json_out.out;
  // Its channel full (stopped, it reads nothing): refused at once, or once --wait-for-room has
  // passed; a send that may wait goes in when it reads again.
  ASSERT_EQ(cli({"kill", "-s", "STOP", id}).exit_code, 0);
  std::vector<std::string> fill = {"send", id};
  for (int i = 0; i < 16; ++i) fill.push_back("s" + std::to_string(i));
  ASSERT_EQ(cli(fill).exit_code, 0);
  auto full = cli({"send", id, "x"});
  EXPECT_EQ(full.exit_code, 1);
  EXPECT_NE(full.err.find("channel_full"), std::string::npos) << full.err;
  auto waited = cli({"send", "--wait-for-room", "150ms", id, "x"});
  EXPECT_EQ(waited.exit_code, 1);
  EXPECT_NE(waited.err.find("within 150 ms"), std::string::npos) << waited.err;
  EXPECT_EQ(cli({"send", "--wait-for-room", "soon", id, "x"}).exit_code, 2);
  CliResult later;
  std::thread sender([&] { later = cli({"send", "--wait-for-room", "20s", id, "later"}); });
  for (int i = 0; i < 500; ++i) {
    json w = json::parse(cli({"--json", "inspect", id}).out, nullptr, false);
    if (w.is_object() && w["messages"].value("waiting_for_room", 0) == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(cli({"kill", "-s", "CONT", id}).exit_code, 0);
  sender.join();
  EXPECT_EQ(later.exit_code, 0) << later.err;
  auto ended = cli({"send", "-r", "1", id, ""});  // echo ends on an empty message, without a reply
  EXPECT_EQ(ended.exit_code, 1) << ended.err;
  EXPECT_NE(ended.err.find("ended after 0 of 1 replies"), std::string::npos) << ended.err;
  auto gone = cli({"send", id, "late"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_NE(gone.err.find("conflict"), std::string::npos) << gone.err;
  // A start's input in base64: the instance gets the bytes, and its log shows them.
  auto raw = cli({"run", "--fwp", "echo", "--input-base64", "--input", "AP/+gCBvaw==", "--input", "", "--wait"});
  EXPECT_EQ(raw.exit_code, 0) << raw.err;
  EXPECT_EQ(raw.out, std::string("\x00\xff\xfe\x80 ok\n", 8));
  EXPECT_EQ(cli({"run", "--input-base64", "--", "/bin/true"}).exit_code, 2);
}

TEST_F(Cli, AdminTokenComesFromFlagOrTheTokenFile) {
  // A tenant token is refused on admin verbs: exit 1 with the API's code.
  auto denied = cli({"tenant", "ls"});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_EQ(denied.err.rfind("plume: forbidden: ", 0), 0u) << denied.err;
  auto flag = run_cli({"--socket", plumed_.socket(), "--token", plumed_.admin_token(), "tenant", "ls"});
  EXPECT_EQ(flag.exit_code, 0) << flag.err;
  EXPECT_NE(flag.out.find("clitest"), std::string::npos);
  // Without --token or PLUME_TOKEN the CLI reads <socket dir>/admin.token.
  {
    std::ofstream(plumed_.runtime_dir() + "/admin.token") << plumed_.admin_token() << "\n";
  }
  auto file = run_cli({"--socket", plumed_.socket(), "tenant", "ls"});
  EXPECT_EQ(file.exit_code, 0) << file.err;
  // The admin runs a worker for a tenant with --tenant.
  auto as_admin = run_cli({"--socket", plumed_.socket(), "run", "--tenant", "clitest", "--wait", "--", "/bin/sh", "-c", "exit 7"});
  EXPECT_EQ(as_admin.exit_code, 7) << as_admin.err;
}

}  // namespace
}  // namespace plume::test
