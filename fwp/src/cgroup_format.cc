#include "cgroup_format.h"

#include <algorithm>
#include <charconv>

namespace plume::fwp::cgroup_format {
namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

bool is_at_or_below(std::string_view path, std::string_view root) {
  if (path == root) return true;
  if (root == "/") return !path.empty() && path[0] == '/';
  return path.size() > root.size() && path.substr(0, root.size()) == root && path[root.size()] == '/';
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

std::string unescape_mountinfo(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && field.size() - i >= 4) {
      auto oct = [](char c) { return c >= '0' && c <= '7'; };
      if (oct(field[i + 1]) && oct(field[i + 2]) && oct(field[i + 3])) {
        int v = (field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0');
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> parse_v1_hierarchies(std::string_view mountinfo,
                                                                      std::string_view mount_root) {
  std::vector<std::pair<std::string, std::string>> found;  // in mountinfo order
  for (std::string_view line : split(mountinfo, '\n')) {
    auto f = fields(line);
    // id parent maj:min root mountpoint options [optional...] - fstype source superoptions
    auto dash = std::find(f.begin(), f.end(), std::string_view("-"));
    if (f.size() < 5 || dash == f.end() || f.end() - dash < 4) continue;
    if (dash[1] != "cgroup") continue;
    std::string mount_point = unescape_mountinfo(f[4]);
    if (!is_at_or_below(mount_point, mount_root)) continue;
    for (std::string_view opt : split(dash[3], ',')) {
      for (std::string_view ctrl : kV1Controllers) {
        if (opt != ctrl) continue;
        bool seen = std::any_of(found.begin(), found.end(),
                                [&](const auto& p) { return p.first == ctrl; });
        if (!seen) found.emplace_back(std::string(ctrl), mount_point);
      }
    }
  }
  std::vector<std::pair<std::string, std::string>> ordered;
  for (std::string_view ctrl : kV1Controllers) {
    for (auto& p : found)
      if (p.first == ctrl) ordered.push_back(p);
  }
  return ordered;
}

bool list_has(std::string_view list, std::string_view name) {
  for (std::string_view line : split(list, '\n'))
    for (std::string_view f : fields(line))
      if (f == name) return true;
  return false;
}

std::optional<uint64_t> flat_keyed_value(std::string_view text, std::string_view key) {
  for (std::string_view line : split(text, '\n')) {
    auto f = fields(line);
    if (f.size() == 2 && f[0] == key) return parse_u64(f[1]);
  }
  return std::nullopt;
}

std::optional<uint64_t> single_value(std::string_view text) {
  auto f = fields(split(text, '\n')[0]);
  if (f.size() != 1) return std::nullopt;
  return parse_u64(f[0]);
}

std::string format_cpu_max(uint32_t cpu_percent) {
  if (cpu_percent == 0) return "max " + std::to_string(kCpuPeriodUs);
  return std::to_string(static_cast<uint64_t>(cpu_percent) * (kCpuPeriodUs / 100)) + " " +
         std::to_string(kCpuPeriodUs);
}

int64_t cfs_quota_us(uint32_t cpu_percent) {
  if (cpu_percent == 0) return -1;
  return static_cast<int64_t>(cpu_percent) * (kCpuPeriodUs / 100);
}

uint32_t clamp_cpu_weight(uint32_t weight) { return std::clamp<uint32_t>(weight, 1, 10000); }

uint64_t cpu_weight_to_shares(uint32_t weight) {
  uint64_t shares = static_cast<uint64_t>(weight) * 1024 / 100;
  return std::clamp<uint64_t>(shares, 2, 262144);
}

std::optional<std::string> check_relative(std::string_view relative) {
  if (relative.empty()) return std::nullopt;
  if (relative.front() == '/') return "must be relative: '" + std::string(relative) + "'";
  for (std::string_view part : split(relative, '/')) {
    if (part.empty() || part == "." || part == "..")
      return "bad path component in '" + std::string(relative) + "'";
    if (part.find('\0') != std::string_view::npos || part.find('\n') != std::string_view::npos)
      return "control character in '" + std::string(relative) + "'";
  }
  return std::nullopt;
}

}  // namespace plume::fwp::cgroup_format
