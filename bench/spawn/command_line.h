// The "--flag [value]" loop of a benchmark's main, keeping the command line as given for its
// report (summary.md quotes the command that produced it).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace plume::bench {

class CommandLine {
 public:
  CommandLine(const char* tool, int argc, char** argv) : tool_(tool), argc_(argc), argv_(argv), command_(tool) {}

  // Steps to the next word; false once all are read.
  bool next() {
    if (++at_ >= argc_) return false;
    flag_ = argv_[at_];
    command_ += " " + flag_;
    return true;
  }
  const std::string& flag() const { return flag_; }
  // The word after the flag, taken: its value. A flag without one exits 2, saying so.
  std::string value() {
    if (at_ + 1 >= argc_) {
      std::fprintf(stderr, "%s: %s needs a value\n", tool_, flag_.c_str());
      std::exit(2);
    }
    command_ += " " + std::string(argv_[at_ + 1]);
    return argv_[++at_];
  }
  int int_value() { return std::atoi(value().c_str()); }
  const std::string& command() const { return command_; }

 private:
  const char* tool_;
  int argc_;
  char** argv_;
  int at_ = 0;
  std::string flag_, command_;
};

}  // namespace plume::bench
