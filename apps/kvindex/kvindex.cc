// kvindex: an app whose initialisation costs real time, to show what templates save. init builds
// a data file of 200,000 key/value records (or loads the one named by KVINDEX_DATA) and indexes it
// in an open-addressing hash table; every instance then answers lookups from the warmed index at
// once. Requests: "get <key>" → "<value>" or "-"; "stats" → "init_count=<n> init_pid=<pid>
// init_us=<us> keys=<n>"; an empty message ends the instance. init runs once per template, so
// every instance of a template reports init_count=1 and the same init_pid.
#include <plume/plume.h>

#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr size_t kKeys = 200000;

struct Index {
  std::string data;                 // "key\tvalue\n" records
  std::vector<uint32_t> slots;      // record offsets + 1 (0: empty), power-of-two sized
  size_t keys = 0;
};

Index g_index;
int g_init_count = 0;
pid_t g_init_pid = 0;
uint64_t g_init_us = 0;

uint64_t hash(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  return h;
}

std::string_view key_at(uint32_t off) {
  const char* p = g_index.data.data() + off;
  return {p, static_cast<size_t>(std::strchr(p, '\t') - p)};
}

std::string_view value_at(uint32_t off) {
  const char* p = std::strchr(g_index.data.data() + off, '\t') + 1;
  return {p, static_cast<size_t>(std::strchr(p, '\n') - p)};
}

std::string make_data() {
  std::string d;
  d.reserve(kKeys * 40);
  char line[96];
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (size_t i = 0; i < kKeys; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const int n = std::snprintf(line, sizeof line, "key%zu\tvalue-%016llx\n", i,
                                static_cast<unsigned long long>(x));
    d.append(line, static_cast<size_t>(n));
  }
  return d;
}

bool load(const char* path, std::string& out) {
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return false;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return true;
}

int init(int, char**) {
  timespec t0{}, t1{};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  const char* path = std::getenv("KVINDEX_DATA");
  if (path == nullptr || !load(path, g_index.data)) g_index.data = make_data();
  size_t lines = 0;
  for (char c : g_index.data) lines += c == '\n';
  size_t cap = 1;
  while (cap < lines * 2) cap <<= 1;
  g_index.slots.assign(cap, 0);
  for (size_t off = 0; off < g_index.data.size();) {
    const size_t end = g_index.data.find('\n', off);
    if (end == std::string::npos) break;
    const auto k = key_at(static_cast<uint32_t>(off));
    for (size_t i = hash(k) & (cap - 1);; i = (i + 1) & (cap - 1)) {
      if (g_index.slots[i] == 0) {
        g_index.slots[i] = static_cast<uint32_t>(off + 1);
        ++g_index.keys;
        break;
      }
    }
    off = end + 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  g_init_us = static_cast<uint64_t>((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000);
  ++g_init_count;
  g_init_pid = getpid();
  return 0;
}

std::string_view lookup(std::string_view key) {
  const size_t cap = g_index.slots.size();
  for (size_t i = hash(key) & (cap - 1);; i = (i + 1) & (cap - 1)) {
    const uint32_t s = g_index.slots[i];
    if (s == 0) return {};
    if (key_at(s - 1) == key) return value_at(s - 1);
  }
}

int handle(plume_instance* self) {
  char buf[4096];
  for (;;) {
    const long n = plume_recv(self, buf, sizeof buf, -1);
    if (n < 0) return 1;
    if (n == 0) return 0;
    std::string_view req(buf, static_cast<size_t>(n));
    while (!req.empty() && (req.back() == '\n' || req.back() == '\r')) req.remove_suffix(1);
    std::string reply;
    if (req.substr(0, 4) == "get ") {
      const auto v = lookup(req.substr(4));
      reply = v.empty() ? "-" : std::string(v);
    } else if (req == "stats") {
      reply = "init_count=" + std::to_string(g_init_count) + " init_pid=" + std::to_string(g_init_pid) +
              " init_us=" + std::to_string(g_init_us) + " keys=" + std::to_string(g_index.keys);
    } else {
      reply = "?";
    }
    if (plume_send(self, reply.data(), reply.size()) != 0) return 1;
  }
}

}  // namespace

PLUME_APP(init, handle)
