// Human output of the CLI: aligned text tables and the small formatters their cells use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace plume::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void add_row(std::vector<std::string> cells);
  // Columns left-aligned, separated by two spaces; the last column is not padded.
  std::string render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

std::string human_bytes(uint64_t bytes);          // 0 → "0", 1536 → "1.5K", 268435456 → "256M"
std::string human_age(int64_t seconds);           // 42 → "42s", 90 → "1m30s", 7200 → "2h0m", days → "3d"
std::string cpu_seconds(uint64_t ns);             // 12345678 → "0.01s"
std::string truncate(const std::string& s, size_t max);  // "abcdef", 4 → "abc…"-style with "..."

}  // namespace plume::cli
