// Sending and receiving wire::Msg records (with at most kMaxRecordFds file descriptors) on the
// control socket. Plain errno returns: this file is compiled into libplume as well as into plume_fwp.
#pragma once

#include "template_protocol.h"

namespace plume::fwp::wire {

// A STAGE carries a channel memfd; a FORK, when output is captured, the stdout and stderr pipes
// (one more fits, for a record to come).
inline constexpr int kMaxRecordFds = 3;

// Sends one record, with `fd` (then `fd2`, `fd3`) attached by SCM_RIGHTS when >= 0 (a later one
// only with the earlier ones). Returns 0 or an errno.
int send_msg(int sock, const Msg& msg, int fd = -1, int fd2 = -1, int fd3 = -1);

// Receives one record. *fd_out gets the first attached fd (close-on-exec) or -1; `more_fds`, if
// given, the next `n_more` (each -1 when absent); fds beyond those are closed. Returns 0, an errno,
// EPIPE at end of stream, or EBADMSG for a record of the wrong size, magic or version (its fds
// are closed). With `nonblock` an empty socket gives EAGAIN.
int recv_msg(int sock, Msg& msg, int* fd_out, bool nonblock = false, int* more_fds = nullptr,
             int n_more = 0);

}  // namespace plume::fwp::wire
