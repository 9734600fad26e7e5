// The spawn helper's records (fwp/src/spawn_wire.h): a spec survives the trip field for field,
// and a record that is cut short, too long or names a descriptor it does not carry is refused
// with a message, never half-read.
#include "spawn_wire.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace plume::fwp::detail {
namespace {

SandboxSpec full_spec(const CompiledFilter& filter, int fd_a, int fd_b) {
  SandboxSpec s;
  s.name = "w-0123abcd";
  s.argv = {"/bin/sh", "-c", "echo 'a b' \"c\""};
  s.env = {"PATH=/usr/bin:/bin", "EMPTY="};
  s.cwd = "/tmp";
  s.join_namespaces_of = fd_b;
  s.uid_map = {0, 300000, 65536};
  s.gid_map = {0, 400000, 1000};
  s.uid = 1000;
  s.gid = 1001;
  s.rootfs = {"/srv/rootfs", false, "/run/plume/root"};
  s.cgroup_procs_files = {"/sys/fs/cgroup/cpu/plume/t/w/cgroup.procs", "/sys/fs/cgroup/memory/plume/t/w/cgroup.procs"};
  s.cgroup_dir_fd = fd_a;
  s.rlimits = {{RLIMIT_CORE, 0, 0}, {RLIMIT_NOFILE, 1024, 2048}};
  s.seccomp = &filter;
  s.granted_fds = {fd_a, fd_b, fd_a};
  return s;
}

CompiledFilter some_filter() {
  CompiledFilter f;
  f.source = "default+io_uring";
  for (uint16_t i = 0; i < 300; ++i) f.program.push_back(sock_filter{i, static_cast<uint8_t>(i), 0, i * 7u});
  return f;
}

// What a socketpair round trip delivers: the same bytes, the fds as new descriptors.
Record through_socket(const std::vector<char>& bytes, const std::vector<int>& fds) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  EXPECT_EQ(send_record(sv[0], bytes, fds), 0);
  Record r;
  EXPECT_EQ(recv_record(sv[1], kMaxRecordBytes, r, /*nonblocking=*/true), 0);
  ::close(sv[0]);
  ::close(sv[1]);
  return r;
}

TEST(SpawnWire, ASpecArrivesFieldForFieldWithItsDescriptors) {
  const CompiledFilter filter = some_filter();
  const int a = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const int b = ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  const SandboxSpec sent = full_spec(filter, a, b);
  std::vector<int> fds;
  const std::vector<char> bytes = encode_spec(sent, fds);
  EXPECT_EQ(fds.size(), 5u);  // holder, cgroup dir, three granted (one twice)
  Record r = through_socket(bytes, fds);
  ASSERT_EQ(r.fds.size(), 5u);
  SandboxSpec got;
  CompiledFilter got_filter;
  ASSERT_EQ(decode_spec(r, got, got_filter), std::nullopt);
  EXPECT_EQ(got.name, sent.name);
  EXPECT_EQ(got.argv, sent.argv);
  EXPECT_EQ(got.env, sent.env);
  EXPECT_EQ(got.cwd, sent.cwd);
  EXPECT_EQ(got.uid_map.outside, 300000u);
  EXPECT_EQ(got.gid_map.count, 1000u);
  EXPECT_EQ(got.uid, 1000u);
  EXPECT_EQ(got.gid, 1001u);
  EXPECT_EQ(got.rootfs.path, "/srv/rootfs");
  EXPECT_FALSE(got.rootfs.read_only);
  EXPECT_EQ(got.rootfs.staging_dir, "/run/plume/root");
  EXPECT_EQ(got.cgroup_procs_files, sent.cgroup_procs_files);
  ASSERT_EQ(got.rlimits.size(), 2u);
  EXPECT_EQ(got.rlimits[1].hard, 2048u);
  ASSERT_EQ(got.seccomp, &got_filter);
  EXPECT_EQ(got_filter.source, filter.source);
  ASSERT_EQ(got_filter.program.size(), filter.program.size());
  EXPECT_EQ(got_filter.program[299].k, filter.program[299].k);
  // The descriptors are the received ones, and name the same files.
  ASSERT_EQ(got.granted_fds.size(), 3u);
  EXPECT_NE(got.granted_fds[0], a);
  EXPECT_NE(got.granted_fds[0], got.granted_fds[2]);  // sent twice, received twice
  EXPECT_EQ(::fcntl(got.join_namespaces_of, F_GETFL) & O_DIRECTORY, O_DIRECTORY);
  EXPECT_EQ(::fcntl(got.cgroup_dir_fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  ::close(a);
  ::close(b);
}

TEST(SpawnWire, EveryShortenedOrLengthenedRecordIsRefused) {
  const CompiledFilter filter = some_filter();
  SandboxSpec spec = full_spec(filter, -1, -1);
  spec.granted_fds.clear();
  std::vector<int> fds;
  const std::vector<char> bytes = encode_spec(spec, fds);
  ASSERT_TRUE(fds.empty());
  for (size_t len = 0; len < bytes.size(); ++len) {
    Record r;
    r.bytes.assign(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
    SandboxSpec got;
    CompiledFilter got_filter;
    EXPECT_NE(decode_spec(r, got, got_filter), std::nullopt) << "a record cut to " << len << " bytes was accepted";
  }
  Record longer;
  longer.bytes = bytes;
  longer.bytes.push_back(0);
  SandboxSpec got;
  CompiledFilter got_filter;
  EXPECT_NE(decode_spec(longer, got, got_filter), std::nullopt);
}

TEST(SpawnWire, ARecordNamingADescriptorItDoesNotCarryIsRefused) {
  const CompiledFilter filter = some_filter();
  const int a = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(a, 0);
  SandboxSpec spec = full_spec(filter, -1, -1);
  spec.granted_fds = {a};
  std::vector<int> fds;
  const std::vector<char> bytes = encode_spec(spec, fds);
  Record r;  // the bytes without their descriptor
  r.bytes = bytes;
  SandboxSpec got;
  CompiledFilter got_filter;
  const auto why = decode_spec(r, got, got_filter);
  ASSERT_NE(why, std::nullopt);
  EXPECT_NE(why->find("descriptor"), std::string::npos) << *why;
  ::close(a);
}

TEST(SpawnWire, AnAnswerArrivesWhole) {
  Answer sent;
  sent.ok = false;
  sent.step = 9;
  sent.err = 13;
  sent.detail = "pivot_root /run/plume/root";
  sent.reap = 2;
  sent.released = false;
  std::vector<char> bytes;
  encode_answer(sent, bytes);
  Answer got;
  ASSERT_EQ(decode_answer(bytes, got), std::nullopt);
  EXPECT_FALSE(got.ok);
  EXPECT_EQ(got.step, 9);
  EXPECT_EQ(got.err, 13);
  EXPECT_EQ(got.detail, sent.detail);
  EXPECT_EQ(got.reap, 2u);
  EXPECT_FALSE(got.released);
  bytes.pop_back();
  EXPECT_NE(decode_answer(bytes, got), std::nullopt);
}

}  // namespace
}  // namespace plume::fwp::detail
