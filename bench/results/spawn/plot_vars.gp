peers = "fork_exec vfork_exec posix_spawn bwrap crun plume"
