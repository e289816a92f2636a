#include "vmm/cli/cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <ostream>

#include "vmm/abi/layout.h"
#include "vmm/memory/memory_size.h"

namespace pv::cli {
namespace {

struct RunOptions {
    std::string guest;
    std::string workload = "hello";
    std::vector<std::string> params;
    uint64_t seed = 0;
    std::string memory = "256M";
    uint32_t vcpus = 1;
    double timeout = 30.0;
    bool quiet = false;
};

void add_run_options(CLI::App& run, RunOptions& o) {
    run.add_option("--guest", o.guest,
                   "Guest ELF image (default: $PAGEVISOR_GUEST, else <exe dir>/../guest/pvguest.elf)");
    run.add_option("--workload", o.workload,
                   "Guest program to run (hello, exit, loop, bad-mmio, null, ud, badptr, "
                   "hcbench)")
        ->capture_default_str();
    run.add_option("--param", o.params,
                   "Workload parameter (repeatable, up to 8; decimal, 0x hex or negative), e.g. --param 7 --param 1");
    run.add_option("--seed", o.seed, "Seed passed to the guest in BootInfo")->capture_default_str();
    run.add_option("--memory", o.memory, "Guest RAM size with K/M/G/T suffix, page aligned, at least 48M")
        ->capture_default_str();
    run.add_option("--vcpus", o.vcpus, "Number of vCPUs")
        ->check(CLI::Range(1u, layout::kMaxVcpus))
        ->capture_default_str();
    run.add_option("--timeout", o.timeout, "Wall-clock limit in seconds (fractions allowed)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    run.add_flag("--quiet,-q", o.quiet, "Do not print the report block after the run");
}

Expected<uint64_t> parse_param(const std::string& s) {
    errno = 0;
    char* end = nullptr;
    uint64_t v = 0;
    if (!s.empty() && s[0] == '-')
        v = static_cast<uint64_t>(std::strtoll(s.c_str(), &end, 0));
    else
        v = std::strtoull(s.c_str(), &end, 0);
    if (s.empty() || end == nullptr || *end != '\0' || errno == ERANGE)
        return make_error(ErrorKind::Usage, "invalid --param value '" + s + "' (expected an integer)");
    return v;
}

Expected<run::RunConfig> to_config(const RunOptions& o) {
    run::RunConfig c;
    c.guest_path = o.guest.empty() ? default_guest_path() : o.guest;
    c.workload = o.workload;
    if (o.params.size() > c.params.size())
        return make_error(ErrorKind::Usage, "at most 8 --param values (got " + std::to_string(o.params.size()) + ")");
    for (size_t i = 0; i < o.params.size(); ++i) {
        PV_TRY_ASSIGN(c.params[i], parse_param(o.params[i]));
    }
    c.seed = o.seed;
    PV_TRY_ASSIGN(c.memory, memory::parse_memory_size(o.memory));
    c.vcpus = o.vcpus;
    if (!(o.timeout > 0) || o.timeout > 1e6) return make_error(ErrorKind::Usage, "--timeout must be in (0, 1e6]");
    c.timeout = std::chrono::milliseconds(std::max<int64_t>(1, std::llround(o.timeout * 1000.0)));
    return c;
}

int fail(std::ostream& err, const Error& e) {
    err << "pagevisor: error: " << e.to_string() << "\n";
    return exit_status(e.kind);
}

int run_command(const RunOptions& o, std::ostream& out, std::ostream& err) {
    auto config = to_config(o);
    if (!config) return fail(err, config.error());
    config->console_sink = [&out](std::string_view line) { out << line << '\n' << std::flush; };
    auto result = run::run_vm(*config);
    if (!result) return fail(err, result.error());
    if (!o.quiet) out << format_report(*config, *result) << std::flush;
    if (result->error) fail(err, *result->error);
    return result->exit_status;
}

}  // namespace

std::string default_guest_path() {
    if (const char* env = std::getenv("PAGEVISOR_GUEST"); env != nullptr && *env != '\0') return env;
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec) return "pvguest.elf";
    return (exe.parent_path() / ".." / "guest" / "pvguest.elf").lexically_normal().string();
}

int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
    CLI::App app{"pagevisor: a KVM virtual machine monitor for guest-memory work", "pagevisor"};
    app.set_version_flag("--version", std::string("pagevisor ") + PAGEVISOR_VERSION);
    app.require_subcommand(1);
    RunOptions options;
    CLI::App* run = app.add_subcommand("run", "Boot a guest image and run one workload to completion");
    add_run_options(*run, options);
    CLI::App* info = app.add_subcommand("info", "Show KVM, capability, CPUID and host NUMA information");
    app.footer(
        "Exit status: the guest's exit code, or 2 usage, 3 guest image, 4 KVM, 5 resource, 6 guest fault, "
        "7 timeout, 8 I/O, 70 internal error (docs/cli.md).");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e, out, err);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e, out, err);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e, out, err);
    } catch (const CLI::ParseError& e) {
        std::string sub = run->parsed() ? "run " : info->parsed() ? "info " : "";
        err << "pagevisor: error: " << e.what() << " (run 'pagevisor " << sub << "--help')\n";
        return exit_status(ErrorKind::Usage);
    }
    if (info->parsed()) return info_command(out, err);
    return run_command(options, out, err);
}

}  // namespace pv::cli
