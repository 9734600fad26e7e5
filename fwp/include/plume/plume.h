/* plume.h: the whole worker ABI of Plume. A tenant app includes this header and links libplume
 * (the `plume` CMake target, libplume.a); it includes nothing else of Plume.
 *
 * An app declares two functions:
 *   init     runs once per template (per tenant and image), before any instance exists: load and
 *            index data, warm caches. Whatever it leaves in memory every instance inherits.
 *   handler  runs once per instance, in a fresh address space forked from the template, fully
 *            sandboxed. The instance's first message (the start request) is waiting on its
 *            channel; the handler receives and sends messages, and its return value is the
 *            instance's exit code (its result).
 *
 *   static int init(int argc, char** argv) { ...; return 0; }
 *   static int handle(plume_instance* self) {
 *     char buf[256];
 *     long n = plume_recv(self, buf, sizeof buf, -1);
 *     if (n < 0) return 1;
 *     plume_send(self, buf, (size_t)n);
 *     return 0;
 *   }
 *   PLUME_APP(init, handle)
 *
 * Roles: started by plumed (PLUME_FWP_ROLE=template) the binary becomes a template (see
 * docs/fwp.md); without that variable it runs as a plain program: init once, then the handler
 * once, with stdin as its inbound channel (one read() per message) and stdout as its outbound.
 *
 * Errors are negative errno values. Not thread-safe: one thread per instance uses these calls.
 */
#ifndef PLUME_PLUME_H
#define PLUME_PLUME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PLUME_ABI_VERSION 1

typedef struct plume_instance plume_instance;
struct io_uring; /* liburing's; include <liburing.h> to use plume_ring() */

typedef int (*plume_init_fn)(int argc, char** argv);
typedef int (*plume_handler_fn)(plume_instance* self);

struct plume_app {
  uint32_t abi_version;     /* PLUME_ABI_VERSION */
  const char* name;         /* for logs */
  plume_init_fn init;       /* may be NULL; nonzero return: the template fails to start */
  plume_handler_fn handler; /* required; its return value is the instance's exit code */
};

/* Runs the app in the role its environment names; returns only in error (the exit code). */
int plume_main(int argc, char** argv, const struct plume_app* app);

#define PLUME_APP(init_fn, handler_fn)                                                 \
  int main(int argc, char** argv) {                                                    \
    static const struct plume_app plume_app_ = {PLUME_ABI_VERSION, #handler_fn, init_fn, \
                                                handler_fn};                          \
    return plume_main(argc, argv, &plume_app_);                                         \
  }

enum plume_role {
  PLUME_ROLE_STANDALONE = 0, /* a plain program: stdin/stdout stand in for the channel */
  PLUME_ROLE_INSTANCE = 1,   /* an instance forked from a template */
};
enum plume_role plume_get_role(const plume_instance* self);

/* The controller's id of this instance (0 when standalone). */
uint64_t plume_instance_id(const plume_instance* self);

/* Receives the next message into buf. timeout_ns < 0 waits forever.
 * Returns its length, or -ETIMEDOUT, -EMSGSIZE (the message is larger than cap; it stays queued),
 * -EPIPE (the channel is broken or, standalone, stdin is at EOF). */
long plume_recv(plume_instance* self, void* buf, size_t cap, int64_t timeout_ns);

/* Sends one message. While the channel is full (the supervisor has not read what came before)
 * it waits, asleep after a few microseconds, as a write to a full pipe does, until the
 * supervisor reads; the instance's own time limit bounds the wait.
 * Returns 0, -EMSGSIZE (len > plume_max_message()), -EPIPE (the channel is broken). */
int plume_send(plume_instance* self, const void* msg, size_t len);

/* plume_send, waiting at most timeout_ns (< 0: forever) while the channel is full.
 * Returns plume_send's values, or -ETIMEDOUT (still full; nothing was sent). */
int plume_send_timeout(plume_instance* self, const void* msg, size_t len, int64_t timeout_ns);

/* Largest message plume_send accepts. */
size_t plume_max_message(const plume_instance* self);

/* The instance's own io_uring ring, or NULL when its image declares no io_uring opcodes. It was
 * created IORING_SETUP_R_DISABLED, restricted to the image's opcodes (others complete with
 * -EACCES) and enabled before the instance's final seccomp filter, which refuses io_uring_setup:
 * this is the only ring the instance can have. */
struct io_uring* plume_ring(plume_instance* self);

/* Diagnostics: CLOCK_MONOTONIC ns at which the template began forking this instance (0 when
 * standalone). With a timestamp taken at the handler's entry it gives the fork-to-handler cost. */
uint64_t plume_forked_at_ns(const plume_instance* self);

/* Flushes stdio and ends the instance now with `code` as its result. */
void plume_exit(plume_instance* self, int code) __attribute__((noreturn));

#ifdef __cplusplus
}
#endif

#endif /* PLUME_PLUME_H */
