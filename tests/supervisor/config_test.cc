#include "config.h"

#include <gtest/gtest.h>

namespace plume::kernel {
namespace {

TEST(Config, BuiltInDefaultParses) {
  auto c = parse_config_toml(default_config_toml(), "<built-in>");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(c->tenants.size(), 1u);
  EXPECT_EQ(c->tenants[0].name, "demo");
  EXPECT_EQ(c->tenants[0].uid_base, 100000u);
  EXPECT_EQ(c->tenants[0].limits.memory_bytes, 256ull << 20);
  EXPECT_EQ(c->cgroup.parent, "plume");
  EXPECT_EQ(c->daemon.runtime_dir, "/run/plume");
}

TEST(Config, TomlAndJsonShareOneSchema) {
  auto toml = parse_config_toml(R"(
[[tenant]]
name = "acme"
token = "secret-token"
[tenant.limits]
memory = "1G"
pids_max = 10
)", "t.toml");
  ASSERT_TRUE(toml.ok()) << toml.error().message;
  auto js = tenant_from_json(json{{"name", "acme"}, {"token", "secret-token"}, {"limits", {{"memory", "1G"}, {"pids_max", 10}}}});
  ASSERT_TRUE(js.ok()) << js.error().message;
  EXPECT_EQ(toml->tenants[0].limits.memory_bytes, js->limits.memory_bytes);
  EXPECT_EQ(toml->tenants[0].limits.memory_bytes, 1ull << 30);
  EXPECT_EQ(toml->tenants[0].limits.pids_max, 10u);
}

TEST(Config, RejectsUnknownKeysAndBadValues) {
  auto typo = parse_config_toml("[[tenant]]\nname=\"a\"\ntoken=\"12345678\"\n[tenant.limits]\nmemroy=\"1G\"\n", "t");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.error().message.find("memroy"), std::string::npos) << typo.error().message;

  auto bad_toml = parse_config_toml("[daemon\n", "broken.toml");
  ASSERT_FALSE(bad_toml.ok());
  EXPECT_NE(bad_toml.error().message.find("broken.toml:1"), std::string::npos) << bad_toml.error().message;

  EXPECT_FALSE(tenant_from_json(json{{"name", "Bad Name"}, {"token", "12345678"}}).ok());
  EXPECT_FALSE(tenant_from_json(json{{"name", "ok"}, {"token", "short"}}).ok());
  EXPECT_FALSE(tenant_from_json(json{{"name", "ok"}, {"token", "12345678"}, {"uid_count", -5}}).ok());
  EXPECT_FALSE(tenant_from_json(json{{"name", "ok"}, {"token", "12345678"}, {"limits", {{"pids_max", "many"}}}}).ok());
  EXPECT_FALSE(image_from_json(json{{"name", "img"}}).ok());
  EXPECT_FALSE(image_from_json(json{{"name", "img"}, {"rootfs", "relative/dir"}}).ok());
  EXPECT_FALSE(image_from_json(json{{"name", "img"}, {"rootfs", "/a"}, {"bundle", "/b"}}).ok());
}

// An image's channel: 16 slots of 1016-byte messages unless it says otherwise; the message size
// is rounded up to fill a slot (a multiple of 64 bytes with its 8-byte header), and the bounds
// are named when refused.
TEST(Config, AnImagesChannelIsSizedWithinBounds) {
  auto image = [](json fwp) {
    fwp["binary"] = "/bin/app";
    return image_from_json(json{{"name", "img"}, {"fwp", fwp}});
  };
  auto plain = image(json::object());
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_EQ(plain->fwp.channel_slots, 16u);
  EXPECT_EQ(plain->fwp.max_message, 1016u);
  EXPECT_EQ(plain->fwp.channel_slot_bytes(), 1024u);

  auto sized = image({{"channel_slots", 64}, {"max_message", 4000}});
  ASSERT_TRUE(sized.ok()) << sized.error().message;
  EXPECT_EQ(sized->fwp.channel_slots, 64u);
  EXPECT_EQ(sized->fwp.channel_slot_bytes(), 4032u);  // 4000 + 8, rounded up to 64
  auto again = image_from_json(image_to_json(*sized));
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->fwp, sized->fwp);
  auto toml = parse_config_toml("[[image]]\nname = \"img\"\n[image.fwp]\nbinary = \"/bin/app\"\nchannel_slots = 64\n"
                                "max_message = 4000\n", "t.toml");
  ASSERT_TRUE(toml.ok()) << toml.error().message;
  EXPECT_EQ(toml->images.at(0).fwp, sized->fwp);

  auto refused = [&](json fwp, const std::string& why) {
    auto r = image(fwp);
    ASSERT_FALSE(r.ok()) << fwp.dump();
    EXPECT_NE(r.error().message.find(why), std::string::npos) << r.error().message;
  };
  refused({{"channel_slots", 24}}, "channel_slots: a power of two in [2, 256]");
  refused({{"channel_slots", 1}}, "channel_slots: a power of two");
  refused({{"channel_slots", 512}}, "channel_slots");
  refused({{"max_message", 55}}, "max_message: at least 56 bytes");
  refused({{"max_message", 65529}}, "max_message");
  refused({{"channel_slots", 256}, {"max_message", 8000}}, "more than 1048576 per direction");
  EXPECT_TRUE(image({{"channel_slots", 256}, {"max_message", 4088}}).ok());  // exactly 1 MiB a ring
}

// Two entries the file cannot mean: which one to keep is not plumed's guess, and a token two
// tenants (or a tenant and the admin) share lets each act as the other.
TEST(Config, RefusesTwoEntriesOfOneNameAndSharedTokens) {
  auto tenant = [](const char* name, const char* token) {
    return std::string("[[tenant]]\nname = \"") + name + "\"\ntoken = \"" + token + "\"\n";
  };
  auto expect_refused = [](const std::string& toml, const std::string& why) {
    auto c = parse_config_toml(toml, "t.toml");
    ASSERT_FALSE(c.ok()) << toml;
    EXPECT_NE(c.error().message.find(why), std::string::npos) << c.error().message;
  };
  expect_refused(tenant("a", "token-one") + tenant("a", "token-two"), "tenant a: named twice");
  expect_refused(tenant("a", "token-one") + tenant("b", "token-one"), "tenant b: same token as tenant a");
  expect_refused("[daemon]\nadmin_token = \"token-one\"\n" + tenant("a", "token-one"),
                 "tenant a: its token is daemon.admin_token");
  const std::string image = "[[image]]\nname = \"img\"\nrootfs = \"/srv/img\"\n";
  expect_refused(image + image, "image img: named twice");
  auto fine = parse_config_toml(tenant("a", "token-one") + tenant("b", "token-two") + image, "t.toml");
  EXPECT_TRUE(fine.ok()) << fine.error().message;
}

TEST(Config, ParsesByteSizes) {
  EXPECT_EQ(parse_bytes(json("512K"), "m").value(), 512ull << 10);
  EXPECT_EQ(parse_bytes(json("64Mi"), "m").value(), 64ull << 20);
  EXPECT_EQ(parse_bytes(json("2GB"), "m").value(), 2ull << 30);
  EXPECT_EQ(parse_bytes(json(4096), "m").value(), 4096u);
  EXPECT_FALSE(parse_bytes(json("12Q"), "m").ok());
  EXPECT_FALSE(parse_bytes(json("M"), "m").ok());
  EXPECT_FALSE(parse_bytes(json("99999999999999999999999"), "m").ok());
  EXPECT_FALSE(parse_bytes(json("99999999999T"), "m").ok());
  EXPECT_FALSE(parse_bytes(json(-1), "m").ok());
}

}  // namespace
}  // namespace plume::kernel
