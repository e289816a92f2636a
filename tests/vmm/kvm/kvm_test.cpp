// The KVM wrappers against the real /dev/kvm: errors are clear, capabilities
// are checked, ioctls that fail come back as Kvm errors.
#include <gtest/gtest.h>

#include <algorithm>

#include "tests/support/kvm.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"

namespace pv::kvm {
namespace {

TEST(Kvm, MissingDeviceSaysSo) {
    auto k = Kvm::open("/nonexistent/kvm");
    ASSERT_FALSE(k.has_value());
    EXPECT_EQ(k.error().kind, ErrorKind::Kvm);
    EXPECT_EQ(k.error().message, "KVM is not available: /nonexistent/kvm does not exist (is the kvm module loaded?)");
}

TEST(Kvm, NonKvmDeviceIsRejected) {
    auto k = Kvm::open("/dev/null");
    ASSERT_FALSE(k.has_value());
    EXPECT_EQ(k.error().kind, ErrorKind::Kvm);
    EXPECT_NE(k.error().message.find("is not a usable KVM device"), std::string::npos) << k.error().message;
}

TEST(Kvm, OpensAndHasTheRequiredCapabilities) {
    PV_REQUIRE_KVM();
    auto k = Kvm::open();
    ASSERT_TRUE(k.has_value()) << k.error().to_string();
    EXPECT_EQ(k->api_version(), 12);
    for (Cap c : Kvm::required_caps()) {
        EXPECT_GT(k->check(c), 0) << cap_name(c);
        EXPECT_TRUE(k->require(c).has_value());
    }
    EXPECT_GT(k->max_vcpus(), 0);
    EXPECT_GT(k->nr_memslots(), 1);
}

TEST(Kvm, CapNamesAreTheUapiNames) {
    EXPECT_EQ(cap_name(Cap::ImmediateExit), "KVM_CAP_IMMEDIATE_EXIT");
    EXPECT_EQ(cap_name(Cap::UserMemory), "KVM_CAP_USER_MEMORY");
    EXPECT_EQ(cap_name(Cap::MaxVcpuId), "KVM_CAP_MAX_VCPU_ID");
}

TEST(Kvm, FlavourHasAName) {
    Flavour f = Kvm::flavour();
    EXPECT_FALSE(flavour_name(f).empty());
    EXPECT_EQ(flavour_name(Flavour::Pvm), "PVM");
    EXPECT_EQ(flavour_name(Flavour::Vmx), "VMX");
    EXPECT_EQ(flavour_name(Flavour::Svm), "SVM");
}

TEST(Kvm, SupportedCpuidHasTheBasicLeaves) {
    PV_REQUIRE_KVM();
    auto k = Kvm::open();
    ASSERT_TRUE(k.has_value());
    auto cpuid = k->supported_cpuid();
    ASSERT_TRUE(cpuid.has_value()) << cpuid.error().to_string();
    auto has = [&](uint32_t fn) {
        return std::any_of(cpuid->begin(), cpuid->end(), [fn](const CpuidEntry& e) { return e.function == fn; });
    };
    EXPECT_TRUE(has(0));
    EXPECT_TRUE(has(1));
    EXPECT_TRUE(has(0x8000'0001));
    for (const auto& e : *cpuid) {
        if (e.function == 0x8000'0001) {
            EXPECT_TRUE(e.edx & (1U << 29)) << "long mode";
        }
    }
}

class VmTest : public testing::Test {
protected:
    void SetUp() override {
        PV_REQUIRE_KVM();
        auto k = Kvm::open();
        ASSERT_TRUE(k.has_value()) << k.error().to_string();
        m_kvm.emplace(std::move(*k));
        auto vm = m_kvm->create_vm();
        ASSERT_TRUE(vm.has_value()) << vm.error().to_string();
        m_vm.emplace(std::move(*vm));
    }
    std::optional<Kvm> m_kvm;
    std::optional<Vm> m_vm;
};

TEST_F(VmTest, MisalignedMemslotIsInvalid) {
    auto r = m_vm->set_user_memory_region(0, mm::GuestPhysAddr(0x800), 0x1000, mm::HostVirtAddr(0x10000));
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::Invalid);
}

TEST_F(VmTest, BadMemslotIsAKvmErrorWithErrno) {
    // A slot number far beyond KVM_CAP_NR_MEMSLOTS.
    auto r = m_vm->set_user_memory_region(0x7FFF'0000, mm::GuestPhysAddr(0), 0x1000, mm::HostVirtAddr(0x10000));
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::Kvm);
    EXPECT_NE(r.error().err_no, 0);
    EXPECT_NE(r.error().to_string().find("KVM_SET_USER_MEMORY_REGION"), std::string::npos);
}

TEST_F(VmTest, DuplicateVcpuIdFails) {
    auto a = m_vm->create_vcpu(0);
    ASSERT_TRUE(a.has_value()) << a.error().to_string();
    auto b = m_vm->create_vcpu(0);
    ASSERT_FALSE(b.has_value());
    EXPECT_EQ(b.error().kind, ErrorKind::Kvm);
    EXPECT_NE(b.error().message.find("KVM_CREATE_VCPU 0"), std::string::npos);
}

TEST_F(VmTest, RegistersRoundTrip) {
    auto v = m_vm->create_vcpu(0);
    ASSERT_TRUE(v.has_value());
    Regs r;
    r.rax = 0x1111, r.rdi = 0x2222, r.r15 = 0x3333, r.rip = 0x40'1000, r.rsp = 0x8000, r.rflags = 0x2;
    ASSERT_TRUE(v->set_regs(r).has_value());
    auto back = v->get_regs();
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(back->rax, 0x1111u);
    EXPECT_EQ(back->rdi, 0x2222u);
    EXPECT_EQ(back->r15, 0x3333u);
    EXPECT_EQ(back->rip, 0x40'1000u);
    EXPECT_EQ(back->rsp, 0x8000u);
}

TEST_F(VmTest, SregsRoundTripKeepsApicBase) {
    auto v = m_vm->create_vcpu(0);
    ASSERT_TRUE(v.has_value());
    auto s = v->get_sregs();
    ASSERT_TRUE(s.has_value());
    Sregs changed = *s;
    changed.gdt = {0x1000, 0x7F};
    changed.idt = {0x2000, 0xFFF};
    ASSERT_TRUE(v->set_sregs(changed).has_value());
    auto back = v->get_sregs();
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(back->gdt.base, 0x1000u);
    EXPECT_EQ(back->gdt.limit, 0x7Fu);
    EXPECT_EQ(back->idt.base, 0x2000u);
    EXPECT_EQ(back->apic_base, s->apic_base);
}

TEST_F(VmTest, CpuidCanBeSet) {
    auto v = m_vm->create_vcpu(0);
    ASSERT_TRUE(v.has_value());
    auto cpuid = m_kvm->supported_cpuid();
    ASSERT_TRUE(cpuid.has_value());
    EXPECT_TRUE(v->set_cpuid(*cpuid).has_value());
}

TEST_F(VmTest, ImmediateExitReturnsInterrupted) {
    auto v = m_vm->create_vcpu(0);
    ASSERT_TRUE(v.has_value());
    v->request_immediate_exit(true);
    auto exit = v->run();
    ASSERT_TRUE(exit.has_value()) << exit.error().to_string();
    EXPECT_EQ(exit->reason, ExitReason::Interrupted);
}

}  // namespace
}  // namespace pv::kvm
