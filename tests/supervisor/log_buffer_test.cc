#include "log_buffer.h"

#include <gtest/gtest.h>

namespace plume::kernel {
namespace {

TEST(LogBuffer, KeepsEverythingUnderCapacity) {
  LogBuffer b(16);
  b.append("hello ", 6);
  b.append("world", 5);
  EXPECT_EQ(b.contents(), "hello world");
  EXPECT_EQ(b.dropped(), 0u);
}

TEST(LogBuffer, KeepsTheNewestBytesWhenFull) {
  LogBuffer b(8);
  std::string all;
  for (int i = 0; i < 50; ++i) {
    std::string s = std::to_string(i) + ",";
    all += s;
    b.append(s.data(), s.size());
    ASSERT_EQ(b.contents(), all.size() <= 8 ? all : all.substr(all.size() - 8)) << "after " << i;
  }
  EXPECT_EQ(b.dropped(), all.size() - 8);
  EXPECT_EQ(b.total(), all.size());
}

TEST(LogBuffer, OneChunkLargerThanCapacity) {
  LogBuffer b(4);
  b.append("ab", 2);
  b.append("0123456789", 10);
  EXPECT_EQ(b.contents(), "6789");
  EXPECT_EQ(b.dropped(), 8u);
}

}  // namespace
}  // namespace plume::kernel
