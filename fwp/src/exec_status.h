// The exec-status pipe's wire format. The child writes one fixed-size record when a step fails and
// then exits; the pipe is O_CLOEXEC, so a successful execve closes it and the parent reads EOF.
// The child side is async-signal-safe: no allocation, no locks, one write(2).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "plume/fwp/spawner.h"

namespace plume::fwp::detail {

// What a child step returns: err == 0 means success; otherwise the call and object that failed.
// `call` and `object` point at string literals or at strings prepared by the parent before clone.
struct StepFailure {
  int err = 0;
  const char* call = nullptr;
  const char* object = nullptr;
  bool ok() const { return err == 0; }
};
inline StepFailure step_ok() { return {}; }
// Captures errno at the call site (errno 0 is turned into EIO so a failure is never "success").
StepFailure step_errno(const char* call, const char* object = nullptr);

struct ExecStatusRecord {
  uint32_t magic = 0;
  uint32_t step = 0;
  int32_t err = 0;
  char detail[244] = {};
};
static_assert(sizeof(ExecStatusRecord) <= 256, "one atomic pipe write");
inline constexpr uint32_t kExecStatusMagic = 0x504c4d45;  // "PLME"

// Child side: writes {step, err, "call object"} to fd and _exit(127)s.
[[noreturn]] void report_and_exit(int fd, Step step, const StepFailure& failure) noexcept;

// Parent side: reads one record; nullopt on EOF without data (execve succeeded).
std::optional<SpawnError> read_record(int fd);

}  // namespace plume::fwp::detail
