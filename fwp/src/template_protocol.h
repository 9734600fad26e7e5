// The control protocol between the fwp controller (in plumed) and a template's keeper/template
// processes (libplume), over one AF_UNIX SOCK_SEQPACKET socket: fixed-size, versioned records,
// file descriptors passed with SCM_RIGHTS. Shared by fwp/src/template*.cc and fwp/libplume/.
//
// Staging: a channel's memfd reaches the template ahead of the FORK that uses it, in a STAGE
// record sent when the controller makes the channel (off any start path). The template keeps
// staged memfds oldest first and maps the oldest ahead, so the child forked with it inherits the
// mapping instead of calling mmap; a FORK names its channel by serial and carries no memfd. The
// controller restages its channels for each new template incarnation (the staged ones died with
// the last), and UNSTAGEs a channel whose instance ended before its FORK was sent. A FORK naming
// a channel the template does not hold gets `forked` with EBADF.
//
// Trust: after the app's init has run, the template is tenant code. The controller checks the
// magic, version, type and every field it uses, and treats a violation as a dead template.
#pragma once

#include <cstdint>

namespace plume::fwp::wire {

inline constexpr uint32_t kMagic = 0x504c4d46;  // "PLMF"
// 2: channels are staged ahead of their FORK. 3: an instance forked for a start sends no Ready.
// 4: channel layout version 2 (a space bell per ring): the channels it configures are another
// shape, so an app linked with an older libplume must be refused here, where it says why.
inline constexpr uint16_t kVersion = 4;

enum class Type : uint16_t {
  config = 1,          // controller → keeper, once, first: geometry, io_uring
  hello = 2,           // template → controller, after init: [pidfd of the template]
  fork = 3,            // controller → template: a staged channel; [stdout, stderr] if captured
  forked = 4,          // template → controller: ok → [pidfd of the instance]; else err
  exited = 5,          // keeper → controller: a child of the keeper was reaped
  template_exited = 6, // keeper → controller: the template died; waits for `restart`
  restart = 7,         // controller → keeper: fork a new template (runs init again)
  stage = 8,           // controller → template: [channel memfd] for a FORK to come
  unstage = 9,         // controller → template: drop a staged channel that no FORK will use
};

// io_uring opcodes fit in a byte; one bit per opcode.
struct OpcodeSet {
  uint64_t bits[4] = {0, 0, 0, 0};
  void add(uint8_t op) { bits[op / 64] |= uint64_t{1} << (op % 64); }
  bool has(uint8_t op) const { return (bits[op / 64] >> (op % 64)) & 1u; }
};

// One record, every type. Unused fields are zero.
struct Msg {
  uint32_t magic = kMagic;
  uint16_t version = kVersion;
  Type type = Type::config;
  uint64_t instance_id = 0;  // fork, forked
  int32_t err = 0;           // forked: 0 or the errno of clone
  int32_t pid = 0;           // hello/forked/exited/template_exited: pid in the template's pid ns
  int32_t wait_status = 0;   // exited, template_exited: as from wait4
  uint32_t generation = 0;   // hello, template_exited: template incarnation (1, 2, ...)
  uint64_t utime_ns = 0;     // exited: rusage of the reaped child
  uint64_t stime_ns = 0;
  uint64_t maxrss_kb = 0;
  uint64_t init_ns = 0;      // hello: how long the app's init took
  // config
  uint32_t slots = 0;
  uint32_t slot_size = 0;
  uint32_t ring_entries = 0;  // 0: no io_uring ring per instance
  uint32_t flags = 0;
  OpcodeSet ring_ops;
  int32_t template_nice = 0;  // config: nice of the template while it forks (0: unchanged)
  uint32_t channel = 0;       // stage, unstage, fork: the channel's serial (never 0)
  int32_t park_cpu = 0;       // fork, with kFlagParkOnCpu: the CPU a pool instance parks on
  uint8_t reserved[4] = {};   // zero; room for version-2 additions
};
static_assert(sizeof(Msg) == 128, "wire::Msg is a fixed-size record");

inline constexpr uint32_t kFlagInstanceFilter = 1u << 0;  // config: per-instance seccomp filter
inline constexpr uint32_t kFlagForPool = 1u << 1;  // fork: a pool instance; pre-fault, then park
// config: a per-instance Landlock scope instead of the filter where the kernel has scopes (the
// filter stays the fallback when kFlagInstanceFilter is also set)
inline constexpr uint32_t kFlagInstanceLandlock = 1u << 2;
// fork, with kFlagForPool: a spinning standby; polls its channel at SCHED_IDLE while parked
inline constexpr uint32_t kFlagSpinWhileParked = 1u << 3;
// fork, for a start: its first message is in the channel already (shared cgroups), so the
// template lets the child run before it answers
inline constexpr uint32_t kFlagMessageQueued = 1u << 4;
// fork, with kFlagForPool: park pinned to park_cpu (the supervisor's), so that the doorbell
// wakes it there without the supervisor's sched_setaffinity on the start path
inline constexpr uint32_t kFlagParkOnCpu = 1u << 5;
// config: the template moves its code onto transparent huge pages (TemplateSpec::huge_text);
// hello: it did, for at least one segment
inline constexpr uint32_t kFlagHugeText = 1u << 6;

// The first message a pool instance sends on its channel once set up and parked. An instance
// forked for a start (a FORK without kFlagForPool) sends none: its first record is the app's.
struct Ready {
  uint32_t magic = 0x59445252;  // "RRDY"
  int32_t pid = 0;              // self-reported, informational only
};

}  // namespace plume::fwp::wire
