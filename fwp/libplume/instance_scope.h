// The per-instance Landlock scope: the cheap alternative to the per-instance seccomp filter
// (instance_filter.h) for images whose own seccomp filter already refuses io_uring, ptrace,
// process_vm_*, kcmp and pidfd_getfd (Plume's default profile without io_uring does).
//
// Each instance enters a Landlock domain of its own, scoped (Landlock ABI 6, Linux 6.12+) so that
// it cannot signal, or connect to the abstract unix sockets of, any process outside it: not its
// siblings, not the template, not the keeper. Landlock also refuses ptrace-type access into
// another domain. Entering a domain is one landlock_restrict_self() on a ruleset the template
// made once, where a seccomp filter costs a BPF JIT per instance (text_poke: about 0.3 ms of CPU
// on a VM).
#pragma once

namespace plume::libplume {

// In the template, once: a ruleset fd with the two scopes (and no file-system or network rules:
// the image's mounts and filter govern those). Returns the fd or -errno (-EOPNOTSUPP where the
// kernel's Landlock has no scopes, -ENOSYS/-EOPNOTSUPP where Landlock is off).
int make_instance_scope_ruleset();

// In the instance, before its descriptors are closed: enters a new domain. Needs no_new_privs,
// which the sandbox set. Returns 0 or an errno.
int enter_instance_scope(int ruleset_fd);

}  // namespace plume::libplume
