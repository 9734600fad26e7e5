#include "plume/base/log.h"

#include <gtest/gtest.h>

namespace plume::log {
namespace {

TEST(Log, FormatsLogfmtWithQuoting) {
  std::string line = format_line(Level::warn, "worker.exit",
                                 {{"tenant", "demo"}, {"pid", 42}, {"cause", "exit code 1"}, {"ok", false}},
                                 "2026-01-01T00:00:00.000000Z");
  EXPECT_EQ(line,
            "ts=2026-01-01T00:00:00.000000Z level=warn event=worker.exit tenant=demo pid=42 "
            "cause=\"exit code 1\" ok=false");
}

TEST(Log, EscapesControlCharactersAndQuotes) {
  std::string line = format_line(Level::error, "e", {{"msg", "a\"b\nc"}, {"empty", ""}}, "T");
  EXPECT_EQ(line, "ts=T level=error event=e msg=\"a\\\"b\\nc\" empty=\"\"");
}

TEST(Log, ParsesLevels) {
  Level l = Level::info;
  EXPECT_TRUE(parse_level("debug", l));
  EXPECT_EQ(l, Level::debug);
  EXPECT_FALSE(parse_level("verbose", l));
  EXPECT_EQ(l, Level::debug);
}

}  // namespace
}  // namespace plume::log
