// The hostile guest (issue 10, guest/programs/hostile.cpp): floods of
// hypercalls with wild numbers and arguments from every vCPU, garbage written
// over the guest's own page tables, munmap racing access on two vCPUs, and
// touching memory past its end. pagevisor answers each call with a result or a
// defined error, stops the guest with a one-line error where the guest is at
// fault, and stays up; the ASan+UBSan (and LSan) configuration runs this too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "tests/support/kvm.h"
#include "vmm/abi/layout.h"
#include "vmm/run/run_config.h"

#ifndef PAGEVISOR_GUEST_IMAGE
#error "hostile tests need the guest image (target pvguest)"
#endif

namespace pv::run {
namespace {

uint64_t field(const RunResult& r, const std::string& key) {
    for (const auto& e : r.reports)
        if (e.field.key == key) return e.field.u64;
    ADD_FAILURE() << "no report field " << key;
    return ~0ULL;
}

memory::ZoneConfig zone(std::string id, uint64_t size, memory::ZoneBackend backend) {
    memory::ZoneConfig z;
    z.id = std::move(id);
    z.size = size;
    z.backend = backend;
    return z;
}

RunConfig hostile(uint32_t vcpus, uint64_t calls, uint64_t seed, uint64_t scenario = 0) {
    RunConfig c;
    c.guest_path = PAGEVISOR_GUEST_IMAGE;
    c.workload = "hostile";
    c.vcpus = vcpus;
    c.params[0] = calls;
    c.params[1] = scenario;
    c.seed = seed;
    c.memory = 64ULL << 20;
    c.timeout = std::chrono::seconds(60);
    return c;
}

void expect_survived(const RunConfig& c, uint64_t calls) {
    auto r = run_vm(c);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    ASSERT_EQ(r->exit_status, 0) << (r->error ? r->error->to_string() : "") << r->console;
    EXPECT_EQ(field(*r, "hostile.calls"), calls);
    EXPECT_EQ(field(*r, "hostile.bad_result"), 0u);
    EXPECT_EQ(field(*r, "hostile.ok") + field(*r, "hostile.errors"), calls);
    EXPECT_GT(field(*r, "hostile.errors"), calls / 2);  // most wild calls are refused
    EXPECT_GE(r->total_hypercalls(), calls);
}

TEST(Hostile, HypercallFloodOnTwoVcpus) {
    PV_REQUIRE_KVM();
    expect_survived(hostile(2, 10000, 1), 20000);
}

TEST(Hostile, HypercallFloodWithDemandMemory) {
    PV_REQUIRE_KVM();
    // Wild pointers into demand-paged RAM make the VMM's own guest accesses fault
    // through the userfaultfd server from vCPU threads: no deadlock, no crash.
    RunConfig c = hostile(2, 5000, 2);
    c.memory_config.zones = {zone("m0", 48ULL << 20, memory::ZoneBackend::Eager),
                             zone("d0", 256ULL << 20, memory::ZoneBackend::Demand)};
    expect_survived(c, 10000);
}

std::string text(const RunResult& r) { return (r.error ? r.error->to_string() : "(no error)") + "\n" + r.console; }

// The last value of a report field the guest sent (the oom scenarios report progress repeatedly).
std::optional<uint64_t> last_field(const RunResult& r, const std::string& key) {
    std::optional<uint64_t> v;
    for (const auto& e : r.reports)
        if (e.field.key == key) v = e.field.u64;
    return v;
}

uint64_t last(const RunResult& r, const std::string& key) {
    auto v = last_field(r, key);
    if (!v) ADD_FAILURE() << "no report field " << key;
    return v.value_or(~0ULL);
}

bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == std::string::npos; }

// Garbage over every page of the RAM window, page tables pagevisor built there
// included, then pointers into the region, memory calls on it and the region
// itself. pagevisor survives (no crash, no ASan report); every call the guest
// made got a defined result; the guest ends normally, with a segmentation fault
// (139) or stopped with a one-line guest-fault error (6): the garbage may make
// pagevisor's own edits wreck the guest's supervisor mappings (its business).
// Returns the phase the guest reached (hostile.cpp).
uint64_t expect_pagetable_garbage_survived(uint64_t seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    RunConfig c = hostile(1, 0, seed, 1);
    auto r = run_vm(c);
    EXPECT_TRUE(r.has_value()) << r.error().to_string();
    if (!r) return 0;
    auto phase = last_field(*r, "hostile.pt.phase");
    EXPECT_TRUE(phase.has_value()) << text(*r);
    if (!phase) return 0;
    EXPECT_EQ(last(*r, "hostile.pt.bad_result"), 0u) << text(*r);
    EXPECT_EQ(last(*r, "hostile.pt.scribbled"), (c.memory - layout::kFreeRamStart) / layout::kPage);
    EXPECT_TRUE(r->memory_report.guest_virtual.has_value());
    if (r->memory_report.guest_virtual) {
        EXPECT_GT(r->memory_report.guest_virtual->page_table_frames, 0u) << "no page table came from guest RAM";
    }
    switch (r->exit_status) {
        case 0: EXPECT_EQ(*phase, 4u) << text(*r); break;
        case 139: EXPECT_NE(r->console.find("segmentation fault"), std::string::npos) << text(*r); break;
        case 6:
            EXPECT_TRUE(r->error.has_value());
            if (!r->error) break;
            EXPECT_EQ(r->error->kind, ErrorKind::GuestFault);
            EXPECT_TRUE(one_line(r->error->message)) << r->error->message;
            break;
        default: ADD_FAILURE() << "exit status " << r->exit_status << ": " << text(*r);
    }
    std::printf("seed %llu: phase %llu, exit %d: %s\n", static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(*phase), r->exit_status,
                r->error ? r->error->message.c_str() : "(no error)");
    return *phase;
}

TEST(Hostile, GarbageInItsOwnPageTables) {
    PV_REQUIRE_KVM();
    uint64_t deepest = 0;
    for (uint64_t seed = 1; seed <= 6; ++seed) deepest = std::max(deepest, expect_pagetable_garbage_survived(seed));
    EXPECT_GE(deepest, 3u) << "no seed got as far as the memory calls";
}

// Targeted garbage (scenario 5): every entry of every RAM page that looks like
// one of pagevisor's page tables is redirected into the boot table pool (the
// guest's own supervisor tables and free pool frames) or at another table. The
// run happens in a child process, so a crash of pagevisor fails this test
// without taking the test binary down.
//
// KNOWN FAILURE (seed 2, reproducible): munmap/teardown walks the redirected
// entries, finds pool frames empty and frees them as tables; TablePool::free_table
// then hits MM_ASSERT (double free / never allocated) and pagevisor dies with
// SIGILL in GuestAddressSpace::~GuestAddressSpace -> MappingContext::finish ->
// PagingTableMemory::release_deferred. The fix belongs in vmm/paging (table
// ownership: free only tables PagingTableMemory handed out) and
// vmm/x86/table_pool.cpp (no assert on a guest-influenced frame).
TEST(Hostile, GarbageRedirectingItsTablesIntoTheBootPool) {
    PV_REQUIRE_KVM();
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    for (uint64_t seed = 1; seed <= 4; ++seed) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        const RunConfig c = hostile(1, 0, seed, 5);
        EXPECT_EXIT(
            {
                auto r = run_vm(c);
                const bool defined = r && (r->exit_status == 0 || r->exit_status == 139 || r->exit_status == 6);
                std::_Exit(defined ? 0 : 1);
            },
            ::testing::ExitedWithCode(0), "");
    }
}

// vCPU 1 accesses a region while vCPU 0 mprotects, munmaps and maps it again:
// every fault is delivered to the guest's handler, fresh mappings never show
// another generation's data, and after munmap returns the old frame cannot be
// written.
TEST(Hostile, MunmapRacingAccessOnTwoVcpus) {
    PV_REQUIRE_KVM();
    constexpr uint64_t kGenerations = 50;
    RunConfig c = hostile(2, kGenerations, 4, 2);
    auto r = run_vm(c);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    ASSERT_EQ(r->exit_status, 0) << text(*r);
    EXPECT_EQ(field(*r, "hostile.race.gens"), kGenerations);
    EXPECT_EQ(field(*r, "hostile.race.verified"), kGenerations);  // one post-munmap fault per generation
    EXPECT_EQ(field(*r, "hostile.race.stale"), 0u);
    EXPECT_EQ(field(*r, "hostile.race.stale_data"), 0u);
    EXPECT_EQ(field(*r, "hostile.race.wild"), 0u);
    EXPECT_EQ(field(*r, "hostile.race.call_err"), 0u);
    EXPECT_GE(field(*r, "hostile.race.faults"), kGenerations);
    EXPECT_GT(field(*r, "hostile.race.accesses"), kGenerations);
    ASSERT_TRUE(r->memory_report.guest_virtual.has_value());
    EXPECT_GE(r->memory_report.guest_virtual->segv, kGenerations);
}

void expect_out_of_memory(const RunResult& r) {
    ASSERT_EQ(r.exit_status, 9) << text(r);
    ASSERT_TRUE(r.error.has_value());
    EXPECT_EQ(r.error->kind, ErrorKind::GuestOutOfMemory);
    EXPECT_NE(r.error->message.find("guest out of memory"), std::string::npos) << r.error->message;
    EXPECT_TRUE(one_line(r.error->message)) << r.error->message;
}

// Lazy chunks up to twice the RAM, every page touched in order: the first touch
// without a frame stops the guest (exit 9), after most of the RAM was handed out.
TEST(Hostile, TouchingPastTheEndOfMemoryStopsTheGuest) {
    PV_REQUIRE_KVM();
    RunConfig c = hostile(1, 0, 5, 3);
    auto r = run_vm(c);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    expect_out_of_memory(*r);
    const uint64_t frames = (c.memory - layout::kFreeRamStart) / layout::kPage;
    auto touched = last_field(*r, "hostile.oom.touched");
    ASSERT_TRUE(touched.has_value()) << text(*r);
    EXPECT_LE(*touched, frames);
    EXPECT_GE(*touched + 1024 + 16, frames / 2);  // progress is reported per 4 MiB chunk
    EXPECT_EQ(last(*r, "hostile.oom.mapfail"), 0u);
}

// Populate until mmap says NoMemory, free one chunk and populate it again, then
// touch a lazy chunk: the guest is stopped with exit 9, never hangs.
TEST(Hostile, PopulatePastTheEndFailsThenStops) {
    PV_REQUIRE_KVM();
    RunConfig c = hostile(1, 0, 6, 4);
    auto r = run_vm(c);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    expect_out_of_memory(*r);
    EXPECT_EQ(last(*r, "hostile.oom.mapfail"), 1u) << text(*r);
    EXPECT_GE(last(*r, "hostile.oom.chunks"), 2u);
}

// The same with the guest's RAM behind a demand zone whose host quota is smaller
// than the RAM: the frames pagevisor hands out for guest-virtual memory run into
// the guest-physical quota first. The guest is stopped with exit 9.
TEST(Hostile, TouchingPastADemandQuotaStopsTheGuest) {
    PV_REQUIRE_KVM();
    RunConfig c = hostile(1, 0, 7, 3);
    memory::ZoneConfig d = zone("d0", 32ULL << 20, memory::ZoneBackend::Demand);
    d.quota = 8ULL << 20;
    c.memory_config.zones = {zone("m0", 48ULL << 20, memory::ZoneBackend::Eager), d};
    c.memory = 80ULL << 20;
    auto r = run_vm(c);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    expect_out_of_memory(*r);
}

}  // namespace
}  // namespace pv::run

namespace pv::run {
namespace {

// vCPU threads run under the seccomp filter: a forbidden call from one fails
// (trap mode: EPERM, and its name on stderr); without the filter it works.
TEST(Seccomp, VcpuThreadsAreFiltered) {
    PV_REQUIRE_KVM();
    RunConfig c = hostile(1, 10, 3);
    c.debug.probe_seccomp = true;
    c.seccomp = SeccompMode::Trap;
    auto r = run_vm(c);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    EXPECT_EQ(r->exit_status, 0);
    ASSERT_TRUE(r->seccomp_probe_errno.has_value());
    EXPECT_EQ(*r->seccomp_probe_errno, EPERM);
    c.seccomp = SeccompMode::Off;
    r = run_vm(c);
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE(r->seccomp_probe_errno.has_value());
    EXPECT_EQ(*r->seccomp_probe_errno, 0);
}

}  // namespace
}  // namespace pv::run
