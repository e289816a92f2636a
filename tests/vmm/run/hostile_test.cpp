// The hostile guest (issue 10): floods of hypercalls with wild numbers and
// arguments from every vCPU. pagevisor answers each with a result or a
// defined error and stays up; the ASan+UBSan configuration runs this too.
#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "tests/support/kvm.h"
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

RunConfig hostile(uint32_t vcpus, uint64_t calls, uint64_t seed) {
    RunConfig c;
    c.guest_path = PAGEVISOR_GUEST_IMAGE;
    c.workload = "hostile";
    c.vcpus = vcpus;
    c.params[0] = calls;
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
