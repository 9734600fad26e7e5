#include "images.h"

#include <sys/stat.h>
#include <unistd.h>

#include "files.h"

namespace plume::kernel {
namespace {

bool is_dir(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

std::optional<FileIdentity> identify_file(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileIdentity{st.st_dev, st.st_ino, st.st_size,
                      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

ImageRegistry::ImageRegistry() {
  auto host = std::make_unique<Image>();
  host->spec.name = "host";
  host->source = "host";
  auto filter = fwp::compile_default_profile(fwp::SeccompOptions{});
  // The default profile is Plume's own code: failing to compile it is a bug, not a user error.
  if (filter.ok()) host->filter = std::move(filter.value());
  images_["host"] = std::move(host);
}

ConfigResult<Image*> ImageRegistry::add(const ImageSpec& spec) {
  if (images_.count(spec.name)) return fail(ConfigError{"image " + spec.name + " already exists"});
  auto image = prepare(spec);
  if (!image.ok()) return fail(image.error());
  return insert(std::move(image.value()));
}

Image* ImageRegistry::insert(std::unique_ptr<Image> image) {
  Image* raw = image.get();
  images_[raw->spec.name] = std::move(image);
  return raw;
}

ConfigResult<std::unique_ptr<Image>> ImageRegistry::prepare(const ImageSpec& spec) {
  auto image = std::make_unique<Image>();
  image->spec = spec;
  const std::string where = "image " + spec.name;
  if (!spec.bundle.empty()) {
    image->source = "bundle";
    auto text = read_text_file(spec.bundle + "/config.json");
    if (!text.ok()) return fail(ConfigError{where + ": " + text.error().message});
    json cfg = json::parse(text.value(), nullptr, /*allow_exceptions=*/false);
    if (cfg.is_discarded() || !cfg.is_object())
      return fail(ConfigError{where + ": " + spec.bundle + "/config.json is not valid JSON"});
    std::string root = "rootfs";
    if (cfg.contains("root") && cfg["root"].is_object()) {
      const json& r = cfg["root"];
      if (r.contains("path") && r["path"].is_string()) root = r["path"].get<std::string>();
      if (r.contains("readonly") && r["readonly"].is_boolean()) image->read_only = r["readonly"].get<bool>();
    }
    image->rootfs_path = root[0] == '/' ? root : spec.bundle + "/" + root;
  } else if (!spec.rootfs.empty()) {
    image->source = "rootfs";
    image->rootfs_path = spec.rootfs;
  } else {
    image->source = "host";  // an FWP image in the host view
  }
  if (spec.fwp.enabled && ::access(spec.fwp.binary.c_str(), X_OK) != 0)
    return fail(ConfigError{where + ": fwp.binary " + spec.fwp.binary + " is not an executable file"});
  if (spec.fwp.enabled) image->fwp_binary = identify_file(spec.fwp.binary);
  if (image->source != "host" && !is_dir(image->rootfs_path))
    return fail(ConfigError{where + ": rootfs " + image->rootfs_path + " is not a directory"});

  fwp::SeccompOptions opts;
  opts.allow_io_uring = spec.io_uring;
  if (spec.seccomp_profile.empty()) {
    auto f = fwp::compile_default_profile(opts);
    if (!f.ok()) return fail(ConfigError{where + ": default seccomp profile: " + f.error().message()});
    image->filter = std::move(f.value());
  } else {
    auto text = read_text_file(spec.seccomp_profile);
    if (!text.ok()) return fail(ConfigError{where + ": " + text.error().message});
    auto f = fwp::compile_oci_profile(text.value(), opts, spec.seccomp_profile);
    if (!f.ok()) return fail(ConfigError{where + ": seccomp profile: " + f.error().message()});
    image->filter = std::move(f.value());
  }
  return image;
}

ConfigResult<bool> ImageRegistry::remove(const std::string& name) {
  if (name == "host") return fail(ConfigError{"the built-in image host cannot be removed"});
  return images_.erase(name) > 0;
}

Image* ImageRegistry::find(const std::string& name) {
  auto it = images_.find(name);
  return it == images_.end() ? nullptr : it->second.get();
}

std::vector<Image*> ImageRegistry::list() {
  std::vector<Image*> out;
  for (auto& [n, i] : images_) out.push_back(i.get());
  return out;
}

}  // namespace plume::kernel
