#include "plume/base/sys_error.h"

#include <cerrno>
#include <cstring>

namespace plume {

std::string SysError::message() const {
  std::string m = call;
  if (!object.empty()) m += " " + object;
  if (err != 0) {
    m += ": ";
    m += std::strerror(err);
  }
  return m;
}

SysError sys_error(std::string call, std::string object) {
  return SysError{std::move(call), errno, std::move(object)};
}

SysError plain_error(std::string call, std::string detail) {
  return SysError{std::move(call), 0, std::move(detail)};
}

}  // namespace plume
