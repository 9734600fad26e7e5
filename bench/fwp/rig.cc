#include "rig.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string_view>

#include "plume/fwp/cgroup.h"

namespace plume::bench {

using namespace std::chrono_literals;

namespace {

constexpr std::string_view kRigPrefix = "plume-bench-fwp-";

// Whether `name` is "plume-bench-fwp-<pid>[-...]" and that process is gone (not merely another
// user's).
bool left_by_a_gone_rig(const std::string& name) {
  if (name.rfind(kRigPrefix, 0) != 0) return false;
  char* end = nullptr;
  const long pid = std::strtol(name.c_str() + kRigPrefix.size(), &end, 10);
  if (pid <= 0 || (*end != '\0' && *end != '-')) return false;
  return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

// A benchmark killed before its destructors ran (SIGINT, SIGTERM) leaves its cgroup parent, with
// whatever was still in it, and its staging directory behind. Like plumed's cleanup at start-up,
// the next run removes those of every process that is gone. Best effort.
void remove_what_dead_rigs_left() {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::set<std::string> parents;
  auto look_in = [&](const fs::path& dir) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (e.is_directory(ec) && left_by_a_gone_rig(name)) parents.insert(name);
    }
  };
  look_in("/sys/fs/cgroup");  // v2
  for (const auto& e : fs::directory_iterator("/sys/fs/cgroup", ec)) {
    if (e.is_directory(ec)) look_in(e.path());  // v1: one hierarchy per directory
  }
  for (const auto& name : parents) {
    auto cgroups = fwp::CgroupManager::open("/sys/fs/cgroup", name);
    if (!cgroups) continue;
    (void)cgroups->kill_all("");
    (void)cgroups->remove("");
  }
  for (const auto& e : fs::directory_iterator("/tmp", ec)) {
    if (e.is_directory(ec) && left_by_a_gone_rig(e.path().filename().string())) fs::remove_all(e.path(), ec);
  }
}

}  // namespace

SysResult<std::unique_ptr<Rig>> Rig::create(std::string binary, std::string ns_holder) {
  remove_what_dead_rigs_left();
  std::unique_ptr<Rig> rig(new Rig());
  rig->binary_ = std::move(binary);
  rig->ns_holder_ = std::move(ns_holder);
  // Both named after this process, so that a later run can tell they are left over.
  const std::string mine = std::string(kRigPrefix) + std::to_string(::getpid());
  auto host = test::TemplateHost::create(mine, mine);
  if (!host) return fail(host.error());
  rig->host_ = std::move(*host);
  return rig;
}

Rig::~Rig() {
  templates_.clear();  // ends each template's processes (its cgroup) and reaps its keeper
  holders_.clear();    // then the tenants' namespaces
  host_.reset();       // then what is left in the cgroups, and the staging directory
}

std::vector<pid_t> Rig::holder_pids() const {
  std::vector<pid_t> out;
  for (const auto& [index, h] : holders_) out.push_back(h->pid());
  return out;
}

SysResult<fwp::SandboxSpec> Rig::exec_spec() {
  if (auto ok = host_->cgroups().create("exec", fwp::CgroupLimits{}); !ok) return fail(ok.error());
  if (!devnull_) devnull_.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull_) return fail(sys_error("open", "/dev/null"));
  fwp::SandboxSpec sb = host_->spec("exec", "/bin/true", "/bin/true", 300000u, "exec").sandbox;
  sb.name = "exec";
  sb.granted_fds = {devnull_.get(), devnull_.get(), devnull_.get()};
  return sb;
}

SysResult<fwp::Template*> Rig::start_template(int tenant_index, const std::string& image,
                                             size_t pool_size, size_t spinning, bool huge_text) {
  const std::string tenant = "t" + std::to_string(tenant_index);
  if (auto ok = host_->cgroups().create(tenant, fwp::CgroupLimits{}); !ok) return fail(ok.error());
  const std::string group = tenant + "/" + image;
  if (auto ok = host_->cgroups().create(group, fwp::CgroupLimits{}); !ok) return fail(ok.error());
  const uint32_t id_base = 300000u + static_cast<uint32_t>(tenant_index) * 65536u;
  fwp::TemplateSpec spec =
      host_->spec(tenant + "/" + image, binary_, "first_handler", id_base, group);
  // PLUME_FWP_TRACE=1 in the bench's environment: templates and instances print their step times.
  if (std::getenv("PLUME_FWP_TRACE") != nullptr) spec.sandbox.env.push_back("PLUME_FWP_TRACE=1");
  if (std::getenv("PLUME_NO_SHARE_TEXT") != nullptr) spec.sandbox.env.push_back("PLUME_NO_SHARE_TEXT=1");
  spec.pool_size = pool_size;
  spec.spinning_standbys = spinning;
  spec.huge_text = huge_text && std::getenv("PLUME_NO_HUGE_TEXT") == nullptr;
  // For A/B runs, from the bench's environment: PLUME_NO_STEER=1 wakes pooled instances where
  // they parked (TemplateSpec::steer_wakeups off); PLUME_REFILL_US=N sets refill_delay.
  if (std::getenv("PLUME_NO_STEER") != nullptr) spec.steer_wakeups = false;
  if (const char* us = std::getenv("PLUME_REFILL_US")) spec.refill_delay = std::chrono::microseconds(std::atol(us));
  spec.cgroup_mode = fwp::InstanceCgroups::shared;
  spec.isolation = fwp::InstanceIsolation::landlock_scope;  // as plumed picks for this image
  auto& holder = holders_[tenant_index];
  if (!holder && !ns_holder_.empty()) {
    fwp::SandboxSpec sb = spec.sandbox;
    sb.name = tenant;
    sb.cgroup_procs_files.clear();  // it stays in ours, as plumed's stay in plumed's
    auto made = fwp::TenantNamespaces::create(std::move(sb), ns_holder_);
    if (!made) return fail(made.error());
    holder = std::move(*made);
  }
  if (holder) spec.sandbox.join_namespaces_of = holder->pidfd();

  fwp::Template::Events ev;
  ev.instance_exited = [this](fwp::Instance& i) { exited_at_[&i] = monotonic_ns(); };
  ev.failed = [this, name = spec.name](const std::string& why) { failed_ = name + ": " + why; };
  auto t = fwp::Template::start(std::move(spec), loop_, ev);
  if (!t) return fail(t.error());
  fwp::Template* raw = t->get();
  templates_.push_back(std::move(*t));
  if (!loop_.run_until([&] { return raw->ready() || !failed_.empty(); }, 20s) || !raw->ready()) {
    return fail(plain_error("template " + tenant + "/" + image,
                            failed_.empty() ? "no hello within 20 s" : failed_));
  }
  return raw;
}

bool Rig::fill_pools(std::chrono::milliseconds timeout) {
  return loop_.run_until(
      [&] {
        for (auto& t : templates_) {
          if (t->pool_ready() < t->spec().pool_size) return false;
        }
        return true;
      },
      timeout);
}

SysResult<Rig::Timed> Rig::start_and_wait(fwp::Template& t, std::span<const std::byte> msg) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto r = try_start(t, msg);
    if (!r) return fail(r.error());
    if (*r) return **r;
    ++retried_;
  }
  return fail(plain_error("template " + t.spec().name, "5 starts in a row ended `lost`"));
}

// nullopt: the controller reported the instance lost.
SysResult<std::optional<Rig::Timed>> Rig::try_start(fwp::Template& t, std::span<const std::byte> msg) {
  Timed r;
  r.t0 = monotonic_ns();
  auto started = t.start_instance(msg);
  if (!started) return fail(started.error());
  fwp::Instance& inst = **started;
  r.path = inst.path();
  const std::string what = "instance " + inst.name();
  // A forked instance needs the loop (the template's answer, then its first message); a pooled
  // one has its message already.
  if (!loop_.run_until([&] { return inst.state() != fwp::InstanceState::forking || inst.exit(); }, 10s)) {
    return fail(plain_error(what, "not forked within 10 s"));
  }
  std::byte buf[1024];
  size_t got = 0;
  for (;;) {
    auto rcv = inst.recv(buf, 2ms);
    if (rcv) {
      got = *rcv;
      break;
    }
    if (rcv.error() != fwp::ChannelError::timeout) {
      return fail(plain_error(what, std::string("recv: ") + fwp::channel_error_name(rcv.error())));
    }
    (void)loop_.run_once(0ms);
    if (inst.exit()) {
      if (inst.exit()->cause != fwp::ExitCause::lost) {
        const auto& ex = *inst.exit();
        std::fprintf(stderr, "fwp_bench: %s exited without replying: %s code %d signal %d\n", what.c_str(),
                     fwp::exit_cause_name(ex.cause), ex.code, ex.signal);
        ++no_reply_;
        if (no_reply_ > 10) return fail(plain_error(what, "more than 10 instances exited without replying"));
        exited_at_.erase(&inst);
        t.forget(inst.id());
        return std::optional<Timed>();
      }
      break;
    }
    if (monotonic_ns() - r.t0 > 10'000'000'000) return fail(plain_error(what, "no reply within 10 s"));
  }
  r.t_reply = monotonic_ns();
  if (inst.exit() && inst.exit()->cause == fwp::ExitCause::lost) {
    exited_at_.erase(&inst);  // the address may be reused by the next instance
    t.forget(inst.id());
    return std::optional<Timed>();
  }
  if (got != 8 + msg.size() || std::memcmp(buf + 8, msg.data(), msg.size()) != 0) {
    return fail(plain_error(what, "reply is not [timestamp][the message]"));
  }
  uint64_t t1 = 0;
  std::memcpy(&t1, buf, sizeof t1);
  r.t1 = static_cast<int64_t>(t1);
  if (!loop_.run_until([&] { return exited_at_.count(&inst) != 0; }, 10s)) {
    return fail(plain_error(what, "exit not observed within 10 s"));
  }
  r.t2 = exited_at_[&inst];
  exited_at_.erase(&inst);
  const auto& ex = *inst.exit();
  if (ex.cause == fwp::ExitCause::lost) {
    exited_at_.erase(&inst);  // the address may be reused by the next instance
    t.forget(inst.id());
    return std::optional<Timed>();
  }
  if (ex.cause != fwp::ExitCause::exit || ex.code != 0) {
    return fail(plain_error(what, std::string("ended with ") + fwp::exit_cause_name(ex.cause) +
                                      " code " + std::to_string(ex.code)));
  }
  t.forget(inst.id());
  return std::optional<Timed>(r);
}

}  // namespace plume::bench
