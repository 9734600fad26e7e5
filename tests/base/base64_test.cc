#include "plume/base/base64.h"

#include <random>
#include <string>

#include <gtest/gtest.h>

namespace plume {
namespace {

TEST(Base64, EncodesTheRfcVectors) {
  // RFC 4648, section 10.
  const std::pair<const char*, const char*> vectors[] = {{"", ""},         {"f", "Zg=="},     {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},  {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (auto [plain, coded] : vectors) {
    EXPECT_EQ(base64::encode(plain), coded) << plain;
    EXPECT_EQ(base64::decode(coded), std::optional<std::string>(plain)) << coded;
  }
}

TEST(Base64, RoundTripsEveryByte) {
  std::mt19937 rng(3);
  for (size_t n = 0; n < 300; ++n) {
    std::string bytes(n, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() & 0xFF);
    const std::string coded = base64::encode(bytes);
    EXPECT_EQ(coded.size(), (n + 2) / 3 * 4);
    EXPECT_EQ(base64::decode(coded), std::optional<std::string>(bytes)) << n;
  }
}

TEST(Base64, RefusesWhatIsNotCanonical) {
  for (const char* bad : {"Zg", "Zg=", "Zm9v=", "Z===", "====", "Zg==Zg==", "Zm9v\n", "Zm 9v", "Zm-v", "Zm_v",
                          "QR==",   // padding bits set
                          "Zm9=",   // the same for one pad
                          "Zg=a"})  // padding inside the quantum
    EXPECT_FALSE(base64::decode(bad).has_value()) << bad;
  EXPECT_EQ(base64::decode("QQ=="), std::optional<std::string>("A"));
  EXPECT_EQ(base64::decode(std::string("AA==")), std::optional<std::string>(std::string(1, '\0')));
}

}  // namespace
}  // namespace plume
