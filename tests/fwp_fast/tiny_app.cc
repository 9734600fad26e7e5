// plume_tiny: a libplume app whose handler is as small as a handler gets. Its first act reads
// its page-fault count, which it sends back as "minflt=<n>" before it returns 0. The probe app's
// larger handler frame reaches a second stack page anyway, so only a handler this small shows a
// template whose own frames grew a page deeper into every instance's stack.
#include <plume/plume.h>
#include <sys/resource.h>

#include <cstdio>

namespace {

int handle(plume_instance* self) {
  rusage at_entry{};
  (void)getrusage(RUSAGE_SELF, &at_entry);
  char reply[32];
  const int n = std::snprintf(reply, sizeof reply, "minflt=%ld", at_entry.ru_minflt);
  return plume_send(self, reply, static_cast<size_t>(n)) == 0 ? 0 : 1;
}

}  // namespace

PLUME_APP(nullptr, handle)
