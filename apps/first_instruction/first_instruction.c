/* first_instruction: the smallest useful worker. Its very first C code reads CLOCK_MONOTONIC and
 * reports it, so a benchmark can time "start requested -> first instruction of the new program".
 *
 * Built static with -nostdlib: no libc start-up (no dynamic loader, no TLS or locale set-up) runs
 * before the clock is read, so the time measured is the launcher's, not glibc's.
 *
 * Output: the 8-byte timestamp (nanoseconds, native endianness) on fd 3 when fd 3 is open;
 * otherwise the decimal nanoseconds and a newline on stdout (Plume workers get only fds 0-2, and
 * plumed keeps their stdout in the worker log). CLOCK_MONOTONIC is one clock for the whole machine
 * (no time namespace is involved), so the value compares with the launcher's own readings.
 * Exits 0, or 1 when nothing could be written. */

#include <stdint.h>

#include <sys/syscall.h>

#define CLOCK_MONOTONIC_ID 1
#define EBADF_ERRNO 9

struct timespec_k {
  int64_t tv_sec;
  int64_t tv_nsec;
};

#if defined(__x86_64__)
static long sys3(long n, long a, long b, long c) {
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return ret;
}
/* The kernel enters _start with %rsp 16-byte aligned; C functions expect it 8 off that. */
__asm__(".text\n.global _start\n_start:\n  xor %rbp, %rbp\n  and $-16, %rsp\n  call start_c\n  hlt\n");
#elif defined(__aarch64__)
static long sys3(long n, long a, long b, long c) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
  return x0;
}
__asm__(".text\n.global _start\n_start:\n  mov x29, #0\n  mov x30, #0\n  bl start_c\n  brk #0\n");
#else
#error "first_instruction supports x86_64 and aarch64"
#endif

__attribute__((noreturn)) static void exit_group(int code) {
  for (;;) sys3(SYS_exit_group, code, 0, 0);
}

/* Writes all of buf, retrying on short writes; returns 0, or the negative errno. */
static long write_all(int fd, const char* buf, long len) {
  while (len > 0) {
    long n = sys3(SYS_write, fd, (long)buf, len);
    if (n < 0) return n;
    buf += n;
    len -= n;
  }
  return 0;
}

__attribute__((noreturn, used)) void start_c(void) {
  struct timespec_k ts = {0, 0};
  sys3(SYS_clock_gettime, CLOCK_MONOTONIC_ID, (long)&ts, 0); /* the measurement: keep it first */
  uint64_t ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;

  long r = write_all(3, (const char*)&ns, (long)sizeof ns);
  if (r == 0) exit_group(0);
  if (r != -EBADF_ERRNO) exit_group(1);

  char text[24];
  int pos = (int)sizeof text;
  text[--pos] = '\n';
  do {
    text[--pos] = (char)('0' + ns % 10);
    ns /= 10;
  } while (ns != 0);
  exit_group(write_all(1, text + pos, (long)sizeof text - pos) == 0 ? 0 : 1);
}
