// Worker verbs: run, ps, inspect, kill, logs, wait, rm, send.
#include <ctime>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli.h"
#include "table.h"

namespace plume::cli {
namespace {

using nlohmann::json;

std::string worker_path(const std::string& id) { return "/v1/workers/" + url_encode(id); }

int64_t num(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<int64_t>() : 0;
}
std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

struct ExitInfo {
  std::string text;
  int code;
};

// How a worker ended, in words, and the shell-style exit code `wait` and `run --wait` return.
ExitInfo describe_exit(const json& w) {
  std::string state = str(w, "state");
  if (state == "running") return {"still running", kExitTimeout};
  const json exit = w.contains("exit") && w["exit"].is_object() ? w["exit"] : json::object();
  std::string cause = str(exit, "cause");
  int sig = static_cast<int>(num(exit, "signal"));
  std::string sig_name = str(exit, "signal_name");
  if (sig_name.empty() && sig != 0) sig_name = std::to_string(sig);
  if (state == "failed" || cause == "spawn_failed")
    return {"failed to start: " + str(exit, "message"), kExitSpawnFailed};
  if (cause == "exit") {
    int code = static_cast<int>(num(exit, "code"));
    return {"exited with code " + std::to_string(code), code};
  }
  if (cause == "signal") return {"killed by signal " + sig_name + " (" + std::to_string(sig) + ")", 128 + sig};
  if (cause == "oom") return {"killed by the OOM killer (memory limit)", 128 + (sig ? sig : 9)};
  if (cause == "limit") {
    std::string msg = str(exit, "message");
    return {"killed: limit exceeded" + (msg.empty() ? std::string() : " (" + msg + ")"), 128 + (sig ? sig : 9)};
  }
  return {"ended (" + cause + ")", kExitRefused};
}

std::string exit_column(const json& w) {
  std::string state = str(w, "state");
  if (state == "running") return "-";
  const json exit = w.contains("exit") && w["exit"].is_object() ? w["exit"] : json::object();
  std::string cause = str(exit, "cause");
  if (cause == "exit") return "exit " + std::to_string(num(exit, "code"));
  if (cause == "signal") {
    std::string name = str(exit, "signal_name");
    return "signal " + (name.empty() ? std::to_string(num(exit, "signal")) : name);
  }
  return cause.empty() ? state : cause;
}

std::string command_of(const json& w) {
  std::string out;
  if (w.contains("argv") && w["argv"].is_array())
    for (const auto& a : w["argv"]) {
      if (!out.empty()) out += ' ';
      out += a.is_string() ? a.get<std::string>() : a.dump();
    }
  return out;
}

// Fetches one log stream; "" (and a message) when it cannot.
std::optional<std::string> fetch_log(const Context& ctx, const std::string& id, const char* stream, int& rc) {
  auto reply = call(ctx, "GET", worker_path(id) + "/logs?stream=" + stream, nullptr, rc);
  if (!reply) return std::nullopt;
  std::string dropped = reply->header("x-plume-log-dropped");
  if (!dropped.empty() && dropped != "0")
    std::cerr << "plume: " << dropped << " earlier bytes of " << stream << " were dropped\n";
  return reply->body;
}

// --timeout's value: 0 when it was not given; nullopt, once said why, when it is not a duration.
std::optional<std::chrono::milliseconds> timeout_option(const std::string& text, const char* option = "--timeout") {
  if (text.empty()) return std::chrono::milliseconds{0};
  auto d = parse_duration(text);
  if (!d) std::cerr << "plume: " << option << ": not a duration: " << text << " (try 500ms or 2s)\n";
  return d;
}

// GET .../wait; timeout 0 = as long as it takes.
std::optional<json> wait_worker(const Context& ctx, const std::string& id, std::chrono::milliseconds timeout,
                                int& rc) {
  std::string target = worker_path(id) + "/wait";
  std::chrono::milliseconds client_timeout{0};
  if (timeout.count() > 0) {
    target += "?timeout_ms=" + std::to_string(timeout.count());
    client_timeout = timeout + std::chrono::seconds(30);
  }
  return call_json(ctx, "GET", target, nullptr, rc, client_timeout);
}

struct RunOpts {
  std::string image, tenant, memory, cwd, timeout, fwp_image;
  int64_t pids = -1, cpu = -1;
  std::vector<std::string> env, argv, input;
  bool wait = false;
  bool input_base64 = false;  // --input values are base64
};

int run_cmd(const Context& ctx, const RunOpts& o) {
  json spec = json::object();
  if (!o.fwp_image.empty()) {
    // A featherweight instance runs its image's app: no command, messages instead.
    if (!o.argv.empty() || !o.image.empty()) {
      std::cerr << "plume: run --fwp IMAGE takes no --image and no command (use --input MSG)\n";
      return kExitUsage;
    }
    spec["fwp"] = true;
    spec["image"] = o.fwp_image;
    if (!o.input.empty()) spec["input"] = o.input;
    if (o.input_base64) spec["input_encoding"] = "base64";
  } else {
    if (o.argv.empty()) {
      std::cerr << "plume: run: a command is required (plume run [OPTIONS] -- CMD [ARGS...])\n";
      return kExitUsage;
    }
    if (!o.input.empty() || o.input_base64) {
      std::cerr << "plume: --input and --input-base64 are for featherweight instances (--fwp IMAGE)\n";
      return kExitUsage;
    }
    spec["argv"] = o.argv;
  }
  if (!o.image.empty()) spec["image"] = o.image;
  if (!o.tenant.empty()) spec["tenant"] = o.tenant;
  if (!o.env.empty()) {
    std::vector<std::string> env = o.env;
    bool has_path = false;
    for (const auto& e : env) has_path |= e.rfind("PATH=", 0) == 0;
    if (!has_path) env.insert(env.begin(), "PATH=/usr/local/bin:/usr/bin:/bin");
    spec["env"] = env;
  }
  if (!o.cwd.empty()) spec["cwd"] = o.cwd;
  json limits = json::object();
  if (!o.memory.empty()) {
    auto bytes = parse_size(o.memory);
    if (!bytes) {
      std::cerr << "plume: --memory: not a size: " << o.memory << " (try 64M)\n";
      return kExitUsage;
    }
    limits["memory_bytes"] = *bytes;
  }
  if (o.pids >= 0) limits["pids_max"] = o.pids;
  if (o.cpu >= 0) limits["cpu_percent"] = o.cpu;
  if (!limits.empty()) spec["limits"] = limits;
  const auto timeout = timeout_option(o.timeout);
  if (!timeout) return kExitUsage;
  if (!o.timeout.empty()) spec["timeout_ms"] = timeout->count();
  int rc = kExitOk;
  auto worker = call_json(ctx, "POST", "/v1/workers", &spec, rc);
  if (!worker) return rc;
  std::string id = str(*worker, "id");
  if (!o.wait) {
    if (ctx.json) print_json(*worker);
    else std::cout << id << "\n";
    return kExitOk;
  }
  // With --wait stdout carries only the worker's output; the id goes to stderr.
  if (!ctx.json) std::cerr << id << "\n";
  auto done = wait_worker(ctx, id, std::chrono::milliseconds{0}, rc);
  if (!done) return rc;
  if (ctx.json) {
    print_json(*done);
  } else {
    auto out = fetch_log(ctx, id, "stdout", rc);
    if (!out) return rc;
    auto err = fetch_log(ctx, id, "stderr", rc);
    if (!err) return rc;
    std::cout << *out << std::flush;
    std::cerr << *err << std::flush;
  }
  ExitInfo info = describe_exit(*done);
  if (info.code == kExitSpawnFailed || info.code >= 128)
    std::cerr << "plume: worker " << id << " " << info.text << "\n";
  return info.code;
}

struct PsOpts {
  bool all = false;
  std::string tenant;
};

int ps_cmd(const Context& ctx, const PsOpts& o) {
  int rc = kExitOk;
  std::string target = "/v1/workers";
  if (!o.tenant.empty()) target += "?tenant=" + url_encode(o.tenant);
  auto j = call_json(ctx, "GET", target, nullptr, rc);
  if (!j) return rc;
  json shown = json::array();
  if (j->contains("workers") && (*j)["workers"].is_array())
    for (const auto& w : (*j)["workers"])
      if (o.all || str(w, "state") == "running") shown.push_back(w);
  if (ctx.json) {
    print_json(json{{"workers", shown}});
    return kExitOk;
  }
  Table t({"ID", "TENANT", "IMAGE", "PID", "STATE", "EXIT", "CPU", "PEAK-MEM", "AGE", "COMMAND"});
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  for (const auto& w : shown) {
    auto created = parse_rfc3339(str(w, "created_at"));
    // 0: it never ran, or an instance ended before plumed learnt its pid.
    const int64_t pid = num(w, "pid");
    t.add_row({str(w, "id"), str(w, "tenant"), str(w, "image"), pid > 0 ? std::to_string(pid) : "-",
               str(w, "state"),
               exit_column(w), cpu_seconds(static_cast<uint64_t>(num(w, "cpu_ns"))),
               human_bytes(static_cast<uint64_t>(num(w, "peak_memory_bytes"))),
               created ? human_age(now - *created) : "-", truncate(command_of(w), 40)});
  }
  std::cout << t.render();
  return kExitOk;
}

int inspect_cmd(const Context& ctx, const std::string& id) {
  int rc = kExitOk;
  auto j = call_json(ctx, "GET", worker_path(id), nullptr, rc);
  if (!j) return rc;
  print_json(*j);
  return kExitOk;
}

int kill_cmd(const Context& ctx, const std::string& id, const std::string& signal) {
  json body;
  bool numeric = !signal.empty() && signal.find_first_not_of("0123456789") == std::string::npos;
  if (numeric && signal.size() <= 3) body["signal"] = std::stoi(signal);
  else body["signal"] = signal;
  int rc = kExitOk;
  auto reply = call(ctx, "POST", worker_path(id) + "/signal", &body, rc);
  if (!reply) return rc;
  if (ctx.json) {
    auto j = parse_json(*reply, rc);
    if (!j) return rc;
    print_json(*j);
  } else {
    std::cout << id << "\n";
  }
  return kExitOk;
}

// plume logs -f: what the stream holds, then what comes, until the worker has ended and all of
// it is out. Each request waits in plumed (wait_ms) until there is more: nothing polls.
int follow_log(const Context& ctx, const std::string& id, const char* stream) {
  uint64_t offset = 0;
  for (;;) {
    int rc = kExitOk;
    auto reply = call(ctx, "GET",
                      worker_path(id) + "/logs?stream=" + stream + "&since=" + std::to_string(offset) + "&wait_ms=20000",
                      nullptr, rc, std::chrono::seconds(50));
    if (!reply) return rc;
    const std::string skipped = reply->header("x-plume-log-skipped");
    if (!skipped.empty() && skipped != "0")
      std::cerr << "plume: " << skipped << " bytes of " << stream << " were dropped before they could be shown\n";
    std::cout << reply->body << std::flush;
    const std::string next = reply->header("x-plume-log-offset");
    if (reply->header("x-plume-log-end") == "true") return kExitOk;
    if (next.empty() || next.size() > 19 || next.find_first_not_of("0123456789") != std::string::npos) {
      std::cerr << "plume: plumed did not say where the log goes on (no X-Plume-Log-Offset)\n";
      return kExitRefused;
    }
    offset = std::stoull(next);
  }
}

int logs_cmd(const Context& ctx, const std::string& id, bool stderr_stream, bool follow) {
  if (follow) return follow_log(ctx, id, stderr_stream ? "stderr" : "stdout");
  int rc = kExitOk;
  auto log = fetch_log(ctx, id, stderr_stream ? "stderr" : "stdout", rc);
  if (!log) return rc;
  std::cout << *log << std::flush;
  return kExitOk;
}

int wait_cmd(const Context& ctx, const std::string& id, const std::string& timeout) {
  const auto given = timeout_option(timeout);
  if (!given) return kExitUsage;
  const std::chrono::milliseconds t = *given;
  int rc = kExitOk;
  auto w = wait_worker(ctx, id, t, rc);
  if (!w) return rc;
  ExitInfo info = describe_exit(*w);
  if (ctx.json) print_json(*w);
  else if (info.code == kExitTimeout && str(*w, "state") == "running")
    std::cout << id << ": timed out after " << t.count() << "ms, still running\n";
  else std::cout << id << ": " << info.text << "\n";
  return info.code;
}

struct SendOpts {
  std::string id, timeout, wait_for_room;
  std::vector<std::string> messages;
  int64_t replies = 0;
  bool base64 = false;  // messages given and replies printed in base64
};

// POST .../messages: the messages go into the instance's channel; its replies come back, one a line.
int send_cmd(const Context& ctx, const SendOpts& o) {
  if (o.messages.empty() && o.replies <= 0) {
    std::cerr << "plume: send: give a message, or --replies N to wait for replies\n";
    return kExitUsage;
  }
  if (o.replies < 0) {
    std::cerr << "plume: --replies: not a count: " << o.replies << "\n";
    return kExitUsage;
  }
  json body = {{"messages", o.messages}, {"replies", o.replies}};
  if (o.base64) body["encoding"] = "base64";
  const auto timeout = timeout_option(o.timeout);
  if (!timeout) return kExitUsage;
  const auto room = timeout_option(o.wait_for_room, "--wait-for-room");
  if (!room) return kExitUsage;
  if (room->count() > 0) body["wait_for_room_ms"] = room->count();
  std::chrono::milliseconds client_timeout{0};  // none: the replies may take as long as they take
  if (timeout->count() > 0) {
    body["timeout_ms"] = timeout->count();
    client_timeout = *timeout + *room + std::chrono::seconds(30);
  }
  int rc = kExitOk;
  auto answer = call_json(ctx, "POST", worker_path(o.id) + "/messages", &body, rc, client_timeout);
  if (!answer) return rc;
  const json replies = answer->contains("replies") ? (*answer)["replies"] : json::array();
  if (ctx.json) {
    print_json(*answer);
  } else {
    for (const json& r : replies) std::cout << (r.is_string() ? r.get<std::string>() : r.dump()) << "\n";
    std::cout << std::flush;
  }
  const auto got = static_cast<int64_t>(replies.size());
  if (got >= o.replies) return kExitOk;
  if (answer->value("timed_out", false)) {
    std::cerr << "plume: " << o.id << ": timed out after " << got << " of " << o.replies << " replies\n";
    return kExitTimeout;
  }
  std::cerr << "plume: " << o.id << ": ended after " << got << " of " << o.replies << " replies\n";
  return kExitRefused;
}

int rm_cmd(const Context& ctx, const std::string& id) {
  int rc = kExitOk;
  auto reply = call(ctx, "DELETE", worker_path(id), nullptr, rc);
  if (!reply) return rc;
  if (!ctx.json) std::cout << id << "\n";
  return kExitOk;
}

}  // namespace

void add_worker_commands(CLI::App& app, Context& ctx, Actions& actions) {
  {
    auto o = std::make_shared<RunOpts>();
    auto* sub = app.add_subcommand("run", "Start a worker running CMD (put `--` before CMD)");
    sub->add_option("--image", o->image, "Image to run in (default: host)");
    sub->add_option("--tenant", o->tenant, "Tenant to run as (admin token only)");
    sub->add_option("--memory", o->memory, "Memory limit, e.g. 64M");
    sub->add_option("--pids", o->pids, "Maximum number of processes");
    sub->add_option("--cpu", o->cpu, "CPU limit in percent of one core");
    sub->add_option("--timeout", o->timeout, "Kill the worker after DURATION (500ms, 2s; bare number = ms)");
    sub->add_option("-e,--env", o->env, "Environment variable K=V (repeatable)")->allow_extra_args(false);
    sub->add_option("--cwd", o->cwd, "Working directory inside the worker");
    sub->add_flag("-w,--wait", o->wait, "Wait for the worker, print its logs, exit with its exit code");
    sub->add_option("--fwp", o->fwp_image, "Start a featherweight instance of IMAGE's app (from its template or warm pool)");
    sub->add_option("--input", o->input, "Message for the instance (repeatable, in order; the first starts it)")
        ->allow_extra_args(false);
    sub->add_flag("--input-base64", o->input_base64, "The --input messages are base64: for bytes that are not text");
    sub->add_option("command", o->argv, "CMD [ARGS...]");
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, o] { return run_cmd(ctx, *o); };
  }
  {
    auto o = std::make_shared<PsOpts>();
    auto* sub = app.add_subcommand("ps", "List workers (running ones unless --all)");
    sub->add_flag("-a,--all", o->all, "Include exited and failed workers");
    sub->add_option("--tenant", o->tenant, "Only this tenant's workers (admin)");
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, o] { return ps_cmd(ctx, *o); };
  }
  {
    auto id = std::make_shared<std::string>();
    auto* sub = app.add_subcommand("inspect", "Show a worker as JSON");
    sub->add_option("id", *id, "Worker id")->required();
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, id] { return inspect_cmd(ctx, *id); };
  }
  {
    auto id = std::make_shared<std::string>();
    auto sig = std::make_shared<std::string>("KILL");
    auto* sub = app.add_subcommand("kill", "Send a signal to a worker");
    sub->add_option("-s,--signal", *sig, "Signal name or number (default KILL)");
    sub->add_option("id", *id, "Worker id")->required();
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, id, sig] { return kill_cmd(ctx, *id, *sig); };
  }
  {
    auto id = std::make_shared<std::string>();
    auto err = std::make_shared<bool>(false);
    auto follow = std::make_shared<bool>(false);
    auto* sub = app.add_subcommand("logs", "Print a worker's stdout (or --stderr) log");
    sub->add_flag("--stderr", *err, "Print the stderr log instead of stdout");
    sub->add_flag("-f,--follow", *follow, "Keep printing what it writes until it has ended");
    sub->add_option("id", *id, "Worker id")->required();
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, id, err, follow] { return logs_cmd(ctx, *id, *err, *follow); };
  }
  {
    auto id = std::make_shared<std::string>();
    auto timeout = std::make_shared<std::string>();
    auto* sub = app.add_subcommand("wait", "Wait for a worker to end; exit with its exit code");
    sub->add_option("--timeout", *timeout, "Give up after DURATION (exit 124)");
    sub->add_option("id", *id, "Worker id")->required();
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, id, timeout] { return wait_cmd(ctx, *id, *timeout); };
  }
  {
    auto o = std::make_shared<SendOpts>();
    auto* sub = app.add_subcommand("send", "Send messages to a running featherweight instance; print its replies");
    sub->add_option("-r,--replies", o->replies, "Wait for this many replies and print them, one a line (default 0)");
    sub->add_option("--timeout", o->timeout, "Stop waiting for replies after DURATION (exit 124)");
    sub->add_option("--wait-for-room", o->wait_for_room,
                    "While the instance's channel is full, wait up to DURATION for it to read enough "
                    "(default: refused at once)");
    sub->add_flag("--base64", o->base64,
                  "Messages are given in base64 and replies printed in base64, one a line: for bytes that are "
                  "not text");
    sub->add_option("id", o->id, "Worker id of the instance")->required();
    sub->add_option("messages", o->messages, "Messages, in order (each one message on its channel)");
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, o] { return send_cmd(ctx, *o); };
  }
  {
    auto id = std::make_shared<std::string>();
    auto* sub = app.add_subcommand("rm", "Remove an ended worker's record");
    sub->add_option("id", *id, "Worker id")->required();
    sub->footer(kExitCodesFooter);
    actions[sub] = [&ctx, id] { return rm_cmd(ctx, *id); };
  }
}

}  // namespace plume::cli
