// How a parked instance waits for its first message: asleep on its channel's futex, or, as a
// spinning standby, busy-polling its channel at SCHED_IDLE.
#pragma once

#include "plume/fwp/channel.h"

namespace plume::libplume {

// Sleeps on the channel until it has a message (true) or is corrupt (false).
bool park_asleep(fwp::Channel& channel);

// Waits until the channel has a message (true) or is corrupt (false).
//
// Why: a parked instance asleep on its futex needs a wake-up to start, and in a paravirtualised
// guest that is 30-70 µs of switching into a process idle for ms, plus the idle vCPU's exit
// (bench/fwp's bare_wake). A poller on another CPU sees the doorbell's store within a cache-line
// transfer. SCHED_IDLE keeps that poll off its own cgroup's time: a task of the same cgroup that
// wakes on its CPU preempts it at once.
//
// Not off other cgroups' time: there the poller's cgroup competes with its cgroup's weight, not
// its policy. The scheduler even counts a CPU that runs only SCHED_IDLE tasks as idle and puts
// waking tasks there, where one of another cgroup then waits out the poller's slice (up to a
// tick: a plain process's wake-up took over 1 ms in 5% of wake-ups beside one poller on 2 vCPUs,
// bench/fwp). So plumed spins only what its operator grants (daemon.spinning_standby_budget,
// none by default). And a CPU that stays busy would share its time with the poller, so a poller
// kept off the CPU for over a millisecond backs off: it sleeps on its futex like any parked
// instance (a doorbell still wakes it at once) for 5 ms, doubling up to 160 ms while the CPU
// stays contended, then polls again.
//
// Leaving SCHED_IDLE for SCHED_OTHER is a rise in priority: with RLIMIT_NICE 20 (lent by plumed
// where it holds CAP_SYS_RESOURCE) the instance does it itself before its handler; otherwise
// plumed (CAP_SYS_NICE) does it right after the doorbell, and the handler's first microseconds
// run at SCHED_IDLE on a CPU that was idle anyway. Where the image's filter refuses
// sched_setscheduler the instance parks asleep. PLUME_FWP_TRACE reports each back-off on stderr.
bool park_spinning(fwp::Channel& channel, bool trace);

}  // namespace plume::libplume
