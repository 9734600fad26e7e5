// plume: the command-line client of plumed's control API. One verb group per cmd_*.cc file;
// this file parses the global options and dispatches to the selected verb.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "cli.h"

namespace {

constexpr const char* kDefaultSocket = "/run/plume/plumed.sock";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  size_t i = s.find_first_not_of(" \t");
  return i == std::string::npos ? std::string() : s.substr(i);
}

// --token, else $PLUME_TOKEN, else the admin token file plumed wrote beside its socket.
std::string resolve_token(const std::string& flag, const std::string& socket) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("PLUME_TOKEN"); env && *env) return env;
  size_t slash = socket.rfind('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : socket.substr(0, slash));
  std::ifstream in(dir + "/admin.token");
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return trim(ss.str());
}

}  // namespace

int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape): as plumed_main.cc
  using namespace plume::cli;
  Context ctx;
  std::string token_flag;
  if (const char* env = std::getenv("PLUME_SOCKET"); env && *env) ctx.socket = env;
  else ctx.socket = kDefaultSocket;

  CLI::App app("plume: control plumed, the Plume supervisor", "plume");
  app.set_help_all_flag("--help-all", "Help for every verb");
  app.footer(kExitCodesFooter);
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--socket", ctx.socket, "plumed's control socket (default $PLUME_SOCKET or /run/plume/plumed.sock)");
  app.add_option("--token", token_flag, "API token (default $PLUME_TOKEN, else <socket dir>/admin.token)");
  app.add_flag("--json", ctx.json, "Print raw JSON instead of tables");

  Actions actions;
  add_worker_commands(app, ctx, actions);
  add_tenant_commands(app, ctx, actions);
  add_image_commands(app, ctx, actions);
  add_stats_commands(app, ctx, actions);
  for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    sub->fallthrough();
    for (auto* leaf : sub->get_subcommands([](CLI::App*) { return true; })) leaf->fallthrough();
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  ctx.token = resolve_token(token_flag, ctx.socket);

  // The deepest selected subcommand is the verb.
  const CLI::App* verb = &app;
  while (!verb->get_subcommands().empty()) verb = verb->get_subcommands().front();
  auto it = actions.find(verb);
  if (it == actions.end()) {
    std::cerr << verb->help();
    return kExitUsage;
  }
  return it->second();
}
