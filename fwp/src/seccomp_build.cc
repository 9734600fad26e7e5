#include "seccomp_build.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "plume/base/unique_fd.h"

namespace plume::fwp::seccomp_build {
namespace {

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

// libseccomp returns -errno.
SysError lib_error(std::string call, int rc, std::string object) {
  return SysError{std::move(call), -rc, std::move(object)};
}

}  // namespace

SysResult<CompiledFilter> compile(const Plan& plan, std::string source) {
  Ctx ctx(seccomp_init(plan.default_action));
  if (!ctx) return fail(plain_error("seccomp_init", source + ": invalid default action"));
  // no_new_privs is its own step of the containment pipeline, so loading must not set it.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0); rc != 0)
    return fail(lib_error("seccomp_attr_set", rc, "SCMP_FLTATR_CTL_NNP"));
  // A syscall made through another ABI (int 0x80, x32) than the profile names ends the process.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc != 0)
    return fail(lib_error("seccomp_attr_set", rc, "SCMP_FLTATR_ACT_BADARCH"));
  // A binary tree of syscall numbers: a filtered call costs O(log n) comparisons, not O(n).
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2); rc != 0)
    return fail(lib_error("seccomp_attr_set", rc, "SCMP_FLTATR_CTL_OPTIMIZE"));

  for (uint32_t arch : plan.extra_arches) {
    int rc = seccomp_arch_add(ctx.get(), arch);
    if (rc != 0 && rc != -EEXIST)
      return fail(lib_error("seccomp_arch_add", rc, source + ": arch " + std::to_string(arch)));
  }

  CompiledFilter out;
  out.source = std::move(source);
  out.warnings = plan.warnings;
  for (const Rule& rule : plan.rules) {
    int nr = seccomp_syscall_resolve_name(rule.name.c_str());
    if (nr == __NR_SCMP_ERROR) {
      out.warnings.push_back("unknown syscall '" + rule.name + "' skipped");
      continue;
    }
    // libseccomp refuses rules that repeat the default action; they would change nothing.
    if (rule.action == plan.default_action) continue;
    int rc = seccomp_rule_add_array(ctx.get(), rule.action, nr,
                                    static_cast<unsigned>(rule.args.size()), rule.args.data());
    if (rc != 0)
      return fail(lib_error("seccomp_rule_add", rc, out.source + ": syscall " + rule.name));
  }

  UniqueFd mem(memfd_create("plume-seccomp-bpf", MFD_CLOEXEC));
  if (!mem) return fail(sys_error("memfd_create", "plume-seccomp-bpf"));
  if (int rc = seccomp_export_bpf(ctx.get(), mem.get()); rc != 0)
    return fail(lib_error("seccomp_export_bpf", rc, out.source));
  struct stat st {};
  if (fstat(mem.get(), &st) != 0) return fail(sys_error("fstat", "plume-seccomp-bpf memfd"));
  const auto bytes = static_cast<size_t>(st.st_size);
  if (bytes == 0 || bytes % sizeof(sock_filter) != 0)
    return fail(plain_error("seccomp_export_bpf",
                            out.source + ": exported " + std::to_string(bytes) + " bytes"));
  if (bytes / sizeof(sock_filter) > BPF_MAXINSNS)
    return fail(plain_error("seccomp_export_bpf", out.source + ": " +
                                                      std::to_string(bytes / sizeof(sock_filter)) +
                                                      " instructions, over the kernel's 4096"));
  out.program.resize(bytes / sizeof(sock_filter));
  size_t done = 0;
  while (done < bytes) {
    ssize_t n = pread(mem.get(), reinterpret_cast<char*>(out.program.data()) + done, bytes - done,
                      static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(sys_error("pread", "plume-seccomp-bpf memfd"));
    done += static_cast<size_t>(n);
  }
  return out;
}

}  // namespace plume::fwp::seccomp_build
