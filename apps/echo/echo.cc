// echo: the smallest libplume app. Each instance echoes every message back and ends (code 0) on
// an empty message, logging each one's size on stderr (under plumed: `plume logs --stderr`). No
// init: its template costs only what libplume itself costs.
#include <plume/plume.h>

#include <cerrno>
#include <cstdio>

namespace {

int handle(plume_instance* self) {
  char buf[4096];
  for (;;) {
    const long n = plume_recv(self, buf, sizeof buf, -1);
    if (n == 0 || n == -EPIPE) return 0;  // an empty message, or (standalone) end of stdin
    if (n < 0) return 1;
    std::fprintf(stderr, "echo: %ld bytes\n", n);
    if (plume_send(self, buf, static_cast<size_t>(n)) != 0) return 1;
  }
}

}  // namespace

PLUME_APP(nullptr, handle)
