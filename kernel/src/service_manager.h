// plumed's side of the systemd notification protocol (sd_notify(3)), without libsystemd: a
// service of Type=notify says when it is ready and when it stops, and pets the watchdog that
// WatchdogSec= arms. Nothing is sent where no service manager asked for it (no NOTIFY_SOCKET).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>

namespace plume {

class ServiceManager {
 public:
  // Takes NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID out of the environment, so that nothing
  // plumed starts (its spawn helper, a worker) inherits them and speaks for plumed. Call it first,
  // before any thread or child exists.
  static ServiceManager from_environment();

  // Whether a service manager listens.
  bool listening() const { return !socket_path_.empty(); }
  // How often to send WATCHDOG=1 (half the manager's timeout, as sd_watchdog_enabled(3) advises);
  // zero when no watchdog is armed for this process.
  std::chrono::milliseconds watchdog_interval() const { return watchdog_interval_; }

  // Sends one newline-separated list of assignments ("READY=1\nSTATUS=…"). Returns "" or the
  // error; without a listener it does nothing and succeeds.
  std::string notify(std::string_view state) const;

 private:
  std::string socket_path_;  // a path, or "@name" for an abstract socket
  std::chrono::milliseconds watchdog_interval_{0};
};

}  // namespace plume
