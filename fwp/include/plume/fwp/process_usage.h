// What /proc says about one process: the fields of /proc/PID/stat that Plume reads (its state,
// parent and CPU ticks), and what the kernel has counted for it: its CPU time and its peak
// resident memory. For a process with no cgroup of its own (a featherweight instance in its
// template's group), these are the only figures that are not its own code's word.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace plume::fwp {

struct ProcessStat {
  char state = '?';          // R, S, D, Z, ... (field 3)
  pid_t parent = -1;         // field 4; 0 while the process is being released (reaped)
  uint64_t utime_ticks = 0;  // fields 14 and 15, in clock ticks (sysconf _SC_CLK_TCK)
  uint64_t stime_ticks = 0;
};

// /proc/PID/stat of `pid` (in our pid namespace); nullopt once it is gone or unreadable. Read by
// pid: a caller that holds a pidfd checks afterwards that the process is still alive, else the
// pid may have been another process's by then.
std::optional<ProcessStat> process_stat(pid_t pid);

// The same from the text of /proc/PID/stat (for tests).
std::optional<ProcessStat> parse_process_stat(const char* stat);

struct ProcessUsage {
  uint64_t cpu_ns = 0;          // utime + stime, at the clock tick's granularity (10 ms)
  uint64_t peak_rss_bytes = 0;  // VmHWM: shared pages (a template's, inherited) included
};

// The figures of process `pid`, as process_stat reads it (and with the same caveat).
std::optional<ProcessUsage> process_usage(pid_t pid);

// The same from the texts of /proc/PID/stat and /proc/PID/status (for tests).
std::optional<ProcessUsage> parse_process_usage(const char* stat, const char* status, long ticks_per_second);

}  // namespace plume::fwp
