// plume_main: picks the role the environment names. PLUME_FWP_ROLE=template: the binary was
// spawned by plumed as a template's keeper. Anything else: a plain program (init, then the
// handler once on stdin/stdout), handy for tests and for running an app by hand.
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "runtime.h"

namespace plume::libplume {

plume_instance* standalone_instance();

void diag(const char* what, int err) {
  char buf[256];
  size_t n = 0;
  auto put = [&](const char* s) {
    while (*s != '\0' && n < sizeof buf - 1) buf[n++] = *s++;
  };
  put("libplume: ");
  put(what);
  if (err != 0) {
    put(": ");
    put(strerrordesc_np(err) != nullptr ? strerrordesc_np(err) : "unknown error");
  }
  put("\n");
  (void)!::write(2, buf, n);
}

}  // namespace plume::libplume

extern "C" int plume_main(int argc, char** argv, const plume_app* app) {
  using namespace plume::libplume;
  if (app == nullptr || app->abi_version != PLUME_ABI_VERSION || app->handler == nullptr) {
    diag("plume_main: bad plume_app (ABI version or handler)", EINVAL);
    return 2;
  }
  const char* role = std::getenv("PLUME_FWP_ROLE");
  if (role != nullptr && std::strcmp(role, "template") == 0) run_keeper(argc, argv, *app);
  if (app->init != nullptr) {
    if (int rc = app->init(argc, argv); rc != 0) return rc;
  }
  plume_instance* self = standalone_instance();
  plume_exit(self, app->handler(self));
}
