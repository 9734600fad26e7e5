#include "plume/base/time_format.h"

#include <gtest/gtest.h>

#include <chrono>

namespace plume {
namespace {

using namespace std::chrono;

// 2026-03-04T05:06:07 UTC plus 123456789 ns.
system_clock::time_point fixed_point() {
  return system_clock::time_point(duration_cast<system_clock::duration>(seconds(1772600767) + nanoseconds(123456789)));
}

TEST(TimeFormat, MicrosKeepsSixTruncatedDigits) {
  EXPECT_EQ(format_rfc3339(fixed_point(), SubSecond::micros), "2026-03-04T05:06:07.123456Z");
}

TEST(TimeFormat, MillisKeepsThreeTruncatedDigits) {
  EXPECT_EQ(format_rfc3339(fixed_point(), SubSecond::millis), "2026-03-04T05:06:07.123Z");
}

TEST(TimeFormat, PadsZeroFractionAndSmallFields) {
  const system_clock::time_point epoch{};
  EXPECT_EQ(format_rfc3339(epoch, SubSecond::micros), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(format_rfc3339(epoch + milliseconds(7), SubSecond::millis), "1970-01-01T00:00:00.007Z");
  EXPECT_EQ(format_rfc3339(epoch + microseconds(42), SubSecond::micros), "1970-01-01T00:00:00.000042Z");
}

TEST(TimeFormat, LastMicrosecondOfADayDoesNotRoundUp) {
  const system_clock::time_point t{seconds(1772668799) + microseconds(999999)};  // 2026-03-04T23:59:59
  EXPECT_EQ(format_rfc3339(t, SubSecond::micros), "2026-03-04T23:59:59.999999Z");
  EXPECT_EQ(format_rfc3339(t, SubSecond::millis), "2026-03-04T23:59:59.999Z");
}

}  // namespace
}  // namespace plume
