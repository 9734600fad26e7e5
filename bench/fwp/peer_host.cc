#include "peer_host.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace plume::bench {
namespace {

// One record each way on a SOCK_SEQPACKET pair: the caller sends a peer's index, the host a Reply
// (after start(), one Reply with ok set when every peer was made).
struct Reply {
  int32_t ok = 0;
  Sample sample;
  char error[240] = {};
};

void set_error(Reply& r, const std::string& message) {
  const size_t n = std::min(message.size(), sizeof r.error - 1);
  std::memcpy(r.error, message.data(), n);
  r.error[n] = '\0';
}

bool send_reply(int sock, const Reply& r) {
  ssize_t n;
  do n = ::send(sock, &r, sizeof r, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(sizeof r);
}

[[noreturn]] void serve(int sock, const std::vector<std::string>& names, const PeerEnv& env) {
  std::vector<std::unique_ptr<Peer>> peers;
  Reply made;
  made.ok = 1;
  for (const auto& n : names) {
    peers.push_back(make_local_peer(n, env));
    if (!peers.back()) {
      made.ok = 0;
      set_error(made, "not a local peer: " + n);
      break;
    }
  }
  if (!send_reply(sock, made) || made.ok == 0) ::_exit(1);
  for (;;) {
    uint32_t index = 0;
    ssize_t n;
    do n = ::recv(sock, &index, sizeof index, 0); while (n < 0 && errno == EINTR);
    if (n == 0) ::_exit(0);  // the caller is done
    Reply r;
    if (n != sizeof index || index >= peers.size()) {
      set_error(r, "bad request");
    } else if (auto s = peers[index]->start_once(); s) {
      r.ok = 1;
      r.sample = *s;
    } else {
      set_error(r, s.error().message());
    }
    if (!send_reply(sock, r)) ::_exit(1);
  }
}

}  // namespace

class LocalPeerHost::Proxy final : public Peer {
 public:
  Proxy(LocalPeerHost& host, uint32_t index, std::string name) : host_(host), index_(index), name_(std::move(name)) {}
  const std::string& name() const override { return name_; }
  SysResult<Sample> start_once() override { return host_.start_in_host(index_, name_); }

 private:
  LocalPeerHost& host_;
  uint32_t index_;
  std::string name_;
};

SysResult<std::unique_ptr<LocalPeerHost>> LocalPeerHost::start(const std::vector<std::string>& names,
                                                               const PeerEnv& env) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return fail(sys_error("socketpair", "local peer host"));
  }
  UniqueFd ours(sv[0]), theirs(sv[1]);
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return fail(sys_error("fork", "local peer host"));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);  // the caller died before prctl
    ours.reset();
    serve(theirs.get(), names, env);
  }
  theirs.reset();
  auto host = std::unique_ptr<LocalPeerHost>(new LocalPeerHost(pid, std::move(ours), names));
  Reply made;
  ssize_t n;
  do n = ::recv(host->sock_.get(), &made, sizeof made, 0); while (n < 0 && errno == EINTR);
  if (n != sizeof made) return fail(plain_error("local peer host", "ended before making its peers"));
  if (made.ok == 0) return fail(plain_error("local peer host", made.error));
  return host;
}

LocalPeerHost::~LocalPeerHost() {
  sock_.reset();
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

std::unique_ptr<Peer> LocalPeerHost::peer(const std::string& name) {
  const auto it = std::find(names_.begin(), names_.end(), name);
  if (it == names_.end()) return nullptr;
  return std::make_unique<Proxy>(*this, static_cast<uint32_t>(it - names_.begin()), name);
}

SysResult<Sample> LocalPeerHost::start_in_host(uint32_t index, const std::string& name) {
  ssize_t n;
  do n = ::send(sock_.get(), &index, sizeof index, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  if (n != sizeof index) return fail(sys_error("send", "local peer host, " + name));
  Reply r;
  do n = ::recv(sock_.get(), &r, sizeof r, 0); while (n < 0 && errno == EINTR);
  if (n != sizeof r) return fail(plain_error(name, "the local peer host ended"));
  if (r.ok == 0) return fail(plain_error(name, r.error));
  return r.sample;
}

}  // namespace plume::bench
