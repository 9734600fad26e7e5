// Base64 (RFC 4648, the standard alphabet, with padding), for bytes that travel in JSON strings:
// an instance's messages are bytes, and a JSON string holds only text.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace plume::base64 {

std::string encode(std::string_view bytes);
// The bytes, or nullopt when `text` is not canonical base64: a length that is not a multiple of
// 4, a character outside the alphabet, padding anywhere but at the end, or padding bits that are
// not zero. Strict, so that one message has one spelling.
std::optional<std::string> decode(std::string_view text);

}  // namespace plume::base64
