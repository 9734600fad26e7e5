peers = "fwp_spin fwp_pool bare_wake fwp_fork bare_fork fork_exec"
