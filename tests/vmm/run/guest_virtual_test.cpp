// Guest-virtual memory served by pagevisor on the real KVM (issue 6): the
// `vmtest` guest program's scenarios (mmap/munmap/mprotect/brk, page faults,
// segmentation faults, TLB shootdown across vCPUs, per-node frames).
#include <gtest/gtest.h>

#include <string>

#include "tests/support/kvm.h"
#include "vmm/run/run_config.h"

#ifndef PAGEVISOR_GUEST_IMAGE
#error "guest-virtual tests need the guest image (target pvguest)"
#endif

namespace pv::run {
namespace {

memory::ZoneConfig zone(std::string id) {
    memory::ZoneConfig z;
    z.id = std::move(id);
    z.size = 64ULL << 20;
    return z;
}

memory::NumaNodeConfig node(uint32_t id, std::string zone_id) {
    memory::NumaNodeConfig n;
    n.guest_numa_id = id;
    n.cpus = {id};
    n.memory_zones = {std::move(zone_id)};
    return n;
}

RunConfig vmtest(uint64_t scenario, uint64_t pages = 0, uint32_t vcpus = 1, bool fault_around = false) {
    RunConfig c;
    c.guest_path = PAGEVISOR_GUEST_IMAGE;
    c.workload = "vmtest";
    c.vcpus = vcpus;
    c.params[0] = scenario;
    c.params[1] = pages;
    c.memory = 128ULL << 20;
    c.memory_config.fault_around = {fault_around, 16};
    c.timeout = std::chrono::seconds(60);
    return c;
}

RunResult run(const RunConfig& c) {
    auto r = run_vm(c);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
    return r ? std::move(*r) : RunResult{};
}

const hc::ReportValue* field(const RunResult& r, const std::string& key) {
    for (const auto& e : r.reports)
        if (e.field.key == key) return &e.field;
    return nullptr;
}

std::string text(const RunResult& r) { return (r.error ? r.error->to_string() : "(no error)") + "\n" + r.console; }

const GuestVirtualReport& gv(const RunResult& r) {
    static const GuestVirtualReport kNone;
    EXPECT_TRUE(r.memory_report.guest_virtual.has_value());
    return r.memory_report.guest_virtual ? *r.memory_report.guest_virtual : kNone;
}

// The address the guest printed before its deliberate bad access ("vmtest: <what> 0x...").
std::string announced(const RunResult& r, const std::string& what) {
    auto at = r.console.find("vmtest: " + what + " 0x");
    if (at == std::string::npos) return "(not announced)";
    at += what.size() + 9;
    return r.console.substr(at, r.console.find('\n', at) - at);
}

void expect_ok(const RunResult& r) {
    ASSERT_EQ(r.exit_status, 0) << text(r);
    const auto* e = field(r, "vm.errors");
    ASSERT_NE(e, nullptr) << text(r);
    EXPECT_EQ(e->u64, 0u);
}

// The guest's own fault handler reported the segmentation fault and exited 139.
void expect_segv(const RunResult& r, const std::string& what, const std::string& access, const std::string& why,
                 uint32_t vcpu = 0) {
    ASSERT_EQ(r.exit_status, 139) << text(r);
    EXPECT_FALSE(r.error) << text(r);
    const std::string line = "pvguest: segmentation fault: " + access + " at " + announced(r, what) + " (" + why + ")";
    EXPECT_NE(r.console.find(line), std::string::npos) << line << "\n" << r.console;
    const auto* addr = field(r, "segv.addr");
    const auto* v = field(r, "segv.vcpu");
    ASSERT_NE(addr, nullptr);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(addr->u64, std::stoull(announced(r, what), nullptr, 16));
    EXPECT_EQ(v->u64, vcpu);
    EXPECT_GE(gv(r).segv, 1u);
}

TEST(GuestVirtual, LazyMappingTakesOneFaultPerPage) {
    PV_REQUIRE_KVM();
    RunResult r = run(vmtest(1, 300));
    expect_ok(r);
    EXPECT_EQ(gv(r).faults, 300u);
    EXPECT_EQ(gv(r).mapped_faults, 300u);
    EXPECT_EQ(gv(r).fault_around_pages, 0u);
    ASSERT_FALSE(gv(r).frames_per_node.empty());
    EXPECT_EQ(gv(r).frames_per_node[0], 0u);  // munmap returned every frame
    EXPECT_GE(gv(r).shootdowns, 1u);
}

TEST(GuestVirtual, FaultAroundMapsNeighbours) {
    PV_REQUIRE_KVM();
    RunResult r = run(vmtest(1, 256, 1, true));
    expect_ok(r);
    EXPECT_LE(gv(r).faults, 256u / 16 + 1);
    EXPECT_GE(gv(r).fault_around_pages, 256u - gv(r).faults);
}

TEST(GuestVirtual, PopulateTakesNoFault) {
    PV_REQUIRE_KVM();
    RunResult r = run(vmtest(7, 128));
    expect_ok(r);
    EXPECT_EQ(gv(r).faults, 0u);
    EXPECT_EQ(gv(r).frames_per_node.at(0), 128u);
}

TEST(GuestVirtual, WriteAfterMprotectReadOnlyIsSegv) {
    PV_REQUIRE_KVM();
    expect_segv(run(vmtest(2)), "write to read-only", "write", "not allowed by the mapping");
}

TEST(GuestVirtual, ReadAfterMunmapIsSegv) {
    PV_REQUIRE_KVM();
    expect_segv(run(vmtest(3)), "read of unmapped", "read", "no mapping");
}

TEST(GuestVirtual, ExecOfNoExecMemoryIsSegv) {
    PV_REQUIRE_KVM();
    expect_segv(run(vmtest(4)), "execute of no-exec", "execute", "not allowed by the mapping");
}

TEST(GuestVirtual, BrkGrowsShrinksAndZeroes) {
    PV_REQUIRE_KVM();
    expect_ok(run(vmtest(5, 200)));
}

TEST(GuestVirtual, HugeMappingSplitByPartialMunmap) {
    PV_REQUIRE_KVM();
    RunResult r = run(vmtest(8));
    expect_ok(r);
    EXPECT_GE(gv(r).huge_faults, 1u);
}

TEST(GuestVirtual, ExhaustedMemoryIsAnMmapFailure) {
    PV_REQUIRE_KVM();
    RunResult r = run(vmtest(9));
    expect_ok(r);
    const auto* result = field(r, "vm.result");
    ASSERT_NE(result, nullptr);
    EXPECT_EQ(result->i64, -4);  // MemError::NoMemory
}

// vCPU 1 keeps reading a page whose translation it has cached; vCPU 0 munmaps
// it. Once munmap returned, vCPU 1's next read must fault.
TEST(GuestVirtual, MunmapShootsDownTheOtherVcpusTranslation) {
    PV_REQUIRE_KVM();
    RunResult r = run(vmtest(6, 0, 2));
    EXPECT_EQ(r.console.find("STALE"), std::string::npos) << r.console;
    expect_segv(r, "read after munmap", "read", "no mapping", 1);
    EXPECT_GE(gv(r).shootdowns, 1u);
}

// vCPUs on two guest nodes: each one's first touches take frames from its own node.
TEST(GuestVirtual, FramesComeFromTheFaultingVcpusNode) {
    PV_REQUIRE_KVM();
    RunConfig c = vmtest(10, 100, 2);
    c.memory_config.zones = {zone("m0"), zone("m1")};
    c.memory_config.nodes = {node(0, "m0"), node(1, "m1")};
    RunResult r = run(c);
    expect_ok(r);
    ASSERT_EQ(gv(r).frames_per_node.size(), 2u);
    EXPECT_EQ(gv(r).frames_per_node[0], 100u);
    EXPECT_EQ(gv(r).frames_per_node[1], 100u);
}

// Without a usable guest handler pagevisor reports the fault itself (exit 6).
TEST(GuestVirtual, FaultInTheGuestHandlerStopsTheGuest) {
    PV_REQUIRE_KVM();
    RunResult r = run(vmtest(11));
    ASSERT_EQ(r.exit_status, 6) << text(r);
    ASSERT_TRUE(r.error);
    EXPECT_NE(r.error->message.find("guest segmentation fault: execute at GVA 0x700000000000 (no mapping)"),
              std::string::npos)
        << r.error->message;
    EXPECT_NE(r.error->message.find("in the guest's fault handler"), std::string::npos) << r.error->message;
}

TEST(GuestVirtual, WithoutAGuestHandlerPagevisorReports) {
    PV_REQUIRE_KVM();
    RunResult r = run(vmtest(12));
    ASSERT_EQ(r.exit_status, 6) << text(r);
    ASSERT_TRUE(r.error);
    EXPECT_NE(r.error->message.find("guest segmentation fault: read at GVA 0x600000000000 (no mapping) at RIP 0x"),
              std::string::npos)
        << r.error->message;
}

}  // namespace
}  // namespace pv::run

namespace pv::run {
namespace {

// pfbench (the guest page-fault benchmark's program): lazy pages take one fault
// each, populated pages none, bad params are refused.
TEST(GuestVirtual, PfbenchCountsFaults) {
    PV_REQUIRE_KVM();
    RunConfig c = vmtest(0);
    c.workload = "pfbench";
    c.params = {512, 0, 0, 16, 0, 0, 0, 0};
    RunResult r = run(c);
    ASSERT_EQ(r.exit_status, 0) << text(r);
    EXPECT_EQ(field(r, "pf.errors")->u64, 0u);
    EXPECT_EQ(gv(r).faults, 512u);
    c.params[2] = 1;  // populate
    r = run(c);
    ASSERT_EQ(r.exit_status, 0) << text(r);
    EXPECT_EQ(gv(r).faults, 0u);
    c.params[1] = 5;  // no such order
    r = run(c);
    EXPECT_EQ(r.exit_status, 2) << text(r);
}

}  // namespace
}  // namespace pv::run

namespace pv::run {
namespace {

// The no-work window (SetNoWorkWindow, guest/kernel/stubs.S): pfbench with p4 =
// N loads from a PROT_NONE page registered as the window. Each load is a #PF
// that the guest's CPL0 stub handles alone (the load is skipped, no exit);
// the lazy pages touched while the window exists, outside it, still fault to
// pagevisor one by one.
TEST(GuestVirtual, NoWorkWindowFaultsNeverExit) {
    PV_REQUIRE_KVM();
    constexpr uint64_t kPages = 64;
    constexpr uint64_t kNoWork = 2000;
    RunConfig c = vmtest(0);
    c.workload = "pfbench";
    c.params = {kPages, 0, 0, 16, kNoWork, 0, 0, 0};
    RunResult r = run(c);
    ASSERT_EQ(r.exit_status, 0) << text(r);
    ASSERT_NE(field(r, "pf.nowork_skipped"), nullptr) << text(r);
    EXPECT_EQ(field(r, "pf.errors")->u64, 0u);
    EXPECT_EQ(field(r, "pf.nowork_faults")->u64, kNoWork);
    EXPECT_EQ(field(r, "pf.nowork_skipped")->u64, kNoWork) << "every probe was skipped by the stub";
    EXPECT_EQ(gv(r).faults, kPages) << "faults outside the window reach pagevisor, those inside do not";
    EXPECT_EQ(gv(r).segv, 0u);
    // Every exit is a hypercall or one of the lazy pages' faults (a few spare
    // for exits KVM may add, e.g. a signal); kNoWork more would mean the
    // window's faults exited.
    ASSERT_EQ(r.vcpus.size(), 1u);
    const uint64_t other_exits = r.vcpus[0].exits - r.vcpus[0].hypercalls;
    EXPECT_GE(other_exits, kPages);
    EXPECT_LE(other_exits, kPages + 16);
}

// Without a window, the same probe is an ordinary fault on a PROT_NONE page:
// pagevisor delivers a segmentation fault (no loop, no skipped instruction).
TEST(GuestVirtual, ProbeWithoutNoWorkWindowIsSegv) {
    PV_REQUIRE_KVM();
    RunConfig c = vmtest(0);
    c.workload = "pfbench";
    c.params = {1, 0, 4, 1, 0, 0, 0, 0};
    RunResult r = run(c);
    ASSERT_EQ(r.exit_status, 139) << text(r);
    auto at = r.console.find("pfbench: probe 0x");
    ASSERT_NE(at, std::string::npos) << r.console;
    const uint64_t page = std::stoull(r.console.substr(at + 17), nullptr, 16);
    const auto* addr = field(r, "segv.addr");
    ASSERT_NE(addr, nullptr) << text(r);
    EXPECT_EQ(addr->u64, page);
    EXPECT_EQ(r.console.find("was skipped"), std::string::npos) << r.console;
    EXPECT_EQ(gv(r).segv, 1u);
}

// pfbench refuses an unknown flag and too many no-work faults (the window's own
// checks are the dispatcher's: tests/vmm/hypercall/dispatcher_test.cpp).
TEST(GuestVirtual, PfbenchNoWorkParamsAreChecked) {
    PV_REQUIRE_KVM();
    RunConfig c = vmtest(0);
    c.workload = "pfbench";
    c.params = {1, 0, 8, 1, 0, 0, 0, 0};  // unknown p2 bit
    EXPECT_EQ(run(c).exit_status, 2);
    c.params = {1, 0, 0, 1, (1ULL << 20) + 1, 0, 0, 0};  // p4 above 2^20
    EXPECT_EQ(run(c).exit_status, 2);
}

// Every guest #PF pagevisor served is timed into the per-vCPU latency histograms,
// merged in the report: as many samples as faults, from both vCPUs.
TEST(GuestVirtual, EveryGuestFaultIsTimed) {
    PV_REQUIRE_KVM();
    RunConfig c = vmtest(10, 100, 2);
    RunResult r = run(c);
    expect_ok(r);
    const auto& g = gv(r);
    EXPECT_EQ(g.latency.count, g.faults);
    EXPECT_GE(g.latency.count, 200u) << "each vCPU touched 100 pages lazily";
    EXPECT_GT(g.latency.max_ns, 0u);
    EXPECT_LE(g.latency.p50_ns(), g.latency.max_ns);
    EXPECT_LE(g.latency.p99_ns(), g.latency.max_ns);
}

// A zone quota limits the guest frames pagevisor hands out on its node: an eager
// 64 MiB zone (the image, boot structures) plus a demand zone with a 2 MiB quota
// on node 0; the guest frame limit is 512 frames, so touching 1024 lazily mapped
// pages stops the guest as out of memory in a page fault, and 256 pages fit.
TEST(GuestVirtual, ZoneQuotaLimitsGuestFrames) {
    PV_REQUIRE_KVM();
    auto config = [](uint64_t pages) {
        RunConfig c = vmtest(10, pages);
        memory::ZoneConfig d = zone("d0");
        d.backend = memory::ZoneBackend::Demand;
        d.quota = 2ULL << 20;
        c.memory_config.zones = {zone("m0"), d};
        return c;
    };
    RunResult over = run(config(1024));
    ASSERT_TRUE(over.error.has_value()) << over.console;
    EXPECT_EQ(over.error->kind, ErrorKind::GuestOutOfMemory);
    EXPECT_NE(over.error->message.find("guest out of memory on node 0 (page fault"), std::string::npos)
        << over.error->message;
    EXPECT_EQ(over.exit_status, 9);
    RunResult under = run(config(256));
    expect_ok(under);
    EXPECT_EQ(gv(under).frames_per_node[0], 256u);
}

}  // namespace
}  // namespace pv::run
