// What the kernel has counted for one process: its CPU time and its peak resident memory, read
// from /proc. For a process with no cgroup of its own (a featherweight instance in its
// template's group), this is the only figure that is not its own code's word.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace plume::fwp {

struct ProcessUsage {
  uint64_t cpu_ns = 0;          // utime + stime, at the clock tick's granularity (10 ms)
  uint64_t peak_rss_bytes = 0;  // VmHWM: shared pages (a template's, inherited) included
};

// The figures of process `pid` (in our pid namespace); nullopt once it is gone or unreadable.
// Read by pid: a caller that holds a pidfd checks afterwards that the process is still alive,
// else the pid may have been another process's by then.
std::optional<ProcessUsage> process_usage(pid_t pid);

// The same from the texts of /proc/PID/stat and /proc/PID/status (for tests).
std::optional<ProcessUsage> parse_process_usage(const char* stat, const char* status, long ticks_per_second);

}  // namespace plume::fwp
