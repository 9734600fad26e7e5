// Pure helpers of the cgroup manager: parsing what the kernel shows (mountinfo, flat-keyed files,
// controller lists) and formatting what it expects (cpu.max, cpu.shares). No I/O here, so every
// rule can be unit tested on any host, v1 or v2.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace plume::fwp::cgroup_format {

inline constexpr uint32_t kCpuPeriodUs = 100000;  // CFS period Plume uses on v1 and v2

// Controllers Plume places workers in. memory and pids are required; cpu and cpuacct optional.
inline constexpr std::string_view kV1Controllers[] = {"memory", "pids", "cpu", "cpuacct"};

// Undoes mountinfo's octal escapes ("\040" is a space).
std::string unescape_mountinfo(std::string_view field);

// From /proc/self/mountinfo text: the v1 ("cgroup") hierarchies mounted at or beneath mount_root
// that carry one of kV1Controllers, as (controller, mount point) pairs in kV1Controllers order.
// Co-mounted controllers ("cpu,cpuacct") map to the same mount point. First mount wins.
std::vector<std::pair<std::string, std::string>> parse_v1_hierarchies(std::string_view mountinfo,
                                                                      std::string_view mount_root);

// True when the whitespace-separated list (cgroup.controllers, cgroup.subtree_control) has `name`.
bool list_has(std::string_view list, std::string_view name);

// The value of `key` in a flat-keyed file ("oom_kill 3\nunder_oom 0\n"); nullopt when absent.
std::optional<uint64_t> flat_keyed_value(std::string_view text, std::string_view key);
// A single-number file ("123\n"); "max" reads as nullopt.
std::optional<uint64_t> single_value(std::string_view text);

// v2 cpu.max for a quota in percent of one CPU: "150000 100000" for 150. Zero: "max 100000".
std::string format_cpu_max(uint32_t cpu_percent);
// v1 cpu.cfs_quota_us for a quota in percent of one CPU; -1 (unlimited) for zero.
int64_t cfs_quota_us(uint32_t cpu_percent);
// v2 cpu.weight, clamped to the kernel's range [1, 10000].
uint32_t clamp_cpu_weight(uint32_t weight);
// v1 cpu.shares for a v2-style weight: weight*1024/100, clamped to [2, 262144].
uint64_t cpu_weight_to_shares(uint32_t weight);

// A path below Plume's parent: "", "tenant" or "tenant/worker". Refuses absolute paths, empty,
// "." and ".." components, so no caller can escape the parent. Returns an explanation on error.
std::optional<std::string> check_relative(std::string_view relative);

}  // namespace plume::fwp::cgroup_format
