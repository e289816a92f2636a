// fuzz_cli: the command line (vmm/cli/cli.h run_cli) with argv from the input.
//
// Input: argument strings separated by NUL or newline ("run\n--memory\n1G").
// run_cli() has no parse-only entry, so the link replaces pv::run::run_vm and
// pv::cli::info_command with the stubs below (-Wl,--wrap, fuzz/CMakeLists.txt):
// everything up to booting -- CLI11 parsing, to_config, the size grammar,
// parameter and timeout conversion -- runs for real, then the stub checks the
// RunConfig it receives and returns a result that format_report prints.
// Properties: no exception escapes run_cli (an uncaught one aborts); the exit
// status is 0 (help, version, stubbed run/info) or 2 (usage); run_vm only ever
// sees a config within the documented limits; a usage error writes
// "pagevisor: error: ..." to err.
#include <sstream>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "vmm/abi/layout.h"
#include "vmm/cli/cli.h"

// The wrapped symbols: calls from cli.cpp to run_vm / info_command land here.
pv::Expected<pv::run::RunResult> fuzz_run_vm(const pv::run::RunConfig& config) __asm__(
    "__wrap__ZN2pv3run6run_vmERKNS0_9RunConfigE");
int fuzz_info_command(std::ostream& out, std::ostream& err) __asm__("__wrap__ZN2pv3cli12info_commandERSoS1_");

pv::Expected<pv::run::RunResult> fuzz_run_vm(const pv::run::RunConfig& config) {
    PV_FUZZ_CHECK(config.vcpus >= 1 && config.vcpus <= pv::layout::kMaxVcpus, "vcpus out of range reached run_vm");
    PV_FUZZ_CHECK(config.memory >= pv::layout::kMinRamSize && config.memory % pv::layout::kPage == 0,
                  "bad memory size reached run_vm: " + std::to_string(config.memory));
    PV_FUZZ_CHECK(config.timeout.count() >= 1, "non-positive timeout reached run_vm");
    PV_FUZZ_CHECK(!config.guest_path.empty(), "empty guest path reached run_vm");
    pv::run::RunResult result;
    result.memory = config.memory;
    result.vcpus.resize(config.vcpus);
    result.guest_exit_code = 0;
    result.console = "stub\n";
    return result;
}

int fuzz_info_command(std::ostream& out, std::ostream&) {
    out << "info (stubbed by fuzz_cli)\n";
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 4096) return 0;
    std::vector<std::string> args{"pagevisor"};
    std::string current;
    for (size_t i = 0; i < size; ++i) {
        char c = static_cast<char>(data[i]);
        if (c == '\0' || c == '\n') {
            args.push_back(std::move(current));
            current.clear();
        } else {
            current.push_back(c);
        }
    }
    if (!current.empty()) args.push_back(std::move(current));
    if (args.size() > 64) return 0;
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    argv.push_back(nullptr);

    std::ostringstream out;
    std::ostringstream err;
    int status = pv::cli::run_cli(static_cast<int>(args.size()), argv.data(), out, err);
    PV_FUZZ_CHECK(status == 0 || status == 2, "unexpected exit status " + std::to_string(status) + ": " + err.str());
    if (status == 2) PV_FUZZ_CHECK(err.str().rfind("pagevisor: error: ", 0) == 0, "usage error format: " + err.str());
    return 0;
}
