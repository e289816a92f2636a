// The allocator workloads (issue #7) on the real KVM: every workload x {1, 2
// vCPUs} x {eager: populated heap on an eager zone, demand: lazy heap on a demand
// zone} x {fault-around on, off}, with small op counts. The guest verifies every
// block and the allocator's invariants; pagevisor's counters must agree with the
// pages the workload says it touched, and the frames must come back when the
// workload unmaps its heaps. docs/workloads.md.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "tests/support/kvm.h"
#include "tests/support/seed.h"
#include "vmm/abi/hypercall.h"
#include "vmm/run/run_config.h"
#include "vmm/run/workload_summary.h"
#include "vmm/run/workloads.h"

#ifndef PAGEVISOR_GUEST_IMAGE
#error "workload tests need the guest image (target pvguest)"
#endif

namespace pv::run {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kPage = 4096;
constexpr uint64_t kOps = 3000;  // per vCPU for multi; > 2000 so the corrupt flag acts mid-run

enum class Backing { Eager, Demand };

struct Case {
    std::string workload;
    uint32_t vcpus;
    Backing backing;
    bool fault_around;
};

memory::ZoneConfig zone(const std::string& id, uint64_t size, memory::ZoneBackend backend) {
    memory::ZoneConfig z;
    z.id = id;
    z.size = size;
    z.backend = backend;
    return z;
}

// Heaps small enough that a run takes a fraction of a second on PVM (a guest page
// fault costs ~30-40 us there), large enough for a few hundred pages of churn.
uint64_t heap_of(const std::string& workload) {
    if (workload == "sparse") return 64 * kMiB;  // touches 1/64 of it
    if (workload == "ids") return 1 * kMiB;
    return 2 * kMiB;
}

uint64_t max_block_of(const std::string& workload) {
    if (workload == "frames") return 8;  // pages
    if (workload == "ids") return 32;    // IDs
    if (workload == "sparse") return 0;  // unused
    return 16384;                        // bytes: at most a quarter of the heap
}

RunConfig base_config(uint32_t vcpus, Backing backing, bool fault_around) {
    RunConfig c;
    c.guest_path = PAGEVISOR_GUEST_IMAGE;
    c.vcpus = vcpus;
    c.timeout = std::chrono::seconds(60);
    if (backing == Backing::Demand)
        c.memory_config.zones = {zone("m0", 48 * kMiB, memory::ZoneBackend::Eager),
                                 zone("d0", 256 * kMiB, memory::ZoneBackend::Demand)};
    else
        c.memory_config.zones = {zone("m0", 304 * kMiB, memory::ZoneBackend::Eager)};
    c.memory_config.fault_around = {fault_around, 16};
    return c;
}

RunConfig workload_config(const Case& k, uint64_t seed) {
    RunConfig c = base_config(k.vcpus, k.backing, k.fault_around);
    c.workload = k.workload;
    c.seed = seed;
    c.workload_args.ops = kOps;
    c.workload_args.heap_bytes = heap_of(k.workload);
    c.workload_args.max_block = max_block_of(k.workload);
    c.workload_args.check_every = 100;
    c.workload_args.flags = k.backing == Backing::Eager ? abi::kWorkloadPopulate : 0;
    return c;
}

RunResult run(const RunConfig& c) {
    auto r = run_vm(c);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
    return r ? std::move(*r) : RunResult{};
}

std::string text(const RunResult& r) { return (r.error ? r.error->to_string() : "(no error)") + "\n" + r.console; }

const GuestVirtualReport& gv(const RunResult& r) {
    static const GuestVirtualReport kNone;
    EXPECT_TRUE(r.memory_report.guest_virtual.has_value());
    return r.memory_report.guest_virtual ? *r.memory_report.guest_virtual : kNone;
}

// Frames an idle guest (hello) holds at exit with the same memory: what every
// workload must be back to once it unmapped its heaps.
const std::vector<uint64_t>& idle_frames(uint32_t vcpus, Backing backing) {
    static std::map<std::pair<uint32_t, Backing>, std::vector<uint64_t>> cache;
    auto key = std::make_pair(vcpus, backing);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
    RunConfig c = base_config(vcpus, backing, false);
    c.workload = "hello";
    RunResult r = run(c);
    EXPECT_EQ(r.exit_status, 0) << text(r);
    return cache[key] = gv(r).frames_per_node;
}

void PrintTo(const Case& k, std::ostream* os) {
    *os << k.workload << ", " << k.vcpus << " vCPU(s), " << (k.backing == Backing::Eager ? "eager" : "demand")
        << ", fault-around " << (k.fault_around ? "16" : "off");
}

std::string case_name(const testing::TestParamInfo<Case>& info) {
    std::string n = info.param.workload + "_" + std::to_string(info.param.vcpus) + "vcpu_" +
                    (info.param.backing == Backing::Eager ? "eager" : "demand") +
                    (info.param.fault_around ? "_fa16" : "_fa1");
    for (char& ch : n)
        if (ch == '-') ch = '_';
    return n;
}

std::vector<Case> all_cases() {
    std::vector<Case> v;
    for (auto w : kAllocatorWorkloads)
        for (uint32_t vcpus : {1u, 2u})
            for (Backing b : {Backing::Eager, Backing::Demand})
                for (bool fa : {false, true}) v.push_back({std::string(w), vcpus, b, fa});
    return v;
}

class WorkloadMatrix : public testing::TestWithParam<Case> {};

// The faults pagevisor counted agree with the pages the workload touched.
void expect_faults_match_pages(const Case& k, const WorkloadSummary& w, const GuestVirtualReport& g) {
    if (k.backing == Backing::Eager) {
        // Heaps and metadata are mapped with populate: nothing to fault in.
        EXPECT_EQ(g.mapped_faults, 0u);
        return;
    }
    const uint64_t heap_pages = w.heap_bytes / kPage;
    ASSERT_GT(w.pages_touched, 0u);
    EXPECT_LE(w.pages_touched, heap_pages);
    if (!k.fault_around) {
        // One fault per page first touched. The block patterns cover pages_touched
        // pages; an allocator's in-heap headers may touch a few pages no block covers.
        if (k.workload == "sparse") {
            EXPECT_EQ(g.mapped_faults, w.pages_touched);
        } else {
            EXPECT_GE(g.mapped_faults, w.pages_touched);
        }
        EXPECT_LE(g.mapped_faults, heap_pages);
        EXPECT_EQ(g.fault_around_pages, 0u);
        return;
    }
    // Fault-around maps neighbours too (when faults look sequential): at most one
    // fault per page touched, every touched page mapped by a fault or its
    // neighbour's, and fewer faults than pages where blocks are carved from the
    // heap in address order (the byte allocators, frames, frag, multi). ids and
    // sparse touch pages in random order: fault-around may not kick in.
    EXPECT_LE(g.mapped_faults, w.pages_touched);
    EXPECT_GE(g.mapped_faults + g.fault_around_pages, w.pages_touched);
    EXPECT_LE(g.mapped_faults + g.fault_around_pages, heap_pages);
    if (k.workload != "sparse" && k.workload != "ids" && w.pages_touched >= 32) {
        EXPECT_LT(g.mapped_faults, w.pages_touched);
    }
}

TEST_P(WorkloadMatrix, VerifiesAndAccountsPages) {
    PV_REQUIRE_KVM();
    const Case& k = GetParam();
    const uint64_t seed = pv::test::test_seed(std::hash<std::string>{}(case_name({k, 0})));
    SCOPED_TRACE(pv::test::seed_trace(seed));
    RunResult r = run(workload_config(k, seed));
    ASSERT_EQ(r.exit_status, 0) << text(r);
    ASSERT_FALSE(r.error) << text(r);
    auto w = workload_summary(workload_config(k, seed), r);
    ASSERT_TRUE(w.has_value()) << "no wl.ops in the report\n" << text(r);
    EXPECT_TRUE(w->passed()) << w->verdict();
    EXPECT_EQ(w->verdict(), "ok");
    EXPECT_EQ(w->verify_errors, 0u);
    EXPECT_EQ(w->invariant_failures, 0u);
    EXPECT_GT(w->invariant_checks, 0u);
    const uint32_t workers = k.workload == "multi" ? k.vcpus : 1;
    EXPECT_EQ(w->vcpus, workers);
    // For multi every vCPU does kOps: the sum proves both vCPUs worked.
    EXPECT_EQ(w->ops, kOps * workers);
    EXPECT_GT(w->allocs, 0u);
    EXPECT_GE(w->heap_bytes, heap_of(k.workload));
    EXPECT_GT(w->ns, 0u) << "the guest had no TSC frequency";
    expect_faults_match_pages(k, *w, gv(r));
    // The workload unmapped its heaps (and metadata): its frames came back.
    EXPECT_EQ(gv(r).frames_per_node, idle_frames(k.vcpus, k.backing));
}

INSTANTIATE_TEST_SUITE_P(AllWorkloads, WorkloadMatrix, testing::ValuesIn(all_cases()), case_name);

// The same seed and parameters give the same allocation sequence (wl.stat.digest).
TEST(Workload, SameSeedSameSequence) {
    PV_REQUIRE_KVM();
    const uint64_t seed = pv::test::test_seed(71);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    const Case k{"tlsf-churn", 1, Backing::Demand, false};
    auto digest = [&](uint64_t s) {
        RunResult r = run(workload_config(k, s));
        EXPECT_EQ(r.exit_status, 0) << text(r);
        auto w = workload_summary(workload_config(k, s), r);
        for (const auto& [name, value] : w ? w->stats : decltype(w->stats){})
            if (name == "digest") return value;
        ADD_FAILURE() << "no wl.stat.digest\n" << text(r);
        return uint64_t{0};
    };
    const uint64_t a = digest(seed);
    EXPECT_EQ(digest(seed), a);
    EXPECT_NE(digest(seed + 1), a);
}

// The test-only corrupt flag: one byte of a live block changed behind the
// allocator's back must be caught by the verification (exit 3).
class WorkloadCorrupt : public testing::TestWithParam<std::string> {};

TEST_P(WorkloadCorrupt, VerificationCatchesIt) {
    PV_REQUIRE_KVM();
    const uint64_t seed = pv::test::test_seed(std::hash<std::string>{}(GetParam()) + 1);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    Case k{GetParam(), GetParam() == "multi" ? 2u : 1u, Backing::Demand, true};
    RunConfig c = workload_config(k, seed);
    c.workload_args.flags |= abi::kWorkloadCorrupt;
    RunResult r = run(c);
    ASSERT_EQ(r.exit_status, 3) << text(r);
    auto w = workload_summary(c, r);
    ASSERT_TRUE(w.has_value()) << text(r);
    EXPECT_GE(w->verify_errors, 1u);
    EXPECT_FALSE(w->passed());
    EXPECT_NE(w->verdict().find("VERIFICATION FAILED"), std::string::npos) << w->verdict();
}

INSTANTIATE_TEST_SUITE_P(AllWorkloads, WorkloadCorrupt,
                         testing::Values("slab-churn", "buddy-churn", "tlsf-churn", "frames", "ids", "frag", "sparse",
                                         "multi"),
                         [](const testing::TestParamInfo<std::string>& i) {
                             std::string n = i.param;
                             for (char& ch : n)
                                 if (ch == '-') ch = '_';
                             return n;
                         });

// Bad arguments are refused by the guest with exit 2 and a one-line reason.
TEST(Workload, BadArgumentsExit2) {
    PV_REQUIRE_KVM();
    RunConfig c = base_config(1, Backing::Eager, false);
    c.workload = "slab-churn";
    c.workload_args.heap_bytes = 4096;  // below the 1 MiB minimum
    RunResult r = run(c);
    EXPECT_EQ(r.exit_status, 2) << text(r);
    EXPECT_NE(r.console.find("slab-churn: bad arguments"), std::string::npos) << r.console;
    c.workload_args = {};
    c.workload_args.flags = 1u << 7;  // unknown flag bit
    r = run(c);
    EXPECT_EQ(r.exit_status, 2) << text(r);
}

// The list the CLI checks its flags against names programs the guest has.
TEST(Workload, EveryListedWorkloadExistsInTheGuest) {
    PV_REQUIRE_KVM();
    RunConfig c = base_config(1, Backing::Eager, false);
    c.workload = "help";
    RunResult r = run(c);
    for (auto w : kAllocatorWorkloads) EXPECT_NE(r.console.find(std::string(w)), std::string::npos) << w;
}

}  // namespace
}  // namespace pv::run
