// The spawn helper's socket protocol (spawn_service.cc): a SandboxSpec, or the helper's answer,
// as one SOCK_SEQPACKET record with the descriptors it names attached by SCM_RIGHTS. Both ends
// are Plume's own processes built from the same sources, so the layout is plain host-endian
// fields; a record that does not decode is still refused with a message, never trusted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "plume/base/unique_fd.h"
#include "plume/fwp/sandbox_spec.h"
#include "plume/fwp/seccomp_profile.h"

namespace plume::fwp::detail {

// Descriptors a record may carry: a spec's granted fds, its namespace holder and cgroup directory;
// an answer's pidfd, status and release pipes and the children its receiver must reap.
constexpr size_t kMaxRecordFds = 64;
// A seccomp program of the largest size a kernel loads (BPF_MAXINSNS * 8 bytes) fits, with room.
constexpr size_t kMaxRecordBytes = 64 * 1024 * 8 + 64 * 1024;

struct Record {
  std::vector<char> bytes;
  std::vector<UniqueFd> fds;  // received: owned; see send_record for sending
};

// Sends bytes with `fds` attached (they stay open here). Returns 0 or an errno.
int send_record(int sock, const std::vector<char>& bytes, const std::vector<int>& fds);
// Receives one record of at most max_bytes. Returns 0, an errno, or EPIPE on end of file. A record
// with truncated data or descriptors is refused (EMSGSIZE) and its descriptors are closed.
// `nonblocking`: EAGAIN when no record is queued.
int recv_record(int sock, size_t max_bytes, Record& out, bool nonblocking);

// The spec as bytes; `fds` receives the descriptors it names, in the order the bytes index them.
std::vector<char> encode_spec(const SandboxSpec& spec, std::vector<int>& fds);
// Rebuilds a spec from a record. The spec's fds are the record's (still owned by `record`), and
// its seccomp program is `filter`'s. nullopt, or what was wrong.
std::optional<std::string> decode_spec(const Record& record, SandboxSpec& spec, CompiledFilter& filter);

// The helper's answer. On success fds are: pidfd, status pipe, release pipe, then `reap` more;
// on failure only the `reap` ones: children of the receiver (CLONE_PARENT) it must wait for.
struct Answer {
  bool ok = false;
  int32_t pid = -1;
  uint8_t step = 0;  // Step, on failure
  int32_t err = 0;
  std::string detail;
  uint32_t reap = 0;
  bool released = true;  // false: the receiver releases the child (one byte on the release pipe)
};
// Into `out`, replacing what it held (its capacity is kept).
void encode_answer(const Answer& answer, std::vector<char>& out);
std::optional<std::string> decode_answer(const std::vector<char>& bytes, Answer& answer);

}  // namespace plume::fwp::detail
