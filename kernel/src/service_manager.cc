#include "service_manager.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "plume/base/unique_fd.h"

namespace plume {

namespace {

// The variable's value, removed from the environment; "" when unset.
std::string take_env(const char* name) {
  const char* value = std::getenv(name);
  std::string out = value != nullptr ? value : "";
  ::unsetenv(name);
  return out;
}

}  // namespace

ServiceManager ServiceManager::from_environment() {
  ServiceManager m;
  m.socket_path_ = take_env("NOTIFY_SOCKET");
  const std::string usec = take_env("WATCHDOG_USEC");
  const std::string pid = take_env("WATCHDOG_PID");
  // The manager names the process it watches; a watchdog meant for a parent of plumed (plumed run
  // from a notify-type script) is not ours to pet.
  const bool ours = pid.empty() || std::strtoll(pid.c_str(), nullptr, 10) == ::getpid();
  const long long us = usec.empty() ? 0 : std::strtoll(usec.c_str(), nullptr, 10);
  if (ours && us > 0 && !m.socket_path_.empty())
    m.watchdog_interval_ = std::chrono::milliseconds(std::max(1LL, us / 2000));
  return m;
}

std::string ServiceManager::notify(std::string_view state) const {
  if (socket_path_.empty()) return {};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof addr.sun_path || (socket_path_[0] != '/' && socket_path_[0] != '@'))
    return "NOTIFY_SOCKET \"" + socket_path_ + "\" is not a usable socket address";
  std::memcpy(addr.sun_path, socket_path_.data(), socket_path_.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path_.size());
  UniqueFd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return std::string("socket: ") + std::strerror(errno);
  // One datagram: the manager reads it whole. MSG_NOSIGNAL: a manager gone away is an error here,
  // never a signal.
  if (::sendto(sock.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr),
               len) < 0)
    return "sendto " + socket_path_ + ": " + std::strerror(errno);
  return {};
}

}  // namespace plume
