// OCI runtime-spec seccomp profiles (the `linux.seccomp` object, as Docker, containerd and runc
// read it) turned into a seccomp_build::Plan. Unknown syscall names are skipped with a warning,
// as runc does; anything malformed is an error naming the field.
#include <cctype>
#include <cerrno>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "plume/fwp/seccomp_profile.h"
#include "seccomp_build.h"

namespace plume::fwp {
namespace {

using nlohmann::json;

struct Parser {
  std::string source;

  SysError error(const std::string& field, const std::string& what) const {
    return plain_error("seccomp profile", source + ": " + field + ": " + what);
  }

  SysResult<uint32_t> errno_value(const json& obj, const char* key, const std::string& field) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return uint32_t{EPERM};  // runc's default
    if (!it->is_number_unsigned() || it->get<uint64_t>() > 4095)
      return fail(error(field.empty() ? key : field + "." + key, "must be an errno number 0..4095"));
    return static_cast<uint32_t>(it->get<uint64_t>());
  }

  SysResult<uint32_t> action(const json& value, uint32_t errno_ret, const std::string& field) const {
    if (!value.is_string()) return fail(error(field, "must be a string"));
    const auto& name = value.get_ref<const std::string&>();
    if (name == "SCMP_ACT_ALLOW") return uint32_t{SCMP_ACT_ALLOW};
    if (name == "SCMP_ACT_ERRNO") return uint32_t{SCMP_ACT_ERRNO(errno_ret)};
    if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD") return uint32_t{SCMP_ACT_KILL_THREAD};
    if (name == "SCMP_ACT_KILL_PROCESS") return uint32_t{SCMP_ACT_KILL_PROCESS};
    if (name == "SCMP_ACT_TRAP") return uint32_t{SCMP_ACT_TRAP};
    if (name == "SCMP_ACT_LOG") return uint32_t{SCMP_ACT_LOG};
    // TRACE hands the syscall to a ptracer and NOTIFY to a listener: neither exists for a worker,
    // and both would turn a denial into whatever the other side decides.
    if (name == "SCMP_ACT_TRACE" || name == "SCMP_ACT_NOTIFY")
      return fail(error(field, name + " is not supported (no tracer or notifier for workers)"));
    return fail(error(field, "unknown action '" + name + "'"));
  }

  SysResult<scmp_compare> op(const json& value, const std::string& field) const {
    static const std::map<std::string, scmp_compare> ops = {
        {"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT},
        {"SCMP_CMP_LE", SCMP_CMP_LE}, {"SCMP_CMP_EQ", SCMP_CMP_EQ},
        {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
        {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};
    if (!value.is_string()) return fail(error(field, "must be a string"));
    auto it = ops.find(value.get<std::string>());
    if (it == ops.end()) return fail(error(field, "unknown operator '" + value.get<std::string>() + "'"));
    return it->second;
  }

  SysResult<uint32_t> arch(const json& value, const std::string& field) const {
    if (!value.is_string()) return fail(error(field, "must be a string"));
    std::string name = value.get<std::string>();
    const std::string prefix = "SCMP_ARCH_";
    if (name.rfind(prefix, 0) != 0) return fail(error(field, "unknown architecture '" + name + "'"));
    std::string lib = name.substr(prefix.size());
    for (char& c : lib) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    uint32_t token = seccomp_arch_resolve_name(lib.c_str());
    if (token == 0) return fail(error(field, "unknown architecture '" + name + "'"));
    return token;
  }

  SysResult<uint64_t> u64(const json& obj, const char* key, bool required, const std::string& field) const {
    auto it = obj.find(key);
    if (it == obj.end()) {
      if (required) return fail(error(field + "." + key, "missing"));
      return uint64_t{0};
    }
    if (!it->is_number_unsigned()) return fail(error(field + "." + key, "must be an unsigned number"));
    return it->get<uint64_t>();
  }

  // One OCI "args" list becomes one or more rule argument sets. libseccomp allows one comparison
  // per argument index in a rule, so a list that repeats an index becomes one rule per
  // comparison (OR), as runc does; otherwise all comparisons form one rule (AND).
  SysResult<std::vector<std::vector<scmp_arg_cmp>>> args(const json& list, const std::string& field) const {
    std::vector<scmp_arg_cmp> cmps;
    if (!list.is_array()) return fail(error(field, "must be an array"));
    bool repeated = false;
    for (size_t i = 0; i < list.size(); ++i) {
      const json& a = list[i];
      const std::string f = field + "[" + std::to_string(i) + "]";
      if (!a.is_object()) return fail(error(f, "must be an object"));
      auto index = u64(a, "index", true, f);
      if (!index) return fail(index.error());
      if (*index > 5) return fail(error(f + ".index", "must be 0..5"));
      auto value = u64(a, "value", true, f);
      if (!value) return fail(value.error());
      auto two = u64(a, "valueTwo", false, f);
      if (!two) return fail(two.error());
      auto it = a.find("op");
      if (it == a.end()) return fail(error(f + ".op", "missing"));
      auto o = op(*it, f + ".op");
      if (!o) return fail(o.error());
      for (const auto& c : cmps) repeated |= c.arg == *index;
      cmps.push_back(scmp_arg_cmp{static_cast<unsigned>(*index), *o, *value, *two});
    }
    std::vector<std::vector<scmp_arg_cmp>> sets;
    if (!repeated) {
      sets.push_back(std::move(cmps));
    } else {
      for (const auto& c : cmps) sets.push_back({c});
    }
    return sets;
  }

  SysResult<std::vector<std::string>> names(const json& rule, const std::string& field) const {
    std::vector<std::string> out;
    if (auto it = rule.find("names"); it != rule.end()) {
      if (!it->is_array()) return fail(error(field + ".names", "must be an array of strings"));
      for (const auto& n : *it) {
        if (!n.is_string()) return fail(error(field + ".names", "must be an array of strings"));
        out.push_back(n.get<std::string>());
      }
    }
    // Older Docker profiles name one syscall per rule.
    if (auto it = rule.find("name"); it != rule.end()) {
      if (!it->is_string()) return fail(error(field + ".name", "must be a string"));
      out.push_back(it->get<std::string>());
    }
    if (out.empty()) return fail(error(field + ".names", "missing or empty"));
    return out;
  }
};

bool is_io_uring(const std::string& name) {
  for (const char* n : seccomp_build::kIoUringSyscalls)
    if (name == n) return true;
  return false;
}

}  // namespace

SysResult<CompiledFilter> compile_oci_profile(std::string_view json_text, const SeccompOptions& opts,
                                              std::string source_name) {
  Parser p{source_name};
  json doc = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return fail(p.error("(document)", "not valid JSON"));
  if (!doc.is_object()) return fail(p.error("(document)", "must be a JSON object"));

  seccomp_build::Plan plan;
  auto default_errno = p.errno_value(doc, "defaultErrnoRet", "");
  if (!default_errno) return fail(default_errno.error());
  auto def = doc.find("defaultAction");
  if (def == doc.end()) return fail(p.error("defaultAction", "missing"));
  auto default_action = p.action(*def, *default_errno, "defaultAction");
  if (!default_action) return fail(default_action.error());
  plan.default_action = *default_action;

  if (auto it = doc.find("architectures"); it != doc.end() && !it->is_null()) {
    if (!it->is_array()) return fail(p.error("architectures", "must be an array"));
    for (size_t i = 0; i < it->size(); ++i) {
      auto a = p.arch((*it)[i], "architectures[" + std::to_string(i) + "]");
      if (!a) return fail(a.error());
      plan.extra_arches.push_back(*a);
    }
  }
  if (auto it = doc.find("flags"); it != doc.end() && !it->is_null() && !it->empty())
    plan.warnings.push_back("flags ignored: Plume loads every filter the same way");
  if (auto it = doc.find("listenerPath"); it != doc.end() && !it->is_null())
    return fail(p.error("listenerPath", "seccomp notification listeners are not supported"));

  if (auto it = doc.find("syscalls"); it != doc.end() && !it->is_null()) {
    if (!it->is_array()) return fail(p.error("syscalls", "must be an array"));
    for (size_t i = 0; i < it->size(); ++i) {
      const json& rule = (*it)[i];
      const std::string f = "syscalls[" + std::to_string(i) + "]";
      if (!rule.is_object()) return fail(p.error(f, "must be an object"));
      auto names = p.names(rule, f);
      if (!names) return fail(names.error());
      // Docker's includes/excludes select rules by capability or architecture; Plume grants no
      // capabilities, so such a rule would grant more than intended. It is left out, loudly.
      bool conditional = false;
      for (const char* key : {"includes", "excludes"}) {
        if (auto c = rule.find(key); c != rule.end() && !c->is_null() && !c->empty()) conditional = true;
      }
      if (conditional) {
        plan.warnings.push_back(f + " has includes/excludes and was skipped");
        continue;
      }
      auto errno_ret = p.errno_value(rule, "errnoRet", f);
      if (!errno_ret) return fail(errno_ret.error());
      auto act_it = rule.find("action");
      if (act_it == rule.end()) return fail(p.error(f + ".action", "missing"));
      auto action = p.action(*act_it, *errno_ret, f + ".action");
      if (!action) return fail(action.error());
      std::vector<std::vector<scmp_arg_cmp>> arg_sets{{}};
      if (auto a = rule.find("args"); a != rule.end() && !a->is_null()) {
        auto sets = p.args(*a, f + ".args");
        if (!sets) return fail(sets.error());
        if (!sets->empty()) arg_sets = std::move(*sets);
      }
      for (const auto& name : *names) {
        // io_uring carries operations that seccomp never sees; only the image switch opens it.
        if (is_io_uring(name) && !opts.allow_io_uring) continue;
        for (const auto& set : arg_sets) plan.rules.push_back(seccomp_build::Rule{name, *action, set});
      }
    }
  }

  if (!opts.allow_io_uring) {
    for (const char* name : seccomp_build::kIoUringSyscalls)
      plan.rules.push_back(seccomp_build::Rule{name, SCMP_ACT_ERRNO(EPERM), {}});
  }
  return seccomp_build::compile(plan, std::move(source_name));
}

}  // namespace plume::fwp
