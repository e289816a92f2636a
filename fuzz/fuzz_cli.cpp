// fuzz_cli: the command line (vmm/cli/cli.h run_cli / CommandLine) with argv
// from the input.
//
// Input: argument strings separated by NUL or newline ("run\n--memory\n1G").
// So that no VM boots, the link replaces pv::run::run_vm and
// pv::cli::info_command with the stubs below (-Wl,--wrap, fuzz/CMakeLists.txt):
// everything up to booting -- CLI11 parsing, to_config, the size grammar,
// parameter and timeout conversion -- runs for real, then the stub checks the
// RunConfig it receives and returns a result that format_report prints.
// Properties: no exception escapes run_cli (an uncaught one aborts); the exit
// status is 0 (help, version, stubbed run/info), 2 (usage) or 8 (a --config or
// --rom file that cannot be read); run_vm only ever sees a config within the
// documented limits; an error is one line "pagevisor: error: ..." on err.
// Speed: building the CLI11 parser costs ~10x a parse, so inputs go through one
// long-lived cli::CommandLine (what run_cli uses, built once). That reuse is
// itself checked: for one input in 256 (chosen by a hash of the input, so a
// replay does the same) a fresh run_cli must give the same status and output.
// PV_FUZZ_CLI_FRESH=1 in the environment runs every input through a fresh
// run_cli instead (the old, slow way: for measuring the difference).
// ASan records 4 frames per allocation and free here instead of 30: recording
// CLI11's deep allocation stacks was a quarter of the time. Detection is the
// same; for full allocation stacks in a report, replay the input with
// ASAN_OPTIONS=malloc_context_size=30.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "vmm/abi/layout.h"
#include "vmm/cli/cli.h"
#include "vmm/memory/memory_config.h"

// The wrapped symbols: calls from cli.cpp to run_vm / info_command land here.
pv::Expected<pv::run::RunResult> fuzz_run_vm(const pv::run::RunConfig& config) __asm__(
    "__wrap__ZN2pv3run6run_vmERKNS0_9RunConfigE");
int fuzz_info_command(std::ostream& out, std::ostream& err) __asm__("__wrap__ZN2pv3cli12info_commandERSoS1_");

pv::Expected<pv::run::RunResult> fuzz_run_vm(const pv::run::RunConfig& config) {
    // With --memory-zone the CLI passes the zones' total on unchecked: run_vm's first step,
    // resolve_memory_config (as MemorySystem::create calls it), refuses a bad one with a usage
    // error. Mirror that step, then the result must be within limits. (Found by this target:
    // "run --memory-zone id=m2,size=41M" reached run_vm with 41 MiB; pagevisor refuses it, exit 2.)
    if (!config.memory_config.zones.empty()) {
        pv::memory::TopologyLimits limits;
        limits.vcpus = config.vcpus;
        auto resolved = pv::memory::resolve_memory_config(config.memory_config, limits);
        if (!resolved) return mm::Unexpected<pv::Error>{resolved.error()};
        PV_FUZZ_CHECK(resolved->total_size() == config.memory, "zones' total differs from RunConfig::memory");
    }
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

extern "C" const char* __asan_default_options();
extern "C" const char* __asan_default_options() { return "malloc_context_size=4"; }

// Belt and braces for the --metrics rewrite below: some argument shapes still reached a
// relative metrics path (files named after mutated arguments appeared in the working
// directory), so the fuzzer runs in a fresh temporary directory of its own.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    char dir[] = "/tmp/pv-fuzz-cli-XXXXXX";
    if (::mkdtemp(dir) == nullptr || ::chdir(dir) != 0) {
        std::perror("fuzz_cli: cannot enter a temporary directory");
        std::abort();
    }
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
    // --metrics appends a line to a file after the (stubbed) run: point it at /dev/null, so the
    // JSON is still built and written but the fuzzer creates no files (it once littered the
    // working directory, and as root it could append to any path).
    for (size_t i = 1; i < args.size(); ++i) {
        if (args[i] == "--metrics" && i + 1 < args.size()) args[i + 1] = "/dev/null";
        if (args[i].rfind("--metrics=", 0) == 0) args[i] = "--metrics=/dev/null";
    }
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    argv.push_back(nullptr);

    static pv::cli::CommandLine cli;
    static const bool always_fresh = std::getenv("PV_FUZZ_CLI_FRESH") != nullptr;
    std::ostringstream out;
    std::ostringstream err;
    int status = always_fresh ? pv::cli::run_cli(static_cast<int>(args.size()), argv.data(), out, err)
                              : cli.run(static_cast<int>(args.size()), argv.data(), out, err);
    // 8 (I/O): a --config or --rom file that cannot be read (docs/cli.md; found by this target once the
    // parser was fast enough to reach "--config <missing file>": the property was too strict).
    const bool io = status == 8 && (err.str().find("cannot open") != std::string::npos ||
                                    err.str().find("cannot read") != std::string::npos);
    PV_FUZZ_CHECK(status == 0 || status == 2 || io,
                  "unexpected exit status " + std::to_string(status) + ": " + err.str());
    if (status != 0) PV_FUZZ_CHECK(err.str().rfind("pagevisor: error: ", 0) == 0, "error format: " + err.str());
    if (status != 0) PV_FUZZ_CHECK(err.str().find('\n') + 1 == err.str().size(), "not one line: " + err.str());
    uint32_t hash = 2166136261U;  // FNV-1a
    for (size_t i = 0; i < size; ++i) hash = (hash ^ data[i]) * 16777619U;
    if (hash % 256 == 0) {
        std::ostringstream fresh_out;
        std::ostringstream fresh_err;
        int fresh = pv::cli::run_cli(static_cast<int>(args.size()), argv.data(), fresh_out, fresh_err);
        PV_FUZZ_CHECK(fresh == status && fresh_out.str() == out.str() && fresh_err.str() == err.str(),
                      "a reused CommandLine differs from a fresh run_cli: " + err.str() + " / " + fresh_err.str());
    }
    return 0;
}
