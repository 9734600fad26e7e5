peers = "fwp_pool fwp_spin bare_wake fwp_fork bare_fork fork_exec vfork_exec posix_spawn plume_fwp plume_exec"
