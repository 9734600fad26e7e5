// plume_memhog MIB: allocates MIB mebibytes one at a time and touches every page, so the memory
// cgroup's limit is really reached; exits 0 only if it got all of it (then no limit stopped it).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  long mib = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 256;
  std::vector<char*> blocks;
  for (long i = 0; i < mib; ++i) {
    auto* p = static_cast<char*>(std::malloc(1 << 20));
    if (!p) return 2;
    std::memset(p, static_cast<int>(i & 0x7f) | 1, 1 << 20);
    blocks.push_back(p);
  }
  std::printf("allocated %ld MiB\n", mib);
  return 0;
}
