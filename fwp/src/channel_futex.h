// Shared (not FUTEX_PRIVATE_FLAG) futex wait/wake on a word of a MAP_SHARED mapping, so the two
// processes of a channel meet on the same kernel futex.
#pragma once

#include <chrono>
#include <cstdint>

namespace plume::fwp {

// Sleeps while *word == expected, at most `timeout`. Returns 0 when woken, when *word differed
// (EAGAIN) or on a signal (EINTR); ETIMEDOUT on timeout. Callers re-check their condition anyway.
int futex_wait_shared(uint32_t* word, uint32_t expected, std::chrono::nanoseconds timeout);
// Wakes one waiter on word.
void futex_wake_shared(uint32_t* word);

}  // namespace plume::fwp
