#include "fwp_fast/fast_fixture.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <linux/io_uring.h>

#include "plume/fwp/process_usage.h"

namespace plume::fwp::test {
namespace {

std::atomic<int> g_counter{0};

}  // namespace

bool running_as_root() { return ::geteuid() == 0; }

std::string field(const std::string& text, const std::string& key) {
  const size_t at = text.find(key);
  if (at == std::string::npos) return "<missing " + key + ">";
  const size_t end = text.find_first_of(" \n", at);
  return text.substr(at + key.size(), end == std::string::npos ? std::string::npos : end - at - key.size());
}

std::string fence_name(const ::testing::TestParamInfo<InstanceIsolation>& p) {
  return p.param == InstanceIsolation::seccomp_filter ? "SeccompFilter" : "LandlockScope";
}

bool nice_limit_lendable() {
  rlimit mine{};
  if (::getrlimit(RLIMIT_NICE, &mine) != 0) return false;
  const rlimit twenty{20, 20};
  return mine.rlim_max >= 20 || (::setrlimit(RLIMIT_NICE, &twenty) == 0 && ::setrlimit(RLIMIT_NICE, &mine) == 0);
}

char proc_state(pid_t pid) {
  const auto stat = process_stat(pid);
  return stat ? stat->state : '?';
}

// FWP_PROBE overrides the probe's path (to run the latency tool on another machine).
std::string probe_path() {
  const char* p = std::getenv("FWP_PROBE");
  return p != nullptr ? p : PLUME_PROBE_PATH;
}
std::string echo_path() { return PLUME_ECHO_PATH; }
std::string kvindex_path() { return PLUME_KVINDEX_PATH; }
std::string liar_path() { return PLUME_LIAR_PATH; }

void FastTest::SetUp() {
  if (!running_as_root()) GTEST_SKIP() << "needs root: namespaces, cgroups and uid maps";
  const std::string parent =
      "plume-test-" + std::to_string(::getpid()) + "-fast" + std::to_string(g_counter++);
  auto host = plume::test::TemplateHost::create("plume-fast-staging", parent);
  ASSERT_TRUE(host.ok()) << host.error().message();
  host_ = std::move(*host);
  ASSERT_TRUE(host_->cgroups().create("t", CgroupLimits{}).ok());
  ASSERT_TRUE(host_->cgroups().create("t/tpl", CgroupLimits{}).ok());
}

void FastTest::TearDown() {
  tmpl_.reset();  // kills the keeper, hence the whole template namespace
  host_.reset();  // then what is left in the cgroups, and the staging directory
}

TemplateSpec FastTest::make_spec(const std::string& binary, bool io_uring) {
  TemplateSpec spec = host_->spec("t/probe" + std::to_string(g_counter++), binary, "probe", 200000,
                                  "t/tpl", io_uring);
  spec.cgroup_parent = "t";
  if (io_uring) spec.io_uring_ops = {IORING_OP_NOP, IORING_OP_READ};
  return spec;
}

Template& FastTest::start(TemplateSpec spec) {
  Template::Events ev;
  ev.instance_exited = [this](Instance& i) { exited_.push_back(i.id()); };
  ev.template_exited = [this](const ExitStatus&) { ++template_exits_; };
  ev.template_ready = [this] { ++template_readies_; };
  ev.failed = [this](const std::string& why) { failed_ = why; };
  auto t = Template::start(std::move(spec), loop_, ev);
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message());
  if (!t.ok()) fatal();
  tmpl_ = std::move(*t);
  EXPECT_TRUE(run_until([&] { return tmpl_->ready() || !failed_.empty(); }, 15s)) << "no hello";
  EXPECT_TRUE(tmpl_->ready()) << failed_;
  return *tmpl_;
}

Template& FastTest::start_echo_with_spare_channels(std::chrono::milliseconds refill_delay) {
  TemplateSpec spec = make_spec(echo_path());
  spec.refill_delay = refill_delay;
  Template& t = start(std::move(spec));
  EXPECT_TRUE(run_until([&] { return t.spare_channels() == t.spare_channel_target(); }));
  return t;
}

void FastTest::fatal() {
  // These helpers return references, so they cannot ASSERT: clean up what the test made (cgroups,
  // staging directory, the template's namespace), then stop.
  TearDown();
  std::abort();
}

bool FastTest::run_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  return loop_.run_until(pred, timeout);
}

std::string FastTest::ask(Instance& inst, const std::string& cmd, std::chrono::milliseconds timeout) {
  auto sent = inst.send(std::as_bytes(std::span(cmd.data(), cmd.size())));
  if (!sent) return "<send failed>";
  return reply(inst, timeout);
}

std::string FastTest::reply(Instance& inst, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Until it has been forked, the news comes through the loop (its fds wake it at once).
  while (inst.state() == InstanceState::forking && std::chrono::steady_clock::now() < deadline)
    (void)loop_.run_once(5ms);
  while (std::chrono::steady_clock::now() < deadline) {
    std::byte buf[2048];
    (void)loop_.run_once(0ms);
    auto got = inst.recv(buf, 2ms);
    if (got) return std::string(reinterpret_cast<const char*>(buf), *got);
    if (inst.exit()) return "<exited>";
  }
  return "<timeout>";
}

Instance& FastTest::start_instance(const std::string& first) {
  auto inst = tmpl_->start_instance(std::as_bytes(std::span(first.data(), first.size())));
  EXPECT_TRUE(inst.ok()) << (inst.ok() ? "" : inst.error().message());
  if (!inst.ok()) fatal();
  return **inst;
}

const InstanceExit& FastTest::wait_exit(Instance& inst, std::chrono::milliseconds timeout) {
  EXPECT_TRUE(run_until([&] { return inst.exit().has_value(); }, timeout)) << inst.name();
  static const InstanceExit none{ExitCause::lost, -1, -1, 0, 0, 0, -1};
  return inst.exit() ? *inst.exit() : none;
}

}  // namespace plume::fwp::test
