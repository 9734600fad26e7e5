#include "support/template_host.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace plume::test {

const fwp::CompiledFilter& default_filter(bool io_uring) {
  static const fwp::CompiledFilter plain = [] {
    auto f = fwp::compile_default_profile(fwp::SeccompOptions{false});
    if (!f) std::abort();
    return *f;
  }();
  static const fwp::CompiledFilter uring = [] {
    auto f = fwp::compile_default_profile(fwp::SeccompOptions{true});
    if (!f) std::abort();
    return *f;
  }();
  return io_uring ? uring : plain;
}

SysResult<std::unique_ptr<TemplateHost>> TemplateHost::create(const std::string& prefix,
                                                              const std::string& cgroup_parent) {
  std::unique_ptr<TemplateHost> host(new TemplateHost());
  std::string dir = "/tmp/" + prefix + "-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) return fail(sys_error("mkdtemp", dir));
  host->staging_ = dir;
  // Instances run as an unprivileged uid of the tenant's range: they must traverse it.
  if (::chmod(dir.c_str(), 0755) != 0) return fail(sys_error("chmod", dir));
  auto mgr = fwp::CgroupManager::open("/sys/fs/cgroup", cgroup_parent);
  if (!mgr) return fail(mgr.error());
  host->cgroups_.emplace(std::move(*mgr));
  if (auto ok = host->cgroups_->create_root(); !ok) return fail(ok.error());
  return host;
}

TemplateHost::~TemplateHost() {
  if (cgroups_) {
    (void)cgroups_->kill_all("");
    (void)cgroups_->remove("");
  }
  if (!staging_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(staging_, ec);
  }
}

fwp::TemplateSpec TemplateHost::spec(const std::string& name, const std::string& binary,
                                     const std::string& argv0, uint32_t id_base,
                                     const std::string& group, bool io_uring) {
  fwp::TemplateSpec spec;
  spec.name = name;
  spec.binary = binary;
  spec.sandbox.argv = {argv0};
  spec.sandbox.env = {"PATH=/usr/bin:/bin", "HOME=/tmp", "LC_ALL=C"};
  spec.sandbox.uid_map = fwp::IdMap{0, id_base, 65536};
  spec.sandbox.gid_map = fwp::IdMap{0, id_base, 65536};
  spec.sandbox.uid = 1000;
  spec.sandbox.gid = 1000;
  spec.sandbox.rootfs.staging_dir = staging_;
  spec.sandbox.seccomp = &default_filter(io_uring);
  spec.sandbox.rlimits = {fwp::Rlimit{RLIMIT_CORE, 0, 0}};
  spec.sandbox.cgroup_procs_files = cgroups_->procs_files(group);
  spec.stderr_fd = 2;
  spec.channel = fwp::ChannelGeometry{16, 1024, 0};
  spec.cgroups = &*cgroups_;
  spec.template_cgroup = group;
  return spec;
}

}  // namespace plume::test
