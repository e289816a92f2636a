// The pagevisor command line (docs/cli.md): `run`, `info`, `--version`.
// run_cli() is main() minus the process: it parses argv, runs the command and
// returns the exit status, writing normal output to `out` and the one-line
// errors ("pagevisor: error: ...") to `err`.
#pragma once

#include <iosfwd>
#include <string>

#include "vmm/run/run_config.h"

namespace pv::cli {

int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

// The guest image used when --guest is not given: $PAGEVISOR_GUEST, else
// <directory of this executable>/../guest/pvguest.elf.
std::string default_guest_path();

// `pagevisor info`.
int info_command(std::ostream& out, std::ostream& err);

// The block printed after `run` (unless --quiet).
std::string format_report(const run::RunConfig& config, const run::RunResult& result);

}  // namespace pv::cli
