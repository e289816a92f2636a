// Boots the real guest image (pvguest.elf) on KVM, one workload per test.
#include <gtest/gtest.h>

#include <unistd.h>

#include <string>

#include "tests/support/kvm.h"
#include "vmm/run/run_config.h"

#ifndef PAGEVISOR_GUEST_IMAGE
#error "boot tests need the guest image (target pvguest)"
#endif

namespace pv::run {
namespace {

RunConfig config(const std::string& workload, uint32_t vcpus = 1) {
    RunConfig c;
    c.guest_path = PAGEVISOR_GUEST_IMAGE;
    c.workload = workload;
    c.vcpus = vcpus;
    c.memory = 64ULL << 20;
    c.timeout = std::chrono::seconds(20);
    return c;
}

RunResult run_ok(const RunConfig& c) {
    auto r = run_vm(c);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().to_string());
    return r ? std::move(*r) : RunResult{};
}

const hc::ReportValue* field(const RunResult& r, const std::string& key) {
    for (const auto& e : r.reports)
        if (e.field.key == key) return &e.field;
    return nullptr;
}

std::string error_text(const RunResult& r) { return r.error ? r.error->to_string() : "(no error)"; }

TEST(Boot, HelloOneVcpu) {
    PV_REQUIRE_KVM();
    RunResult r = run_ok(config("hello"));
    EXPECT_FALSE(r.error) << error_text(r);
    EXPECT_EQ(r.exit_status, 0);
    ASSERT_TRUE(r.guest_exit_code.has_value());
    EXPECT_EQ(*r.guest_exit_code, 0);
    EXPECT_NE(r.console.find("hello from vCPU 0 of 1\n"), std::string::npos) << r.console;
    const auto* vcpus = field(r, "hello.vcpus");
    ASSERT_NE(vcpus, nullptr);
    EXPECT_EQ(vcpus->u64, 1u);
    const auto* ram = field(r, "hello.ram_mib");
    ASSERT_NE(ram, nullptr);
    EXPECT_EQ(ram->u64, 64u);
    ASSERT_EQ(r.vcpus.size(), 1u);
    EXPECT_GE(r.vcpus[0].hypercalls, 3u);  // console, report, exit at least
    EXPECT_GE(r.vcpus[0].exits, r.vcpus[0].hypercalls);
    ASSERT_TRUE(r.time_to_first_hypercall.has_value());
    EXPECT_LE(*r.time_to_first_hypercall, r.time_to_exit);
}

TEST(Boot, HelloTwoVcpusPrefixesLines) {
    PV_REQUIRE_KVM();
    RunResult r = run_ok(config("hello", 2));
    EXPECT_FALSE(r.error) << error_text(r);
    EXPECT_EQ(r.exit_status, 0);
    EXPECT_NE(r.console.find("[vcpu 0] hello from vCPU 0 of 2\n"), std::string::npos) << r.console;
    EXPECT_NE(r.console.find("[vcpu 1] hello from vCPU 1 of 2\n"), std::string::npos) << r.console;
    const auto* vcpus = field(r, "hello.vcpus");
    ASSERT_NE(vcpus, nullptr);
    EXPECT_EQ(vcpus->u64, 2u);
    ASSERT_EQ(r.vcpus.size(), 2u);
    EXPECT_GE(r.vcpus[1].hypercalls, 1u);
}

TEST(Boot, ConsoleSinkSeesEveryLine) {
    PV_REQUIRE_KVM();
    RunConfig c = config("hello", 2);
    std::string seen;
    c.console_sink = [&seen](std::string_view line) { seen += std::string(line) + "\n"; };
    RunResult r = run_ok(c);
    EXPECT_EQ(seen, r.console);
}

class ExitCode : public testing::TestWithParam<int64_t> {};

TEST_P(ExitCode, Propagates) {
    PV_REQUIRE_KVM();
    RunConfig c = config("exit");
    c.params[0] = static_cast<uint64_t>(GetParam());
    RunResult r = run_ok(c);
    EXPECT_FALSE(r.error) << error_text(r);
    ASSERT_TRUE(r.guest_exit_code.has_value());
    EXPECT_EQ(*r.guest_exit_code, GetParam());
    EXPECT_EQ(r.exit_status, static_cast<int>(static_cast<uint64_t>(GetParam()) & 0xFF));
}
INSTANTIATE_TEST_SUITE_P(Codes, ExitCode, testing::Values(0, 3, 255, 256 + 9, -1));

TEST(Boot, TripleFaultFromCorruptIdt) {
    PV_REQUIRE_KVM();
    RunConfig c = config("null");
    c.debug.corrupt_idt = true;
    RunResult r = run_ok(c);
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, ErrorKind::GuestFault);
    EXPECT_NE(r.error->message.find("guest triple fault (shutdown) at RIP 0x"), std::string::npos) << r.error->message;
    EXPECT_EQ(r.exit_status, 6);
}

TEST(Boot, UnmappedMmio) {
    PV_REQUIRE_KVM();
    RunResult r = run_ok(config("bad-mmio"));
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, ErrorKind::GuestFault);
    EXPECT_NE(r.error->message.find("guest accessed unmapped GPA 0xd0008000"), std::string::npos) << r.error->message;
    EXPECT_NE(r.error->message.find(" at RIP 0x"), std::string::npos);
    EXPECT_NE(r.error->message.find("rflags="), std::string::npos);  // the register dump
    EXPECT_EQ(r.error->message.find('\n'), std::string::npos);       // one line
}

TEST(Boot, NullDereferenceIsPageFault) {
    PV_REQUIRE_KVM();
    RunResult r = run_ok(config("null"));
    // pagevisor serves guest page faults: page 0 is in no area, a segmentation fault,
    // delivered to the guest's handler, which reports it and exits with 139.
    EXPECT_FALSE(r.error) << error_text(r);
    EXPECT_EQ(r.exit_status, 139) << r.console;
    EXPECT_NE(r.console.find("pvguest: segmentation fault: read at 0x0 (no mapping) at RIP 0x"), std::string::npos)
        << r.console;
    bool reported = false;
    for (const auto& e : r.reports)
        if (e.field.key == "segv.addr") reported = e.field.u64 == 0;
    EXPECT_TRUE(reported);
}

TEST(Boot, InvalidOpcode) {
    PV_REQUIRE_KVM();
    RunResult r = run_ok(config("ud"));
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, ErrorKind::GuestFault);
    EXPECT_NE(r.error->message.find("guest exception #UD (invalid opcode)"), std::string::npos) << r.error->message;
}

TEST(Boot, RunawayLoopTimesOut) {
    PV_REQUIRE_KVM();
    RunConfig c = config("loop");
    c.timeout = std::chrono::seconds(1);
    RunResult r = run_ok(c);
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, ErrorKind::Timeout);
    EXPECT_EQ(r.error->message, "guest did not finish within 1s (timeout)");
    EXPECT_EQ(r.exit_status, 7);
}

TEST(Boot, LoopOnEveryVcpuStopsThemAll) {
    PV_REQUIRE_KVM();
    RunConfig c = config("loop", 2);
    c.timeout = std::chrono::milliseconds(300);
    RunResult r = run_ok(c);
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, ErrorKind::Timeout);
}

TEST(Boot, WildPointersAreRejected) {
    PV_REQUIRE_KVM();
    RunResult r = run_ok(config("badptr"));
    EXPECT_FALSE(r.error) << error_text(r);
    EXPECT_EQ(r.exit_status, 0) << r.console;
}

TEST(Boot, NopHypercallsAreCounted) {
    PV_REQUIRE_KVM();
    RunConfig c = config("hcbench");
    c.params[0] = 200;
    RunResult r = run_ok(c);
    EXPECT_FALSE(r.error) << error_text(r);
    EXPECT_GE(r.total_hypercalls(), 200u);
}

TEST(Boot, MissingImageIsAnIoError) {
    RunConfig c = config("hello");
    c.guest_path = "/nonexistent/pvguest.elf";
    auto r = run_vm(c);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("/nonexistent/pvguest.elf"), std::string::npos);
}

TEST(Boot, MalformedImageIsAGuestImageError) {
    std::string path = testing::TempDir() + "pv_boot_test_bad." + std::to_string(::getpid()) + ".elf";
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("this is not an ELF file, just some text long enough to have a header's worth of bytes......", f);
    std::fclose(f);
    RunConfig c = config("hello");
    c.guest_path = path;
    auto r = run_vm(c);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::GuestImage);
    std::remove(path.c_str());
}

TEST(Boot, BadConfigIsAUsageError) {
    RunConfig c = config("hello");
    c.vcpus = 0;
    auto r = run_vm(c);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::Usage);
    c = config(std::string(40, 'x'));
    r = run_vm(c);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::Usage);
}

TEST(Boot, MissingKvmDeviceIsAKvmError) {
    RunConfig c = config("hello");
    c.kvm_device = "/nonexistent/kvm";
    auto r = run_vm(c);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::Kvm);
    EXPECT_NE(r.error().message.find("does not exist (is the kvm module loaded?)"), std::string::npos);
}

}  // namespace
}  // namespace pv::run
