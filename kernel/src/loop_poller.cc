#include "loop_poller.h"

#include <poll.h>

namespace plume::kernel {

LoopPoller::~LoopPoller() {
  for (auto& [fd, w] : watches_)
    if (w.op) loop_.cancel(w.op);
}

void LoopPoller::watch(int fd, std::function<void()> on_ready) {
  unwatch(fd);
  Watch w;
  w.cb = std::make_shared<std::function<void()>>(std::move(on_ready));
  w.generation = next_generation_++;
  uint64_t gen = w.generation;
  watches_[fd] = std::move(w);
  arm(fd, gen);
}

void LoopPoller::unwatch(int fd) {
  auto it = watches_.find(fd);
  if (it == watches_.end()) return;
  if (it->second.op) loop_.cancel(it->second.op);
  watches_.erase(it);
}

void LoopPoller::arm(int fd, uint64_t generation) {
  auto it = watches_.find(fd);
  if (it == watches_.end() || it->second.generation != generation) return;
  it->second.op = loop_.poll(fd, POLLIN, [this, fd, generation](int) {
    auto w = watches_.find(fd);
    if (w == watches_.end() || w->second.generation != generation) return;
    w->second.op = 0;
    auto cb = w->second.cb;  // keeps the callback alive if it unwatches itself
    (*cb)();
    arm(fd, generation);  // level-triggered: watch again unless unwatched or replaced
  });
}

}  // namespace plume::kernel
