// The real `pagevisor` binary: help, usage errors, exit statuses, one-line errors.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "tests/support/kvm.h"
#include "vmm/cli/cli.h"

#ifndef PAGEVISOR_BINARY
#error "cli tests need the pagevisor binary"
#endif

namespace pv::cli {
namespace {

struct Outcome {
    int status = -1;
    std::string out;
    std::string err;
};

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// Runs the binary through the shell with `args` (already quoted as needed).
Outcome pagevisor(const std::string& args, const std::string& env = "") {
    std::string dir = testing::TempDir();
    // ctest runs test cases as parallel processes: one file pair per process.
    std::string tag = "pv_cli_test." + std::to_string(::getpid());
    std::string out = dir + tag + ".out", err = dir + tag + ".err";
    std::string cmd = env + " '" PAGEVISOR_BINARY "' " + args + " >'" + out + "' 2>'" + err + "'";
    int raw = std::system(cmd.c_str());
    Outcome o;
    o.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    o.out = slurp(out);
    o.err = slurp(err);
    std::remove(out.c_str());
    std::remove(err.c_str());
    return o;
}

size_t lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

TEST(Cli, TopLevelHelpListsTheCommands) {
    Outcome o = pagevisor("--help");
    EXPECT_EQ(o.status, 0);
    EXPECT_NE(o.out.find("run"), std::string::npos);
    EXPECT_NE(o.out.find("info"), std::string::npos);
    EXPECT_NE(o.out.find("--version"), std::string::npos);
    EXPECT_NE(o.out.find("Exit status"), std::string::npos);
}

TEST(Cli, RunHelpDocumentsEveryOption) {
    Outcome o = pagevisor("run --help");
    EXPECT_EQ(o.status, 0);
    for (const char* opt : {"--guest", "--workload", "--param", "--seed", "--memory", "--vcpus", "--timeout", "--quiet",
                            "--memory-zone", "--numa", "--fault-around", "--config", "--rom", "--vcpu-cpus",
                            "--fault-cpus", "--fault-threads", "--fault-wait", "--fault-watchdog", "--metrics"})
        EXPECT_NE(o.out.find(opt), std::string::npos) << opt;
    EXPECT_NE(o.out.find("256M"), std::string::npos) << "default memory";
    EXPECT_NE(o.out.find("hello"), std::string::npos) << "default workload";
}

TEST(Cli, Version) {
    Outcome o = pagevisor("--version");
    EXPECT_EQ(o.status, 0);
    EXPECT_EQ(o.out.rfind("pagevisor ", 0), 0u) << o.out;
}

TEST(Cli, UnknownFlagIsOneLineAndStatus2) {
    Outcome o = pagevisor("run --bogus");
    EXPECT_EQ(o.status, 2);
    EXPECT_EQ(lines(o.err), 1u) << o.err;
    EXPECT_EQ(o.err.rfind("pagevisor: error: ", 0), 0u) << o.err;
    EXPECT_NE(o.err.find("run 'pagevisor run --help'"), std::string::npos) << o.err;
}

TEST(Cli, MissingSubcommandIsAUsageError) {
    Outcome o = pagevisor("");
    EXPECT_EQ(o.status, 2);
    EXPECT_EQ(lines(o.err), 1u) << o.err;
}

TEST(Cli, BadValuesAreUsageErrors) {
    for (const char* args : {"run --memory 12Q", "run --memory 16M", "run --vcpus 0", "run --vcpus 33",
                             "run --timeout -1", "run --param abc", "run --param 1 2 3 4 5 6 7 8 9"}) {
        Outcome o = pagevisor(args);
        EXPECT_EQ(o.status, 2) << args << ": " << o.err;
        EXPECT_EQ(lines(o.err), 1u) << args << ": " << o.err;
        EXPECT_EQ(o.err.rfind("pagevisor: error: ", 0), 0u) << o.err;
    }
}

TEST(Cli, BadMemoryOptionsAreOneLineUsageErrors) {
    const std::string rom = testing::TempDir() + "pv_cli_rom." + std::to_string(::getpid());
    { std::ofstream(rom) << "rom"; }
    const std::string json = testing::TempDir() + "pv_cli_cfg." + std::to_string(::getpid()) + ".json";
    { std::ofstream(json) << R"({"memory": {"zones": [{"id": "m0", "size": "64M"}]}})"; }
    const std::string cases[] = {
        "run --memory-zone id=a",                                       // no size
        "run --memory-zone id=a,size=64M,backend=lazy",                 // unknown backend
        "run --memory-zone id=a,size=64M --memory-zone id=a,size=64M",  // duplicate id
        "run --numa guest_numa_id=x",                                   // not a number
        "run --fault-around pages=3",                                   // not a power of two
        "run --memory 64M --memory-zone id=a,size=128M",                // disagrees with the zones
        "run --memory-zone id=a,size=16M",                              // below 48M in total
        "run --vcpu-cpus x",                                            // bad CPU list
        "run --rom '" + rom + "@0x123'",                                // unaligned GPA
        "run --rom '" + rom + "@0x1000'",                               // overlaps RAM
        "run --config '" + json + "' --memory-zone id=b,size=64M",      // both
        "run --fault-threads 0",
        "run --fault-wait sometimes",
    };
    for (const auto& args : cases) {
        Outcome o = pagevisor(args);
        EXPECT_EQ(o.status, 2) << args << ": " << o.err;
        EXPECT_EQ(lines(o.err), 1u) << args << ": " << o.err;
        EXPECT_EQ(o.err.rfind("pagevisor: error: ", 0), 0u) << o.err;
    }
    Outcome o = pagevisor("run --config /nonexistent/pv.json");
    EXPECT_EQ(o.status, 8) << o.err;
    EXPECT_EQ(lines(o.err), 1u) << o.err;
    std::remove(rom.c_str());
    std::remove(json.c_str());
}

TEST(Cli, ConfigFileEqualsTheFlags) {
    PV_REQUIRE_KVM();
    const std::string json = testing::TempDir() + "pv_cli_cfg2." + std::to_string(::getpid()) + ".json";
    {
        std::ofstream(json) << R"({"memory": {"zones": [{"id": "m0", "size": "64M"},
            {"id": "d0", "size": "32M", "backend": "demand"}], "fault_around": {"enabled": false}}})";
    }
    Outcome a = pagevisor("run --workload ramlist --config '" + json + "'");
    Outcome b =
        pagevisor("run --workload ramlist --memory-zone id=m0,size=64M --memory-zone id=d0,size=32M,backend=demand");
    std::remove(json.c_str());
    EXPECT_EQ(a.status, 0) << a.err;
    EXPECT_EQ(b.status, 0) << b.err;
    auto ranges = [](const std::string& out) { return out.substr(0, out.find("pagevisor report")); };
    EXPECT_EQ(ranges(a.out), ranges(b.out));
    EXPECT_NE(a.out.find("demand"), std::string::npos) << a.out;
    // The RAM map starts above the 32M of fixed structures: 96M - 32M.
    EXPECT_NE(a.out.find("ram.bytes                67108864"), std::string::npos) << a.out;
}

TEST(Cli, MetricsLineDescribesTheRun) {
    PV_REQUIRE_KVM();
    const std::string path = testing::TempDir() + "pv_cli_metrics." + std::to_string(::getpid()) + ".jsonl";
    std::remove(path.c_str());
    // touch: demand ranges only, 4 MiB, sequential, skip the zero check.
    Outcome o = pagevisor(
        "run -q --workload touch --memory-zone id=m0,size=48M --memory-zone id=d0,size=64M,backend=demand "
        "--fault-around off --param 0 --param 2 --param 0x400000 --param 0 --param 0 --param 1 "
        "--metrics '" +
        path + "'");
    ASSERT_EQ(o.status, 0) << o.err;
    std::string text = slurp(path);
    std::remove(path.c_str());
    ASSERT_EQ(lines(text), 1u) << text;
    auto j = nlohmann::json::parse(text);
    EXPECT_EQ(j["format_version"], 1);
    EXPECT_GT(j["utc_timestamp_ms"].get<int64_t>(), 0);
    EXPECT_EQ(j["vm"]["workload"], "touch");
    EXPECT_EQ(j["vm"]["exit_status"], 0);
    EXPECT_EQ(j["memory"]["demand"]["faults"], 1024);
    EXPECT_EQ(j["memory"]["nodes"][0]["demand_pages"], 1024);
    EXPECT_EQ(j["memory"]["fault_latency_ns"]["demand"]["count"], 1024);
    bool pages = false;
    for (const auto& g : j["guest"])
        if (g["key"] == "touch.pages") pages = g["value"] == 1024;
    EXPECT_TRUE(pages) << j["guest"].dump();
}

TEST(Cli, FaultTraceHasOneRecordPerFault) {
    PV_REQUIRE_KVM();
    const std::string path = testing::TempDir() + "pv_cli_trace." + std::to_string(::getpid()) + ".jsonl";
    // 256 demand pages on 2 vCPUs, fault-around off: one fault each.
    Outcome o = pagevisor(
        "run -q --workload touch --vcpus 2 --memory-zone id=m0,size=48M "
        "--memory-zone id=d0,size=64M,backend=demand --fault-around off --param 0 --param 2 "
        "--param 0x100000 --param 0 --param 0 --param 1 --fault-trace '" +
        path + "'");
    ASSERT_EQ(o.status, 0) << o.err;
    std::ifstream in(path);
    std::string line;
    std::set<uint64_t> gpas;
    std::set<int> vcpus;
    while (std::getline(in, line)) {
        auto j = nlohmann::json::parse(line);
        const uint64_t gpa = j["gpa"];
        EXPECT_GE(gpa, 48u << 20);
        EXPECT_LT(gpa, (48u << 20) + (1u << 20));
        EXPECT_EQ(gpa % 4096, 0u);
        EXPECT_EQ(j["area"], "d0");
        EXPECT_EQ(j["backend"], "demand");
        EXPECT_GT(j["latency_ns"].get<uint64_t>(), 0u);
        gpas.insert(gpa);
        vcpus.insert(j["vcpu"].get<int>());
    }
    std::remove(path.c_str());
    EXPECT_EQ(gpas.size(), 256u);  // every touched page, once
    EXPECT_EQ(vcpus, (std::set<int>{0, 1}));
}

TEST(Cli, GuestOutOfMemoryIsStatus9) {
    PV_REQUIRE_KVM();
    Outcome o = pagevisor(
        "run -q --workload touch --memory-zone id=m0,size=48M "
        "--memory-zone id=d0,size=64M,backend=demand,quota=2M --param 0 --param 2");
    EXPECT_EQ(o.status, 9) << o.err;
    EXPECT_EQ(lines(o.err), 1u) << o.err;
    EXPECT_NE(o.err.find("guest out of memory on node 0"), std::string::npos) << o.err;
}

TEST(Cli, MissingGuestFileIsAClearError) {
    Outcome o = pagevisor("run --guest /nonexistent/guest.elf");
    EXPECT_EQ(o.status, 8);  // I/O
    EXPECT_EQ(lines(o.err), 1u) << o.err;
    EXPECT_NE(o.err.find("/nonexistent/guest.elf"), std::string::npos) << o.err;
    EXPECT_NE(o.err.find("No such file"), std::string::npos) << o.err;
}

TEST(Cli, GuestFromTheEnvironment) {
    Outcome o = pagevisor("run", "PAGEVISOR_GUEST=/nonexistent/from-env.elf");
    EXPECT_EQ(o.status, 8);
    EXPECT_NE(o.err.find("/nonexistent/from-env.elf"), std::string::npos) << o.err;
}

TEST(Cli, DefaultRunBootsHelloAndReports) {
    PV_REQUIRE_KVM();
    Outcome o = pagevisor("run");
    EXPECT_EQ(o.status, 0) << o.err;
    EXPECT_TRUE(o.err.empty()) << o.err;
    EXPECT_NE(o.out.find("hello from vCPU 0 of 1"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("pagevisor report"), std::string::npos);
    EXPECT_NE(o.out.find("time to first"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("hello.vcpus"), std::string::npos) << o.out;
}

TEST(Cli, QuietSkipsTheReport) {
    PV_REQUIRE_KVM();
    Outcome o = pagevisor("run --quiet --vcpus 2");
    EXPECT_EQ(o.status, 0) << o.err;
    EXPECT_EQ(o.out.find("pagevisor report"), std::string::npos);
    EXPECT_NE(o.out.find("[vcpu 1] hello from vCPU 1 of 2"), std::string::npos) << o.out;
}

TEST(Cli, ExitCodeIsTheGuests) {
    PV_REQUIRE_KVM();
    EXPECT_EQ(pagevisor("run -q --workload exit --param 7").status, 7);
    EXPECT_EQ(pagevisor("run -q --workload exit --param 0x100").status, 0);
    EXPECT_EQ(pagevisor("run -q --workload exit --param -1").status, 255);
}

TEST(Cli, GuestFaultIsOneLineAndStatus6) {
    PV_REQUIRE_KVM();
    Outcome o = pagevisor("run -q --workload bad-mmio");
    EXPECT_EQ(o.status, 6);
    EXPECT_EQ(lines(o.err), 1u) << o.err;
    EXPECT_NE(o.err.find("pagevisor: error: guest accessed unmapped GPA 0xd0008000"), std::string::npos) << o.err;
}

TEST(Cli, TimeoutIsStatus7) {
    PV_REQUIRE_KVM();
    Outcome o = pagevisor("run -q --workload loop --timeout 0.3");
    EXPECT_EQ(o.status, 7);
    EXPECT_EQ(o.err, "pagevisor: error: guest did not finish within 0.3s (timeout)\n");
}

TEST(Cli, InfoNamesTheFlavour) {
    PV_REQUIRE_KVM();
    Outcome o = pagevisor("info");
    EXPECT_EQ(o.status, 0) << o.err;
    EXPECT_NE(o.out.find("KVM flavour:"), std::string::npos) << o.out;
    bool named = o.out.find("PVM") != std::string::npos || o.out.find("VMX") != std::string::npos ||
                 o.out.find("SVM") != std::string::npos || o.out.find("unknown") != std::string::npos;
    EXPECT_TRUE(named) << o.out;
    EXPECT_NE(o.out.find("KVM_CAP_IMMEDIATE_EXIT"), std::string::npos);
    EXPECT_NE(o.out.find("host NUMA nodes"), std::string::npos);
}

// As an unprivileged user (root only: setpriv drops to nobody), /dev/kvm cannot be opened.
TEST(Cli, NoPermissionForKvmIsExplained) {
    struct stat st {};
    if (::geteuid() != 0 || ::access("/usr/bin/setpriv", X_OK) != 0 || ::stat("/dev/kvm", &st) != 0)
        GTEST_SKIP() << "needs root, setpriv and /dev/kvm";
    if ((st.st_mode & S_IROTH) && (st.st_mode & S_IWOTH)) GTEST_SKIP() << "/dev/kvm is world-accessible here";
    Outcome o = pagevisor("info", "setpriv --reuid=65534 --regid=65534 --clear-groups");
    EXPECT_EQ(o.status, 4) << o.err;
    EXPECT_EQ(o.err, "pagevisor: error: no permission to open /dev/kvm (add yourself to the kvm group)\n");
}

TEST(Cli, WorkloadOptionsInHelp) {
    Outcome o = pagevisor("run --help");
    EXPECT_EQ(o.status, 0);
    for (const char* opt : {"--ops", "--heap", "--max-block", "--check-every", "--populate", "--test-corrupt"})
        EXPECT_NE(o.out.find(opt), std::string::npos) << opt;
    EXPECT_NE(o.out.find("TESTING ONLY"), std::string::npos) << "--test-corrupt is marked";
    EXPECT_NE(o.out.find("slab-churn"), std::string::npos);
}

TEST(Cli, BadWorkloadOptionsAreOneLineUsageErrors) {
    const std::pair<const char*, const char*> cases[] = {
        {"run --workload slab-churn --ops -1", "--ops: invalid count '-1'"},
        {"run --workload slab-churn --ops 1.5", "--ops: invalid count '1.5'"},
        {"run --workload slab-churn --ops 99999999999999999999", "--ops: invalid count"},
        {"run --workload frames --max-block x", "--max-block: invalid count 'x'"},
        {"run --workload ids --check-every -3", "--check-every: invalid count '-3'"},
        {"run --workload tlsf-churn --heap 12Q", "invalid --heap '12Q'"},
        {"run --workload tlsf-churn --heap 5000", "invalid --heap '5000'"},
        {"run --ops 10", "--ops applies to the allocator workloads (slab-churn, "},
        {"run --workload touch --heap 1M", "--heap applies to the allocator workloads"},
        {"run --workload hcbench --populate", "--populate applies to the allocator workloads"},
        {"run --workload ramlist --test-corrupt", "not 'ramlist'"},
    };
    for (const auto& [args, message] : cases) {
        Outcome o = pagevisor(args);
        EXPECT_EQ(o.status, 2) << args << ": " << o.err;
        EXPECT_EQ(lines(o.err), 1u) << args << ": " << o.err;
        EXPECT_EQ(o.err.rfind("pagevisor: error: ", 0), 0u) << o.err;
        EXPECT_NE(o.err.find(message), std::string::npos) << args << ": " << o.err;
    }
}

// Small slab-churn run: the summary block and the metrics line's "workload" group.
TEST(Cli, WorkloadSummaryAndMetrics) {
    PV_REQUIRE_KVM();
    const std::string path = testing::TempDir() + "pv_cli_wl." + std::to_string(::getpid()) + ".jsonl";
    std::remove(path.c_str());
    Outcome o = pagevisor(
        "run --workload slab-churn --ops 5000 --heap 2M --max-block 4096 --check-every 500 --seed 9 "
        "--memory-zone id=m0,size=48M --memory-zone id=d0,size=64M,backend=demand --fault-around off --metrics '" +
        path + "'");
    ASSERT_EQ(o.status, 0) << o.err << o.out;
    EXPECT_NE(o.out.find("workload summary (slab-churn):"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("    result                 ok\n"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("    ops                    5000 ("), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("    invariant checks       11 (0 failed)"), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("    fault latency          p50 "), std::string::npos) << o.out;
    std::string text = slurp(path);
    std::remove(path.c_str());
    ASSERT_EQ(lines(text), 1u) << text;
    auto j = nlohmann::json::parse(text);
    const auto& w = j["workload"];
    EXPECT_EQ(w["name"], "slab-churn");
    EXPECT_EQ(w["passed"], true);
    EXPECT_EQ(w["ops"], 5000);
    EXPECT_EQ(w["verify_errors"], 0);
    EXPECT_EQ(w["invariant_checks"], 11);
    EXPECT_EQ(w["heap_bytes"], 2 << 20);
    EXPECT_GT(w["ops_per_sec"].get<double>(), 0.0);
    // Fault-around off: one guest page fault per heap page first touched (at least the pages blocks covered).
    EXPECT_GE(w["guest_mapped_faults"].get<uint64_t>(), w["pages_touched"].get<uint64_t>());
    EXPECT_EQ(w["frames_per_node_at_exit"], nlohmann::json::array({0}));
    EXPECT_TRUE(w["stats"].is_object());
}

TEST(Cli, CorruptedWorkloadFailsVerification) {
    PV_REQUIRE_KVM();
    Outcome o = pagevisor("run --workload buddy-churn --ops 5000 --heap 2M --test-corrupt");
    EXPECT_EQ(o.status, 3) << o.err << o.out;
    EXPECT_NE(o.out.find("    result                 VERIFICATION FAILED: "), std::string::npos) << o.out;
    Outcome q = pagevisor("run -q --workload buddy-churn --ops 5000 --heap 2M --test-corrupt");
    EXPECT_EQ(q.status, 3) << q.err << q.out;
}

TEST(Cli, WorkloadBadArgumentsFromTheGuestAreStatus2) {
    PV_REQUIRE_KVM();
    Outcome o = pagevisor("run -q --workload frames --heap 1M --max-block 1000");  // > a quarter of the heap
    EXPECT_EQ(o.status, 2) << o.err << o.out;
    EXPECT_NE(o.out.find("frames: bad arguments"), std::string::npos) << o.out;
}

// In-process: run_cli with string streams (no binary needed).
TEST(CliInProcess, ParseErrorGoesToErr) {
    std::ostringstream out, err;
    const char* argv[] = {"pagevisor", "run", "--vcpus", "many"};
    EXPECT_EQ(run_cli(4, argv, out, err), 2);
    EXPECT_EQ(err.str().rfind("pagevisor: error: ", 0), 0u);
    EXPECT_TRUE(out.str().empty());
}

TEST(CliInProcess, DefaultGuestPathIsNextToTheBinary) {
    unsetenv("PAGEVISOR_GUEST");
    std::string p = default_guest_path();
    EXPECT_NE(p.find("/guest/pvguest.elf"), std::string::npos) << p;
    setenv("PAGEVISOR_GUEST", "/x/y.elf", 1);
    EXPECT_EQ(default_guest_path(), "/x/y.elf");
    unsetenv("PAGEVISOR_GUEST");
}

}  // namespace
}  // namespace pv::cli
