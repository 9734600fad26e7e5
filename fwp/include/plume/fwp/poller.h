// Poller: what the featherweight-process controller (Template, TenantNamespaces) needs from an
// event loop, and PollLoop, a poll(2) driver of it for tests, benchmarks and tools. plumed
// implements Poller on its io_uring loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

namespace plume::fwp {

// What the controller needs from an event loop: level-triggered readability callbacks.
class Poller {
 public:
  virtual ~Poller() = default;
  // Calls on_ready whenever fd is readable or hung up, until unwatch(fd). One watch per fd;
  // watching a watched fd replaces its callback. Callbacks may watch and unwatch any fd. The
  // controller tolerates spurious calls (it re-checks readiness), but an implementation should
  // not deliver readiness seen for a closed fd to a new watch of the same number.
  virtual void watch(int fd, std::function<void()> on_ready) = 0;
  virtual void unwatch(int fd) = 0;
};

// A Poller on poll(2), for tests, benchmarks and tools.
class PollLoop final : public Poller {
 public:
  void watch(int fd, std::function<void()> on_ready) override;
  void unwatch(int fd) override;
  // Waits up to `timeout` for one round of readiness and runs the callbacks. False on timeout.
  bool run_once(std::chrono::milliseconds timeout);
  // Runs rounds until done() is true (true) or `timeout` passed (false).
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);
  size_t watched() const { return watches_.size(); }

 private:
  struct Watch {
    std::shared_ptr<std::function<void()>> cb;
    uint64_t id = 0;  // a re-used fd number gets a new id: stale readiness is not delivered to it
  };
  std::map<int, Watch> watches_;
  uint64_t next_id_ = 1;
};

}  // namespace plume::fwp
