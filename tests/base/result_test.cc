#include "plume/base/result.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <fcntl.h>

#include <string>

#include "plume/base/sys_error.h"
#include "plume/base/unique_fd.h"

namespace plume {
namespace {

SysResult<int> parse_positive(int v) {
  if (v <= 0) return fail(plain_error("parse_positive", "not positive: " + std::to_string(v)));
  return v;
}

TEST(Result, CarriesValueOrError) {
  auto good = parse_positive(3);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 3);
  auto bad = parse_positive(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message(), "parse_positive not positive: -1");
}

TEST(Result, VoidResult) {
  SysResult<void> ok;
  EXPECT_TRUE(ok.ok());
  errno = ENOENT;
  SysResult<void> bad = fail(sys_error("open", "/nonexistent"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().err, ENOENT);
  EXPECT_EQ(bad.error().message(), "open /nonexistent: No such file or directory");
}

TEST(UniqueFd, ClosesOnDestructionAndMoves) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[1]);
  int raw = fds[0];
  {
    UniqueFd a(raw);
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(b.get(), raw);
  }
  errno = 0;
  EXPECT_EQ(::fcntl(raw, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

}  // namespace
}  // namespace plume
