// CgroupManager: Plume's cgroups on v2 (one unified tree) or v1 (one tree per controller).
// Every file access goes through read_text/write_text so each error names the file it concerned.
#include "plume/fwp/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <chrono>
#include <set>
#include <utility>

#include "cgroup_format.h"

namespace plume::fwp {
namespace fmt = cgroup_format;

namespace {

constexpr std::string_view kV2Controllers[] = {"memory", "pids", "cpu"};
// v1 offers no "group became empty" notification, so kill_all polls cgroup.procs, bounded.
constexpr auto kKillWait = std::chrono::seconds(2);

SysResult<std::string> read_text(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail(sys_error("open", path));
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(sys_error("read", path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

SysResult<void> write_text(const std::string& path, std::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return fail(sys_error("open", path));
  // A limit write (v1 memory.memsw.limit_in_bytes, say) fails with EINTR whenever the writer has
  // a signal or task work pending, and io_uring's completions for plumed's own loop are task work:
  // the write changed nothing then, and returning to user space runs the work. Try again.
  ssize_t n;
  int tries = 0;
  do n = ::write(fd.get(), value.data(), value.size());
  while (n < 0 && errno == EINTR && ++tries < 100);
  if (n < 0) return fail(sys_error("write", path + " value=" + std::string(value)));
  if (static_cast<size_t>(n) != value.size())
    return fail(plain_error("write", path + ": short write of value=" + std::string(value)));
  return {};
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

SysResult<void> make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return fail(sys_error("mkdir", path));
  return {};
}

// Reads a single-number file; a missing optional file reads as 0.
SysResult<uint64_t> read_number(const std::string& path, bool optional) {
  auto text = read_text(path);
  if (!text) {
    if (optional && text.error().err == ENOENT) return uint64_t{0};
    return fail(text.error());
  }
  return fmt::single_value(*text).value_or(0);
}

SysResult<uint64_t> read_keyed(const std::string& path, std::string_view key, bool optional) {
  auto text = read_text(path);
  if (!text) {
    if (optional && text.error().err == ENOENT) return uint64_t{0};
    return fail(text.error());
  }
  return fmt::flat_keyed_value(*text, key).value_or(0);
}

void collect_pids(const std::string& dir, std::set<pid_t>& out) {
  if (auto text = read_text(dir + "/cgroup.procs")) {
    size_t pos = 0;
    const std::string& s = *text;
    while (pos < s.size()) {
      size_t end = s.find('\n', pos);
      if (end == std::string::npos) end = s.size();
      pid_t pid = 0;
      auto [ptr, ec] = std::from_chars(s.data() + pos, s.data() + end, pid);
      if (ec == std::errc() && ptr == s.data() + end && pid > 0) out.insert(pid);
      pos = end + 1;
    }
  }
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (e->d_type != DT_DIR || name == "." || name == "..") continue;
    collect_pids(dir + "/" + e->d_name, out);
  }
  ::closedir(d);
}

// Relative paths of every group at or below `dir` ("" for dir itself), depth first.
void collect_groups(const std::string& dir, const std::string& rel, std::set<std::string>& out) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  out.insert(rel);
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (e->d_type != DT_DIR || name == "." || name == "..") continue;
    collect_groups(dir + "/" + e->d_name, rel.empty() ? e->d_name : rel + "/" + e->d_name, out);
  }
  ::closedir(d);
}

// rmdir of dir and its descendants, children first. A missing directory is success.
SysResult<void> rmdir_tree(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return {};
    return fail(sys_error("opendir", dir));
  }
  std::vector<std::string> children;
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (e->d_type == DT_DIR && name != "." && name != "..") children.push_back(dir + "/" + e->d_name);
  }
  ::closedir(d);
  for (const auto& c : children) {
    if (auto r = rmdir_tree(c); !r) return r;
  }
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) return fail(sys_error("rmdir", dir));
  return {};
}

void short_pause(int round) {
  // 1 ms, growing to 10 ms: dying processes release their memory in a few ms.
  timespec ts{0, std::min(round + 1, 10) * 1000000L};
  ::nanosleep(&ts, nullptr);
}

SysResult<void> check(std::string_view what, std::string_view relative) {
  if (auto why = fmt::check_relative(relative)) return fail(plain_error(std::string(what), *why));
  return {};
}

}  // namespace

SysResult<CgroupManager> CgroupManager::open(std::string mount_root, std::string parent) {
  while (mount_root.size() > 1 && mount_root.back() == '/') mount_root.pop_back();
  if (parent.empty()) return fail(plain_error("cgroup open", "empty parent name"));
  if (auto r = check("cgroup open", parent); !r) return fail(r.error());

  CgroupManager m;
  m.mount_root_ = mount_root;
  m.parent_ = std::move(parent);

  struct statfs sfs {};
  if (::statfs(mount_root.c_str(), &sfs) != 0) return fail(sys_error("statfs", mount_root));
  if (sfs.f_type == CGROUP2_SUPER_MAGIC) {
    auto controllers = read_text(mount_root + "/cgroup.controllers");
    if (!controllers) return fail(controllers.error());
    for (std::string_view c : kV2Controllers) {
      if (!fmt::list_has(*controllers, c))
        return fail(plain_error("cgroup open", "cgroup2 at " + mount_root + " lacks the '" +
                                                   std::string(c) + "' controller (has: " +
                                                   *controllers + ")"));
    }
    m.version_ = CgroupVersion::v2;
    return m;
  }

  auto mountinfo = read_text("/proc/self/mountinfo");
  if (!mountinfo) return fail(mountinfo.error());
  m.v1_hierarchies_ = fmt::parse_v1_hierarchies(*mountinfo, mount_root);
  for (const char* required : {"memory", "pids"}) {
    bool have = std::any_of(m.v1_hierarchies_.begin(), m.v1_hierarchies_.end(),
                            [&](const auto& p) { return p.first == required; });
    if (!have)
      return fail(plain_error("cgroup open", mount_root + " is not a cgroup2 mount and has no v1 '" +
                                                 required + "' hierarchy beneath it"));
  }
  m.version_ = CgroupVersion::v1;
  return m;
}

std::vector<std::string> CgroupManager::hierarchy_roots() const {
  if (version_ == CgroupVersion::v2) return {mount_root_};
  std::vector<std::string> roots;
  for (const auto& [ctrl, path] : v1_hierarchies_)
    if (std::find(roots.begin(), roots.end(), path) == roots.end()) roots.push_back(path);
  return roots;
}

std::string CgroupManager::dir_in(const std::string& root, const std::string& relative) const {
  std::string d = root + "/" + parent_;
  if (!relative.empty()) d += "/" + relative;
  return d;
}

std::optional<std::string> CgroupManager::controller_dir(const std::string& controller,
                                                         const std::string& relative) const {
  if (version_ == CgroupVersion::v2) return dir_in(mount_root_, relative);
  for (const auto& [ctrl, path] : v1_hierarchies_)
    if (ctrl == controller) return dir_in(path, relative);
  return std::nullopt;
}

std::vector<std::string> CgroupManager::directories(const std::string& relative) const {
  std::vector<std::string> out;
  for (const auto& root : hierarchy_roots()) out.push_back(dir_in(root, relative));
  return out;
}

std::vector<std::string> CgroupManager::procs_files(const std::string& relative) const {
  std::vector<std::string> out;
  for (auto& d : directories(relative)) out.push_back(d + "/cgroup.procs");
  return out;
}

namespace {
// v2: a parent must list a controller in cgroup.subtree_control for its children to get it.
SysResult<void> enable_v2_controllers(const std::string& dir) {
  auto current = read_text(dir + "/cgroup.subtree_control");
  if (!current) return fail(current.error());
  for (std::string_view c : kV2Controllers) {
    if (fmt::list_has(*current, c)) continue;
    if (auto r = write_text(dir + "/cgroup.subtree_control", "+" + std::string(c)); !r) return r;
  }
  return {};
}
}  // namespace

SysResult<void> CgroupManager::create_root() {
  for (const auto& root : hierarchy_roots()) {
    std::string path = root;
    if (version_ == CgroupVersion::v2) {
      if (auto r = enable_v2_controllers(path); !r) return r;
    }
    size_t pos = 0;
    while (pos <= parent_.size()) {
      size_t end = parent_.find('/', pos);
      if (end == std::string::npos) end = parent_.size();
      path += "/" + parent_.substr(pos, end - pos);
      if (auto r = make_dir(path); !r) return r;
      // Tenants live below the parent, so every level down to the parent hands controllers on.
      if (version_ == CgroupVersion::v2) {
        if (auto r = enable_v2_controllers(path); !r) return r;
      }
      pos = end + 1;
    }
  }
  return {};
}

SysResult<void> CgroupManager::create(const std::string& relative, const CgroupLimits& limits) {
  if (relative.empty()) return fail(plain_error("cgroup create", "empty group name under " + parent_));
  if (auto r = check("cgroup create", relative); !r) return r;
  if (auto r = create_root(); !r) return r;
  for (const auto& root : hierarchy_roots()) {
    std::string path = dir_in(root, "");
    size_t pos = 0;
    while (pos <= relative.size()) {
      size_t end = relative.find('/', pos);
      if (end == std::string::npos) end = relative.size();
      path += "/" + relative.substr(pos, end - pos);
      if (auto r = make_dir(path); !r) return r;
      // v2's no-internal-process rule: only inner levels enable controllers; the leaf holds tasks.
      if (version_ == CgroupVersion::v2 && end != relative.size()) {
        if (auto r = enable_v2_controllers(path); !r) return r;
      }
      pos = end + 1;
    }
  }
  return apply_limits(relative, limits);
}

SysResult<void> CgroupManager::set_limits(const std::string& relative, const CgroupLimits& limits) const {
  if (relative.empty()) return fail(plain_error("cgroup limits", "empty group name under " + parent_));
  if (auto r = check("cgroup limits", relative); !r) return r;
  return apply_limits(relative, limits);
}

SysResult<void> CgroupManager::apply_limits(const std::string& relative,
                                            const CgroupLimits& limits) const {
  const bool v2 = version_ == CgroupVersion::v2;
  auto need = [&](const char* ctrl) -> SysResult<std::string> {
    if (auto d = controller_dir(ctrl, relative)) return *d;
    return fail(plain_error("cgroup limits", std::string("controller '") + ctrl +
                                                 "' is not mounted; cannot limit " + relative));
  };

  if (limits.memory_bytes != 0) {
    auto dir = need("memory");
    if (!dir) return fail(dir.error());
    std::string value = std::to_string(limits.memory_bytes);
    if (v2) {
      if (auto r = write_text(*dir + "/memory.max", value); !r) return r;
      // Without this a worker at its limit would push its pages to swap instead of failing.
      if (exists(*dir + "/memory.swap.max")) {
        if (auto r = write_text(*dir + "/memory.swap.max", "0"); !r) return r;
      }
    } else {
      const std::string mem = *dir + "/memory.limit_in_bytes";
      const std::string memsw = *dir + "/memory.memsw.limit_in_bytes";
      const bool have_memsw = exists(memsw);
      // The kernel keeps memsw >= mem: raise memsw first when lowering would otherwise be refused.
      auto r = write_text(mem, value);
      if (!r && r.error().err == EINVAL && have_memsw) {
        if (auto r2 = write_text(memsw, value); !r2) return r2;
        r = write_text(mem, value);
      }
      if (!r) return r;
      if (have_memsw) {
        if (auto r2 = write_text(memsw, value); !r2) return r2;
      }
    }
  }

  if (limits.pids_max != 0) {
    auto dir = need("pids");
    if (!dir) return fail(dir.error());
    if (auto r = write_text(*dir + "/pids.max", std::to_string(limits.pids_max)); !r) return r;
  }

  if (limits.cpu_percent != 0) {
    auto dir = need("cpu");
    if (!dir) return fail(dir.error());
    if (v2) {
      if (auto r = write_text(*dir + "/cpu.max", fmt::format_cpu_max(limits.cpu_percent)); !r) return r;
    } else {
      if (auto r = write_text(*dir + "/cpu.cfs_period_us", std::to_string(fmt::kCpuPeriodUs)); !r)
        return r;
      if (auto r = write_text(*dir + "/cpu.cfs_quota_us",
                              std::to_string(fmt::cfs_quota_us(limits.cpu_percent)));
          !r)
        return r;
    }
  }

  if (limits.cpu_weight != 0) {
    auto dir = need("cpu");
    if (!dir) return fail(dir.error());
    if (v2) {
      if (auto r = write_text(*dir + "/cpu.weight",
                              std::to_string(fmt::clamp_cpu_weight(limits.cpu_weight)));
          !r)
        return r;
    } else {
      if (auto r = write_text(*dir + "/cpu.shares",
                              std::to_string(fmt::cpu_weight_to_shares(limits.cpu_weight)));
          !r)
        return r;
    }
  }
  return {};
}

SysResult<UniqueFd> CgroupManager::open_dir_for_clone(const std::string& relative) const {
  if (version_ != CgroupVersion::v2) return UniqueFd{};
  if (auto r = check("cgroup open_dir_for_clone", relative); !r) return fail(r.error());
  std::string dir = dir_in(mount_root_, relative);
  int fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fail(sys_error("open", dir));
  return UniqueFd(fd);
}

SysResult<void> CgroupManager::attach(const std::string& relative, pid_t pid) const {
  if (relative.empty()) return fail(plain_error("cgroup attach", "empty group name under " + parent_));
  if (auto r = check("cgroup attach", relative); !r) return r;
  for (const auto& file : procs_files(relative)) {
    if (auto r = write_text(file, std::to_string(pid)); !r) return r;
  }
  return {};
}

SysResult<CgroupStats> CgroupManager::stats(const std::string& relative) const {
  if (auto r = check("cgroup stats", relative); !r) return fail(r.error());
  CgroupStats s;
  const bool v2 = version_ == CgroupVersion::v2;
  auto mem = controller_dir("memory", relative);
  auto pids = controller_dir("pids", relative);
  if (!mem || !pids) return fail(plain_error("cgroup stats", "memory or pids hierarchy missing"));
  if (!exists(*mem)) return fail(SysError{"stat", ENOENT, *mem});

  auto take = [](SysResult<uint64_t> r, uint64_t& into) -> SysResult<void> {
    if (!r) return fail(r.error());
    into = *r;
    return {};
  };
  SysResult<void> r;
  if (v2) {
    if (r = take(read_keyed(*mem + "/cpu.stat", "usage_usec", false), s.cpu_usage_ns); !r)
      return fail(r.error());
    s.cpu_usage_ns *= 1000;
    if (r = take(read_number(*mem + "/memory.peak", true), s.memory_peak_bytes); !r)
      return fail(r.error());
    if (r = take(read_number(*mem + "/memory.current", false), s.memory_current_bytes); !r)
      return fail(r.error());
    if (r = take(read_keyed(*mem + "/memory.events", "oom_kill", false), s.oom_kills); !r)
      return fail(r.error());
  } else {
    if (auto acct = controller_dir("cpuacct", relative)) {
      if (r = take(read_number(*acct + "/cpuacct.usage", false), s.cpu_usage_ns); !r)
        return fail(r.error());
    }
    if (r = take(read_number(*mem + "/memory.max_usage_in_bytes", false), s.memory_peak_bytes); !r)
      return fail(r.error());
    if (r = take(read_number(*mem + "/memory.usage_in_bytes", false), s.memory_current_bytes); !r)
      return fail(r.error());
    if (r = take(read_keyed(*mem + "/memory.oom_control", "oom_kill", false), s.oom_kills); !r)
      return fail(r.error());
  }
  if (r = take(read_keyed(*pids + "/pids.events", "max", false), s.pids_max_hits); !r)
    return fail(r.error());
  if (r = take(read_number(*pids + "/pids.current", false), s.pids_current); !r)
    return fail(r.error());
  return s;
}

std::vector<pid_t> CgroupManager::processes(const std::string& relative) const {
  std::set<pid_t> all;
  if (fmt::check_relative(relative)) return {};
  // v1: a process may sit in one hierarchy only (half-attached); the union sees it anyway.
  for (const auto& d : directories(relative)) collect_pids(d, all);
  return {all.begin(), all.end()};
}

SysResult<size_t> CgroupManager::kill_all(const std::string& relative) const {
  if (auto r = check("cgroup kill_all", relative); !r) return fail(r.error());
  const auto deadline = std::chrono::steady_clock::now() + kKillWait;
  std::set<pid_t> signalled;

  if (version_ == CgroupVersion::v2) {
    std::string kill_file = dir_in(mount_root_, relative) + "/cgroup.kill";
    if (exists(kill_file)) {
      for (pid_t p : processes(relative)) signalled.insert(p);
      if (auto r = write_text(kill_file, "1"); !r) return fail(r.error());
    }
  }

  for (int round = 0;; ++round) {
    std::vector<pid_t> pids = processes(relative);
    if (pids.empty()) return signalled.size();
    if (std::chrono::steady_clock::now() > deadline)
      return fail(plain_error("cgroup kill_all", dir_in(hierarchy_roots().front(), relative) + ": " +
                                                     std::to_string(pids.size()) +
                                                     " processes left after 2 s"));
    // Pin each process with a pidfd, then signal only those still listed afterwards: a pid that
    // exited and was reused by a process outside the group is never signalled.
    std::vector<std::pair<pid_t, UniqueFd>> pinned;
    for (pid_t p : pids) {
      int fd = static_cast<int>(::syscall(SYS_pidfd_open, p, 0));
      if (fd >= 0) pinned.emplace_back(p, UniqueFd(fd));
    }
    std::vector<pid_t> still = processes(relative);
    for (auto& [p, fd] : pinned) {
      if (!std::binary_search(still.begin(), still.end(), p)) continue;
      if (::syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0) == 0) signalled.insert(p);
    }
    short_pause(round);
  }
}

SysResult<void> CgroupManager::remove(const std::string& relative) const {
  if (auto r = check("cgroup remove", relative); !r) return r;
  bool busy = false;
  for (const auto& d : directories(relative)) {
    auto r = rmdir_tree(d);
    if (!r && r.error().err == EBUSY) {
      busy = true;
      continue;
    }
    if (!r) return r;
  }
  if (!busy) return {};
  if (auto k = kill_all(relative); !k) return fail(k.error());
  for (const auto& d : directories(relative)) {
    if (auto r = rmdir_tree(d); !r) return r;
  }
  return {};
}

SysResult<size_t> CgroupManager::cleanup_stale() {
  std::set<std::string> groups;
  for (const auto& root : hierarchy_roots()) collect_groups(dir_in(root, ""), "", groups);
  groups.erase("");
  if (groups.empty()) return size_t{0};
  // Everything below the parent goes, including a process stuck in the parent itself.
  if (auto k = kill_all(""); !k) return fail(k.error());
  for (const auto& root : hierarchy_roots()) {
    std::set<std::string> top;
    collect_groups(dir_in(root, ""), "", top);
    for (const auto& g : top) {
      if (g.empty() || g.find('/') != std::string::npos) continue;
      if (auto r = rmdir_tree(dir_in(root, g)); !r) return fail(r.error());
    }
  }
  return groups.size();
}

}  // namespace plume::fwp
