peers = "plume_fwp plume_fwp_spin fork_exec"
