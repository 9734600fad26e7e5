#include "supervisor.h"

#include <gtest/gtest.h>

#include <csignal>

namespace plume::kernel {
namespace {

TEST(RunSpec, ParsesAndDefaults) {
  auto r = run_spec_from_json(json{{"argv", {"/bin/echo", "hi"}}, {"limits", {{"memory", "32M"}}}, {"timeout_ms", 500}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->image, "host");
  EXPECT_EQ(r->argv.size(), 2u);
  ASSERT_EQ(r->env.size(), 1u);
  EXPECT_EQ(r->env[0].rfind("PATH=", 0), 0u);
  EXPECT_EQ(r->limits.memory_bytes, 32ull << 20);
  EXPECT_TRUE(r->has_memory);
  EXPECT_FALSE(r->has_pids);
  EXPECT_EQ(r->timeout_ms, 500u);
}

TEST(RunSpec, RejectsBadInput) {
  EXPECT_FALSE(run_spec_from_json(json::array()).ok());
  EXPECT_FALSE(run_spec_from_json(json::object()).ok());
  EXPECT_FALSE(run_spec_from_json(json{{"argv", json::array()}}).ok());
  EXPECT_FALSE(run_spec_from_json(json{{"argv", {""}}}).ok());
  EXPECT_FALSE(run_spec_from_json(json{{"argv", {1, 2}}}).ok());
  EXPECT_FALSE(run_spec_from_json(json{{"argv", {"x"}}, {"env", {"NOEQUALS"}}}).ok());
  EXPECT_FALSE(run_spec_from_json(json{{"argv", {"x"}}, {"cwd", "relative"}}).ok());
  EXPECT_FALSE(run_spec_from_json(json{{"argv", {"x"}}, {"timeout_ms", -1}}).ok());
  EXPECT_FALSE(run_spec_from_json(json{{"argv", {"x"}}, {"limits", {{"max_workers", 3}}}}).ok());
  EXPECT_FALSE(run_spec_from_json(json{{"argv", {"x"}}, {"surprise", true}}).ok());
  EXPECT_FALSE(run_spec_from_json(json{{"argv", {std::string("a\0b", 3)}}}).ok());
}

TEST(MessagesRequest, ParsesOneOrManyMessagesAndAReplyCount) {
  auto one = messages_request_from_json(json{{"messages", "get key42"}});
  ASSERT_TRUE(one.ok()) << one.error().message;
  EXPECT_EQ(one->messages, std::vector<std::string>{"get key42"});
  EXPECT_EQ(one->replies, 0u);
  EXPECT_EQ(one->timeout_ms, 0u);
  auto many = messages_request_from_json(json{{"messages", {"a", std::string("b\0c", 3), ""}}, {"replies", 3}, {"timeout_ms", 250}});
  ASSERT_TRUE(many.ok()) << many.error().message;
  ASSERT_EQ(many->messages.size(), 3u);
  EXPECT_EQ(many->messages[1].size(), 3u);  // bytes: a NUL is carried, not cut
  EXPECT_EQ(many->replies, 3u);
  EXPECT_EQ(many->timeout_ms, 250u);
  auto wait_only = messages_request_from_json(json{{"replies", 1}});
  ASSERT_TRUE(wait_only.ok());
  EXPECT_TRUE(wait_only->messages.empty());
}

TEST(MessagesRequest, RejectsBadInput) {
  for (const json& j : {json::array(), json::object(), json{{"messages", 7}}, json{{"messages", {"a", 1}}},
                        json{{"messages", "a"}, {"replies", -1}}, json{{"messages", "a"}, {"replies", 1025}},
                        json{{"messages", "a"}, {"replies", "1"}}, json{{"messages", "a"}, {"timeout_ms", 1.5}},
                        json{{"messages", "a"}, {"timeout_ms", 86400001}}, json{{"messages", "a"}, {"other", 1}},
                        json{{"messages", json::array()}}})
    EXPECT_FALSE(messages_request_from_json(j).ok()) << j.dump();
  json many = {{"messages", json::array()}};
  for (int i = 0; i < 4097; ++i) many["messages"].push_back("x");
  EXPECT_FALSE(messages_request_from_json(many).ok());
}

// Bytes that are not text travel in base64: "encoding" for a request's messages (and its
// replies), "input_encoding" for a start's input. Only canonical base64 is taken, and the error
// names the message.
TEST(MessagesRequest, Base64CarriesBytesThatAreNotText) {
  const std::string bytes("\x00\xff\xfe\x80 ok", 7);
  auto r = messages_request_from_json(json{{"messages", {"AP/+gCBvaw==", ""}}, {"encoding", "base64"}, {"replies", 1}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->base64);
  EXPECT_EQ(r->messages, (std::vector<std::string>{bytes, ""}));
  auto text = messages_request_from_json(json{{"messages", "AP/+gCBvaw=="}, {"encoding", "text"}});
  ASSERT_TRUE(text.ok());
  EXPECT_FALSE(text->base64);
  EXPECT_EQ(text->messages[0], "AP/+gCBvaw==");

  auto bad = messages_request_from_json(json{{"messages", {"QQ==", "QR=="}}, {"encoding", "base64"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "messages[1]: not base64 (RFC 4648, padded)");
  for (const json& e : {json("BASE64"), json(1), json(nullptr)}) {
    auto odd = messages_request_from_json(json{{"messages", "x"}, {"encoding", e}});
    ASSERT_FALSE(odd.ok()) << e.dump();
    EXPECT_EQ(odd.error().message, "encoding: \"text\" or \"base64\"");
  }

  // As text, a NUL is a byte of a message like any other (argv refuses it).
  auto nul = run_spec_from_json(json{{"fwp", true}, {"input", {std::string("a\0b", 3), "c"}}});
  ASSERT_TRUE(nul.ok()) << nul.error().message;
  EXPECT_EQ(nul->input[0], std::string("a\0b", 3));
  auto start = run_spec_from_json(json{{"fwp", true}, {"input", {"AP/+gCBvaw=="}}, {"input_encoding", "base64"}});
  ASSERT_TRUE(start.ok()) << start.error().message;
  EXPECT_EQ(start->input, std::vector<std::string>{bytes});
  auto bad_start = run_spec_from_json(json{{"fwp", true}, {"input", "not base64!"}, {"input_encoding", "base64"}});
  ASSERT_FALSE(bad_start.ok());
  EXPECT_EQ(bad_start.error().message, "input[0]: not base64 (RFC 4648, padded)");
}

TEST(Signals, NamesAndNumbers) {
  EXPECT_EQ(signal_from_name("TERM"), SIGTERM);
  EXPECT_EQ(signal_from_name("sigkill"), SIGKILL);
  EXPECT_EQ(signal_from_name("9"), 9);
  EXPECT_EQ(signal_from_name("0"), 0);
  EXPECT_EQ(signal_from_name("65"), 0);
  EXPECT_EQ(signal_from_name("NOPE"), 0);
  EXPECT_EQ(signal_from_name("99999999999"), 0);
  EXPECT_STREQ(signal_name(SIGKILL), "KILL");
}

}  // namespace
}  // namespace plume::kernel
