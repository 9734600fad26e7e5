// Sending and receiving wire::Msg records (with at most one file descriptor) on the control
// socket. Plain errno returns: this file is compiled into libplume as well as into plume_fwp.
#pragma once

#include "template_protocol.h"

namespace plume::fwp::wire {

// Sends one record, with `fd` attached by SCM_RIGHTS when fd >= 0. Returns 0 or an errno.
int send_msg(int sock, const Msg& msg, int fd = -1);

// Receives one record. *fd_out gets the attached fd (close-on-exec) or -1; any extra fds are
// closed. Returns 0, an errno, EPIPE at end of stream, or EBADMSG for a record of the wrong size,
// magic or version (its fds are closed). With `nonblock` an empty socket gives EAGAIN.
int recv_msg(int sock, Msg& msg, int* fd_out, bool nonblock = false);

}  // namespace plume::fwp::wire
