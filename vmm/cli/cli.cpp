#include "vmm/cli/cli.h"

#include <sched.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <ostream>

#include <fstream>
#include <iterator>
#include <sstream>

#include "vmm/abi/layout.h"
#include "vmm/memory/host_pool.h"
#include "vmm/memory/memory_config.h"
#include "vmm/memory/memory_size.h"
#include "vmm/run/metrics.h"
#include "vmm/run/workloads.h"

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
    std::vector<std::string> zones;
    std::vector<std::string> numa;
    std::string fault_around;
    std::string config_file;
    std::vector<std::string> roms;
    std::string vcpu_cpus;
    std::string fault_cpus;
    unsigned fault_threads = 1;
    std::string fault_wait = "poll";
    double fault_watchdog = 2.0;
    std::string metrics;
    std::string fault_trace;
    std::string seccomp = "kill";
    bool memory_given = false;
    // Allocator workloads (BootInfo::args); 0 = the workload's default.
    std::string ops;
    std::string heap;
    std::string max_block;
    std::string check_every;
    bool populate = false;
    bool test_corrupt = false;
    std::vector<std::string> workload_flags_given;  // for "--ops applies to ..." errors
};

constexpr const char* kWorkloadFlags[] = {"--ops",         "--heap",     "--max-block",
                                          "--check-every", "--populate", "--test-corrupt"};

void add_workload_options(CLI::App& run, RunOptions& o) {
    const std::string which = " (allocator workloads: " + run::allocator_workload_list() + "; docs/workloads.md)";
    run.add_option("--ops", o.ops, "Operations to perform, per vCPU for multi; 0: the workload's default" + which);
    run.add_option("--heap", o.heap,
                   "Bytes of heap each allocator workload maps, K/M/G suffix, a multiple of 4K; 0: its default");
    run.add_option("--max-block", o.max_block,
                   "Largest request: bytes (byte allocators) or pages (frames, ids); 0: the workload's default");
    run.add_option("--check-every", o.check_every, "Check the allocator's invariants every N operations; 0: default");
    run.add_flag("--populate", o.populate, "Map the workload's heaps eagerly (mmap with populate): no page faults");
    run.add_flag("--test-corrupt", o.test_corrupt,
                 "TESTING ONLY: the workload corrupts one live block so that its verification must fail (exit 3)");
}

// A count: decimal or 0x hex, no sign, no suffix; empty = 0 (the workload's default).
Expected<uint64_t> parse_count(const char* flag, const std::string& s) {
    if (s.empty()) return uint64_t{0};
    errno = 0;
    char* end = nullptr;
    uint64_t v = std::strtoull(s.c_str(), &end, 0);
    if (!std::isdigit(static_cast<unsigned char>(s[0])) || *end != '\0' || errno == ERANGE)
        return make_error(ErrorKind::Usage, std::string(flag) + ": invalid count '" + s +
                                                "' (a non-negative integer below 2^64, decimal or 0x hex)");
    return v;
}

Status workload_options(const RunOptions& o, run::RunConfig& c) {
    if (!o.workload_flags_given.empty() && !run::is_allocator_workload(o.workload))
        return make_error(ErrorKind::Usage, o.workload_flags_given.front() + " applies to the allocator workloads (" +
                                                run::allocator_workload_list() + "), not '" + o.workload + "'");
    abi::WorkloadArgs& a = c.workload_args;
    PV_TRY_ASSIGN(a.ops, parse_count("--ops", o.ops));
    PV_TRY_ASSIGN(a.max_block, parse_count("--max-block", o.max_block));
    PV_TRY_ASSIGN(a.check_every, parse_count("--check-every", o.check_every));
    a.flags = (o.populate ? abi::kWorkloadPopulate : 0) | (o.test_corrupt ? abi::kWorkloadCorrupt : 0);
    a.heap_bytes = 0;
    if (o.heap.empty()) return {};
    memory::SizeScan scan = memory::scan_size(o.heap);
    if (scan.status != memory::SizeScan::Status::Ok || scan.bytes % layout::kPage != 0 ||
        scan.bytes > memory::kMaxRamSize)
        return make_error(ErrorKind::Usage, "invalid --heap '" + o.heap +
                                                "' (a multiple of 4 KiB up to 1T, K/M/G/T suffix, e.g. 16M; 0: "
                                                "the workload's default)");
    a.heap_bytes = scan.bytes;
    return {};
}

void add_run_options(CLI::App& run, RunOptions& o) {
    run.add_option("--guest", o.guest,
                   "Guest ELF image (default: $PAGEVISOR_GUEST, else <exe dir>/../guest/pvguest.elf)");
    run.add_option("--workload", o.workload,
                   "Guest program to run ('--workload help' lists them: hello, touch, ramlist, hcbench, the allocator "
                   "workloads slab-churn, buddy-churn, ..., multi, ...)")
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
    run.add_option("--memory-zone", o.zones,
                   "Guest memory zone (repeatable, in guest-physical order): id=NAME,size=SIZE[,backend=eager|demand]"
                   "[,host_numa_node=N|host-nodes=LIST][,policy=default|bind|preferred|interleave][,quota=SIZE]"
                   "[,prefault=on|off] (docs/memory-config.md)");
    run.add_option("--numa", o.numa,
                   "Guest NUMA node (repeatable): guest_numa_id=N,cpus=[LIST],memory_zones=[IDS][,fallback=[NODES]]");
    run.add_option("--fault-around", o.fault_around,
                   "Demand-fault fault-around: on (16 pages), off, or pages=N (power of two, 1..512)");
    run.add_option("--config", o.config_file,
                   "JSON file with a \"memory\" section (zones, nodes, fault_around); replaces --memory-zone/--numa");
    run.add_option("--rom", o.roms, "Read-only guest memory from FILE, at GPA 0xE0000000 or FILE@GPA (repeatable)");
    run.add_option("--vcpu-cpus", o.vcpu_cpus, "Pin vCPU i's thread to host CPU LIST[i % n] (e.g. 0,1)");
    run.add_option("--fault-cpus", o.fault_cpus, "Pin fault-server thread j to host CPU LIST[j % n]");
    run.add_option("--fault-threads", o.fault_threads, "userfaultfd fault-server threads")
        ->check(CLI::Range(1u, 16u))
        ->capture_default_str();
    run.add_option("--fault-wait", o.fault_wait, "How fault-server threads wait: poll or busy (spins a CPU)")
        ->check(CLI::IsMember({"poll", "busy"}))
        ->capture_default_str();
    run.add_option("--fault-watchdog", o.fault_watchdog,
                   "Seconds a demand fault may take before the guest is stopped (0: no watchdog)")
        ->check(CLI::Range(0.0, 3600.0))
        ->capture_default_str();
    run.add_option("--metrics", o.metrics,
                   "Append the run's metrics as one JSON line to PATH ('-': standard output; docs/metrics.md)");
    run.add_option("--seccomp", o.seccomp,
                   "System-call filter on vCPU and fault-server threads: kill (a forbidden call kills pagevisor "
                   "with SIGSYS), trap (print the call's name, fail it with EPERM) or off (docs/security.md)")
        ->check(CLI::IsMember({"kill", "trap", "off"}))
        ->capture_default_str();
    run.add_option("--fault-trace", o.fault_trace,
                   "Write one JSON line per demand fault (time, GPA, vCPU, area, latency) to PATH (docs/metrics.md)");
}

Expected<std::vector<int>> parse_cpu_list(const std::string& flag, const std::string& text) {
    std::vector<int> cpus;
    if (text.empty()) return cpus;
    auto set = memory::HostNodeSet::parse(text);  // the same "0,2-3" list syntax
    if (!set) return make_error(ErrorKind::Usage, flag + ": invalid CPU list '" + text + "' (expected e.g. 0,2-3)");
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    const bool known = sched_getaffinity(0, sizeof allowed, &allowed) == 0;
    for (uint32_t id : set->ids()) {
        if (known && (id >= CPU_SETSIZE || !CPU_ISSET(id, &allowed)))
            return make_error(ErrorKind::Usage, flag + ": CPU " + std::to_string(id) +
                                                    " is not available to this process (see nproc / taskset)");
        cpus.push_back(static_cast<int>(id));
    }
    if (cpus.empty()) return make_error(ErrorKind::Usage, flag + ": empty CPU list");
    return cpus;
}

Expected<std::string> read_file(const std::string& path, const std::string& what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return errno_error(ErrorKind::Io, "cannot open " + what + " '" + path + "'");
    std::string data;
    try {
        data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    } catch (
        const std::ios_base::failure&) {  // libstdc++ throws when reading fails, e.g. a directory (found by fuzz_cli)
        return errno_error(ErrorKind::Io, "cannot read " + what + " '" + path + "'");
    }
    if (in.bad()) return errno_error(ErrorKind::Io, "cannot read " + what + " '" + path + "'");
    return data;
}

constexpr uint64_t kDefaultRomAddr = 0xE000'0000;
constexpr uint64_t kMaxRomSize = 256ULL << 20;

Expected<run::RomConfig> parse_rom(const std::string& spec) {
    run::RomConfig rom;
    std::string path = spec;
    rom.gpa = kDefaultRomAddr;
    if (auto at = spec.rfind('@'); at != std::string::npos) {
        path = spec.substr(0, at);
        std::string gpa = spec.substr(at + 1);
        errno = 0;
        char* end = nullptr;
        rom.gpa = std::strtoull(gpa.c_str(), &end, 0);
        if (gpa.empty() || *end != '\0' || errno != 0 || rom.gpa % layout::kPage != 0)
            return make_error(ErrorKind::Usage, "--rom: invalid guest-physical address '" + gpa +
                                                    "' (a page-aligned integer, e.g. 0xE0000000)");
    }
    PV_TRY_ASSIGN(std::string data, read_file(path, "ROM file"));
    if (data.empty() || data.size() > kMaxRomSize)
        return make_error(ErrorKind::Usage, "--rom: '" + path + "' must hold 1 byte to 256 MiB");
    rom.name = std::filesystem::path(path).filename().string();
    rom.contents.resize(data.size());
    std::memcpy(rom.contents.data(), data.data(), data.size());
    return rom;
}

Status memory_options(const RunOptions& o, run::RunConfig& c) {
    if (!o.config_file.empty()) {
        if (!o.zones.empty() || !o.numa.empty())
            return make_error(ErrorKind::Usage, "--config replaces --memory-zone and --numa: give one or the other");
        PV_TRY_ASSIGN(std::string text, read_file(o.config_file, "config file"));
        auto cfg = memory::parse_memory_config_json(text);
        if (!cfg) return make_error(ErrorKind::Usage, o.config_file + ": " + cfg.error().message);
        c.memory_config = std::move(*cfg);
    }
    for (const auto& z : o.zones) {
        PV_TRY_ASSIGN(auto zone, memory::parse_memory_zone(z));
        c.memory_config.zones.push_back(std::move(zone));
    }
    for (const auto& n : o.numa) {
        PV_TRY_ASSIGN(auto node, memory::parse_numa_node(n));
        c.memory_config.nodes.push_back(std::move(node));
    }
    if (!o.fault_around.empty()) {
        PV_TRY_ASSIGN(c.memory_config.fault_around, memory::parse_fault_around(o.fault_around));
    }
    if (!c.memory_config.zones.empty()) {
        uint64_t total = c.memory_config.total_size();
        if (o.memory_given && total != c.memory)
            return make_error(ErrorKind::Usage, "--memory " + o.memory + " differs from the zones' total " +
                                                    memory::format_exact_size(total) +
                                                    " (give one or make them agree)");
        c.memory = total;
    }
    for (const auto& r : o.roms) {
        PV_TRY_ASSIGN(auto rom, parse_rom(r));
        c.roms.push_back(std::move(rom));
    }
    PV_TRY_ASSIGN(c.vcpu_cpus, parse_cpu_list("--vcpu-cpus", o.vcpu_cpus));
    PV_TRY_ASSIGN(c.fault_cpus, parse_cpu_list("--fault-cpus", o.fault_cpus));
    c.fault_threads = o.fault_threads;
    c.fault_trace_path = o.fault_trace;
    c.seccomp = o.seccomp == "off"    ? run::SeccompMode::Off
                : o.seccomp == "trap" ? run::SeccompMode::Trap
                                      : run::SeccompMode::Kill;
    c.fault_busy_poll = o.fault_wait == "busy";
    c.fault_watchdog = std::chrono::milliseconds(std::llround(o.fault_watchdog * 1000.0));
    return {};
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
    PV_TRY(memory_options(o, c));
    PV_TRY(workload_options(o, c));
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
    if (!o.metrics.empty()) {
        if (auto m = run::append_metrics_line(o.metrics, run::run_metrics(*config, *result)); !m) {
            fail(err, m.error());
            if (result->exit_status == 0) return exit_status(m.error().kind);
        }
    }
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

// The CLI11 description of the command line. Built once per CommandLine:
// constructing it is most of the cost of a parse (fuzz_cli parses millions of
// times); CLI11 clears its parse state at the start of each parse, and
// CommandLine::run resets the bound options to their defaults.
struct CommandLine::Impl {
    CLI::App app{"pagevisor: a KVM virtual machine monitor for guest-memory work", "pagevisor"};
    RunOptions options;
    CLI::App* run = nullptr;
    CLI::App* info = nullptr;

    Impl() {
        app.set_version_flag("--version", std::string("pagevisor ") + PAGEVISOR_VERSION);
        app.require_subcommand(1);
        run = app.add_subcommand("run", "Boot a guest image and run one workload to completion");
        add_run_options(*run, options);
        add_workload_options(*run, options);
        info = app.add_subcommand("info", "Show KVM, capability, CPUID and host NUMA information");
        app.footer(
            "Exit status: the guest's exit code, or 2 usage, 3 guest image, 4 KVM, 5 resource, 6 guest fault, "
            "7 timeout, 8 I/O, 9 guest out of memory, 70 internal error (docs/cli.md).");
    }
};

CommandLine::CommandLine() : m_impl(std::make_unique<Impl>()) {}
CommandLine::~CommandLine() = default;

int CommandLine::run(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
    CLI::App& app = m_impl->app;
    CLI::App* run = m_impl->run;
    CLI::App* info = m_impl->info;
    RunOptions& options = m_impl->options;
    options = RunOptions{};
    try {
        app.parse(argc, argv);
        options.memory_given = run->count("--memory") > 0;
        for (const char* flag : kWorkloadFlags)
            if (run->count(flag) > 0) options.workload_flags_given.emplace_back(flag);
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

int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
    return CommandLine().run(argc, argv, out, err);
}

}  // namespace pv::cli
