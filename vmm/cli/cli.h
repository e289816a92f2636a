// The pagevisor command line (docs/cli.md): `run`, `info`, `--version`.
// run_cli() is main() minus the process: it parses argv, runs the command and
// returns the exit status, writing normal output to `out` and the one-line
// errors ("pagevisor: error: ...") to `err`.
#pragma once

#include <iosfwd>
#include <memory>
#include <string>

#include "vmm/run/run_config.h"

namespace pv::cli {

int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

// run_cli() with the option parser built once, for callers that parse many
// command lines (fuzz_cli): run() behaves exactly like run_cli().
class CommandLine {
public:
    CommandLine();
    ~CommandLine();
    CommandLine(const CommandLine&) = delete;
    CommandLine& operator=(const CommandLine&) = delete;

    int run(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// The guest image used when --guest is not given: $PAGEVISOR_GUEST, else
// <directory of this executable>/../guest/pvguest.elf.
std::string default_guest_path();

// `pagevisor info`.
int info_command(std::ostream& out, std::ostream& err);

// The block printed after `run` (unless --quiet).
std::string format_report(const run::RunConfig& config, const run::RunResult& result);

}  // namespace pv::cli
