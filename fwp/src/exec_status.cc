#include "exec_status.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace plume::fwp::detail {
namespace {

// strlcat without libc's locale or allocation: safe in the child.
void append(char* buf, size_t cap, size_t& len, const char* s) {
  if (s == nullptr) return;
  while (*s != '\0' && len + 1 < cap) buf[len++] = *s++;
  buf[len] = '\0';
}

}  // namespace

StepFailure step_errno(const char* call, const char* object) {
  const int err = errno;
  return StepFailure{err != 0 ? err : EIO, call, object};
}

void report_and_exit(int fd, Step step, const StepFailure& failure) noexcept {
  ExecStatusRecord rec;
  rec.magic = kExecStatusMagic;
  rec.step = static_cast<uint32_t>(step);
  rec.err = failure.err;
  size_t len = 0;
  append(rec.detail, sizeof rec.detail, len, failure.call);
  if (failure.object != nullptr && failure.object[0] != '\0') {
    append(rec.detail, sizeof rec.detail, len, " ");
    append(rec.detail, sizeof rec.detail, len, failure.object);
  }
  // A short or failed write leaves the parent with EOF or a partial record; both are handled.
  ssize_t n;
  do {
    n = ::write(fd, &rec, sizeof rec);
  } while (n < 0 && errno == EINTR);
  ::_exit(127);
}

std::optional<SpawnError> read_record(int fd) {
  ExecStatusRecord rec;
  auto* bytes = reinterpret_cast<char*>(&rec);
  size_t got = 0;
  while (got < sizeof rec) {
    const ssize_t n = ::read(fd, bytes + got, sizeof rec - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SpawnError{Step::sync, errno, "read exec-status pipe"};
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got == 0) return std::nullopt;
  if (got < sizeof rec || rec.magic != kExecStatusMagic ||
      rec.step > static_cast<uint32_t>(Step::execve)) {
    return SpawnError{Step::sync, EPROTO,
                      "malformed exec-status record (" + std::to_string(got) + " bytes)"};
  }
  rec.detail[sizeof rec.detail - 1] = '\0';
  return SpawnError{static_cast<Step>(rec.step), rec.err, std::string(rec.detail)};
}

}  // namespace plume::fwp::detail
