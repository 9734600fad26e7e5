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
TEST(LogBuffer, SinceGivesWhatCameAfterAnOffsetAndCountsWhatWasDropped) {
  LogBuffer b(8);
  b.append("abcd", 4);
  uint64_t skipped = 99;
  EXPECT_EQ(b.since(0, skipped), "abcd");
  EXPECT_EQ(skipped, 0u);
  EXPECT_EQ(b.since(2, skipped), "cd");
  EXPECT_EQ(b.since(4, skipped), "");
  EXPECT_EQ(b.since(40, skipped), "");  // beyond the end: nothing (a reader from another stream)
  b.append("efghij", 6);                // 10 written, 8 kept: "cdefghij"
  EXPECT_EQ(b.total(), 10u);
  EXPECT_EQ(b.since(4, skipped), "efghij");
  EXPECT_EQ(skipped, 0u);
  EXPECT_EQ(b.since(0, skipped), "cdefghij");
  EXPECT_EQ(skipped, 2u);  // "ab" went before the reader came back
}

}  // namespace plume::kernel
