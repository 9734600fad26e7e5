#include "api_state.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "files.h"
#include "plume/base/log.h"
#include "supervisor.h"

namespace plume::kernel {
namespace {

constexpr int kFormatVersion = 1;
constexpr const char* kFileName = "api-state.json";

std::string errno_text(const std::string& what, int err) { return what + ": " + std::strerror(err); }

// Writes `content` to `path` so that a crash at any point leaves either the old file or the new
// one: a temporary file beside it, flushed, renamed over it, then the directory flushed.
std::string write_atomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) return errno_text("unlink " + tmp, errno);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return errno_text("create " + tmp, errno);
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(fd);
      ::unlink(tmp.c_str());
      return errno_text("write " + tmp, err);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return errno_text("fsync " + tmp, err);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return errno_text("rename " + tmp + " to " + path, err);
  }
  const std::string dir = path.substr(0, path.rfind('/'));
  if (const int dfd = ::open(dir.empty() ? "/" : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    (void)::fsync(dfd);  // the rename itself; the file is already whole either way
    ::close(dfd);
  }
  return {};
}

template <typename Spec>
bool named_in(const std::vector<Spec>& specs, const std::string& name) {
  for (const Spec& s : specs)
    if (s.name == name) return true;
  return false;
}

}  // namespace

ConfigResult<ApiState> ApiState::open(const std::string& dir) {
  // The directory private (it holds tenants' tokens), whatever it is below.
  bool created = false;
  if (!make_dirs(dir, 0755, 0700, created)) return fail(ConfigError{errno_text("state_dir: mkdir " + dir, errno)});
  struct stat dir_st{};
  if (::stat(dir.c_str(), &dir_st) != 0) return fail(ConfigError{errno_text("state_dir: stat " + dir, errno)});
  if (!S_ISDIR(dir_st.st_mode)) return fail(ConfigError{"state_dir: " + dir + " is not a directory"});
  ApiState state;
  state.path_ = dir + "/" + kFileName;
  struct stat st{};
  if (::stat(state.path_.c_str(), &st) != 0) {
    if (errno == ENOENT) return state;  // nothing added through the API yet
    return fail(ConfigError{errno_text("stat " + state.path_, errno)});
  }
  auto text = read_text_file(state.path_);
  if (!text.ok()) return fail(text.error());
  const std::string where = state.path_ + ": ";
  const json j = json::parse(text.value(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return fail(ConfigError{where + "not a JSON object"});
  const json* version = j.contains("version") ? &j.at("version") : nullptr;
  if (version == nullptr || !version->is_number_integer() || version->get<int64_t>() != kFormatVersion)
    return fail(ConfigError{where + "\"version\" must be " + std::to_string(kFormatVersion)});
  for (const char* key : {"tenants", "images"})
    if (j.contains(key) && !j.at(key).is_array()) return fail(ConfigError{where + "\"" + key + "\" must be an array"});
  // The same checks as the API's: an entry edited by hand into something the API would refuse is
  // an error here too.
  for (const json& t : j.value("tenants", json::array())) {
    auto spec = tenant_from_json(t);
    if (!spec.ok()) return fail(ConfigError{where + spec.error().message});
    const std::string name = spec->name;
    state.tenants_.emplace(name, std::move(spec.value()));
  }
  for (const json& i : j.value("images", json::array())) {
    auto spec = image_from_json(i);
    if (!spec.ok()) return fail(ConfigError{where + spec.error().message});
    const std::string name = spec->name;
    state.images_.emplace(name, std::move(spec.value()));
  }
  return state;
}

std::string ApiState::save(const std::map<std::string, TenantSpec>& tenants,
                           const std::map<std::string, ImageSpec>& images) {
  json j = {{"version", kFormatVersion}, {"tenants", json::array()}, {"images", json::array()}};
  for (const auto& [name, spec] : tenants) j["tenants"].push_back(tenant_to_json(spec));
  for (const auto& [name, spec] : images) j["images"].push_back(image_to_json(spec));
  if (std::string e = write_atomically(path_, j.dump(2) + "\n"); !e.empty()) return e;
  tenants_ = tenants;
  images_ = images;
  return {};
}

std::string ApiState::record_tenant(const TenantSpec& spec) {
  if (!enabled()) return {};
  auto tenants = tenants_;
  tenants[spec.name] = spec;
  return save(tenants, images_);
}

std::string ApiState::forget_tenant(const std::string& name) {
  if (!enabled() || tenants_.count(name) == 0) return {};
  auto tenants = tenants_;
  tenants.erase(name);
  return save(tenants, images_);
}

std::string ApiState::record_image(const ImageSpec& spec) {
  if (!enabled()) return {};
  auto images = images_;
  images[spec.name] = spec;
  return save(tenants_, images);
}

std::string ApiState::forget_image(const std::string& name) {
  if (!enabled() || images_.count(name) == 0) return {};
  auto images = images_;
  images.erase(name);
  return save(tenants_, images);
}

std::string ApiState::forget_names_in(const Config& config, std::vector<std::string>& forgotten) {
  if (!enabled()) return {};
  auto tenants = tenants_;
  auto images = images_;
  for (auto it = tenants.begin(); it != tenants.end();) {
    if (!named_in(config.tenants, it->first)) {
      ++it;
      continue;
    }
    forgotten.push_back("tenant " + it->first);
    it = tenants.erase(it);
  }
  for (auto it = images.begin(); it != images.end();) {
    if (!named_in(config.images, it->first)) {
      ++it;
      continue;
    }
    forgotten.push_back("image " + it->first);
    it = images.erase(it);
  }
  if (forgotten.empty()) return {};
  return save(tenants, images);
}

RestoreReport restore_api_state(Supervisor& sup, ApiState& state) {
  RestoreReport report;
  // What the config file names was added before this and runs as the file says.
  state.forget_names_in(sup.config(), report.superseded).swap(report.save_error);
  for (const auto& [name, spec] : state.tenants()) {
    auto added = sup.add_tenant(spec);
    if (added.ok()) report.restored.push_back("tenant " + name);
    else report.failed.push_back(naming("tenant " + name, added.error().message));
  }
  for (const auto& [name, spec] : state.images()) {
    auto added = sup.images().add(spec);
    if (added.ok()) report.restored.push_back("image " + name);
    else report.failed.push_back(naming("image " + name, added.error().message));
  }
  return report;
}

}  // namespace plume::kernel
