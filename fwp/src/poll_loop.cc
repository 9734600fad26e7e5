// PollLoop: a Poller on poll(2) for tests, benchmarks and tools (plumed uses its io_uring loop).
#include <poll.h>

#include <cerrno>
#include <vector>

#include "plume/fwp/poller.h"

namespace plume::fwp {

void PollLoop::watch(int fd, std::function<void()> on_ready) {
  watches_[fd] = Watch{std::make_shared<std::function<void()>>(std::move(on_ready)), next_id_++};
}

void PollLoop::unwatch(int fd) { watches_.erase(fd); }

bool PollLoop::run_once(std::chrono::milliseconds timeout) {
  std::vector<pollfd> fds;
  std::vector<uint64_t> ids;
  fds.reserve(watches_.size());
  for (const auto& [fd, w] : watches_) {
    fds.push_back(pollfd{fd, POLLIN, 0});
    ids.push_back(w.id);
  }
  const int n = ::poll(fds.data(), fds.size(), static_cast<int>(timeout.count()));
  if (n <= 0) return false;
  for (size_t i = 0; i < fds.size(); ++i) {
    const pollfd& p = fds[i];
    if (p.revents == 0) continue;
    // A callback may have unwatched this fd, or closed it and watched a new fd of the same
    // number: deliver only to the watch that was polled, and keep its callback alive while it
    // runs even if it unwatches itself.
    auto it = watches_.find(p.fd);
    if (it == watches_.end() || it->second.id != ids[i]) continue;
    std::shared_ptr<std::function<void()>> cb = it->second.cb;
    (*cb)();
  }
  return true;
}

bool PollLoop::run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return done();
    (void)run_once(std::min(left, std::chrono::milliseconds(50)));
  }
  return true;
}

}  // namespace plume::fwp
