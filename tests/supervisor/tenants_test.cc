#include "tenants.h"

#include <gtest/gtest.h>

namespace plume::kernel {
namespace {

TenantSpec spec(const std::string& name, uint32_t base, uint32_t count = 65536) {
  TenantSpec t;
  t.name = name;
  t.token = "token-of-" + name;
  t.uid_base = base;
  t.uid_count = count;
  return t;
}

TEST(Tenants, AllocatesNonOverlappingUidRanges) {
  TenantRegistry reg;
  auto a = reg.add(spec("a", 0));
  auto b = reg.add(spec("b", 0));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a.value()->spec.uid_base, 100000u);
  EXPECT_EQ(b.value()->spec.uid_base, 100000u + 65536u);
}

TEST(Tenants, RefusesOverlapsHostUidsDuplicatesAndSharedTokens) {
  TenantRegistry reg;
  ASSERT_TRUE(reg.add(spec("a", 200000)).ok());
  auto overlap = reg.add(spec("b", 230000));
  ASSERT_FALSE(overlap.ok());
  EXPECT_NE(overlap.error().message.find("overlaps tenant a"), std::string::npos);
  EXPECT_FALSE(reg.add(spec("c", 1000)).ok());  // host users live below 65536
  EXPECT_FALSE(reg.add(spec("a", 400000)).ok());
  TenantSpec same_token = spec("d", 500000);
  same_token.token = "token-of-a";
  EXPECT_FALSE(reg.add(same_token).ok());
}

TEST(Tenants, FindsByTokenOnlyOnExactMatch) {
  TenantRegistry reg;
  ASSERT_TRUE(reg.add(spec("a", 0)).ok());
  EXPECT_NE(reg.by_token("token-of-a"), nullptr);
  EXPECT_EQ(reg.by_token("token-of-"), nullptr);
  EXPECT_EQ(reg.by_token("token-of-ab"), nullptr);
  EXPECT_EQ(reg.by_token(""), nullptr);
  EXPECT_TRUE(tokens_equal("abc", "abc"));
  EXPECT_FALSE(tokens_equal("abc", "abd"));
  EXPECT_FALSE(tokens_equal("abc", "abcd"));
}

}  // namespace
}  // namespace plume::kernel
