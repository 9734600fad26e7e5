peers = "fwp_pool bare_wake fwp_fork bare_fork fork_exec vfork_exec posix_spawn bwrap crun plume_fwp plume_exec"
