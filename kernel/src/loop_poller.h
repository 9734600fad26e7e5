// LoopPoller: fwp's Poller (level-triggered readability watches) on plumed's io_uring loop, so
// templates and warm pools are driven by the same loop as everything else in the control core.
#pragma once

#include <functional>
#include <map>
#include <memory>

#include "plume/fwp/template.h"
#include "plume/kernel/event_loop.h"

namespace plume::kernel {

class LoopPoller final : public fwp::Poller {
 public:
  explicit LoopPoller(EventLoop& loop) : loop_(loop) {}
  ~LoopPoller() override;
  void watch(int fd, std::function<void()> on_ready) override;
  void unwatch(int fd) override;
  size_t watched() const { return watches_.size(); }

 private:
  struct Watch {
    std::shared_ptr<std::function<void()>> cb;
    EventLoop::OpId op = 0;
    uint64_t generation = 0;  // a re-watch of the same fd inside a callback starts a new one
  };
  void arm(int fd, uint64_t generation);

  EventLoop& loop_;
  std::map<int, Watch> watches_;
  uint64_t next_generation_ = 1;
};

}  // namespace plume::kernel
