// GDT, TSS, IDT encodings and the vCPU entry state.
#include <gtest/gtest.h>

#include <cstring>

#include "vmm/abi/layout.h"
#include "vmm/x86/descriptors.h"
#include "vmm/x86/vcpu_state.h"

namespace pv::x86 {
namespace {

// Fields of an 8-byte code/data descriptor.
struct Decoded {
    bool present, s, l, db, g;
    unsigned dpl, type;
};
Decoded decode(uint64_t d) {
    return {bool(d >> 47 & 1), bool(d >> 44 & 1),     bool(d >> 53 & 1),      bool(d >> 54 & 1),
            bool(d >> 55 & 1), unsigned(d >> 45 & 3), unsigned(d >> 40 & 0xF)};
}

TEST(Gdt, LayoutMatchesTheSelectors) {
    auto gdt = guest_gdt(3);
    ASSERT_EQ(gdt.size(), 5u + 2 * 3);
    EXPECT_EQ(gdt[0], 0u);
    auto kcode = decode(gdt[layout::kKernelCodeSelector / 8]);
    EXPECT_TRUE(kcode.present && kcode.s && kcode.l && !kcode.db);
    EXPECT_EQ(kcode.dpl, 0u);
    EXPECT_TRUE(kcode.type & 0x8);  // code
    auto kdata = decode(gdt[layout::kKernelDataSelector / 8]);
    EXPECT_TRUE(kdata.present && kdata.s && !(kdata.type & 0x8) && (kdata.type & 0x2));
    EXPECT_EQ(kdata.dpl, 0u);
    auto udata = decode(gdt[layout::kUserDataSelector / 8]);
    EXPECT_TRUE(udata.present && udata.s && !(udata.type & 0x8) && (udata.type & 0x2));
    EXPECT_EQ(udata.dpl, 3u);
    auto ucode = decode(gdt[layout::kUserCodeSelector / 8]);
    EXPECT_TRUE(ucode.present && ucode.s && ucode.l && !ucode.db && (ucode.type & 0x8));
    EXPECT_EQ(ucode.dpl, 3u);
}

TEST(Gdt, TssDescriptorsPointAtEachVcpusTss) {
    auto gdt = guest_gdt(layout::kMaxVcpus);
    ASSERT_LE(gdt.size() * 8, layout::kPage);
    for (uint32_t i = 0; i < layout::kMaxVcpus; ++i) {
        size_t at = (layout::kTssSelectorBase + 16 * i) / 8;
        uint64_t lo = gdt[at], hi = gdt[at + 1];
        uint64_t base = ((lo >> 16) & 0xFF'FFFF) | (((lo >> 56) & 0xFF) << 24) | (hi << 32);
        uint32_t limit = uint32_t(lo & 0xFFFF) | uint32_t((lo >> 48) & 0xF) << 16;
        EXPECT_EQ(base, layout::tss_addr(i));
        EXPECT_EQ(limit, kTssSize - 1);
        EXPECT_EQ((lo >> 40) & 0xF, kTssTypeBusy);
        EXPECT_EQ((lo >> 44) & 1, 0u);  // system descriptor
        EXPECT_EQ((lo >> 47) & 1, 1u);  // present
    }
}

TEST(Gdt, TssDescriptorEncodesA64BitBase) {
    auto d = tss_descriptor(0x1234'5678'9ABC'DEF0ULL, 0xABCDE, kTssTypeAvailable);
    EXPECT_EQ(d[1], 0x1234'5678u);
    EXPECT_EQ(d[0] & 0xFFFF, 0xBCDEu);
    EXPECT_EQ((d[0] >> 48) & 0xF, 0xAu);
    EXPECT_EQ((d[0] >> 16) & 0xFF'FFFF, 0xBC'DEF0u);
    EXPECT_EQ(d[0] >> 56, 0x9Au);
    EXPECT_EQ((d[0] >> 40) & 0xF, kTssTypeAvailable);
}

TEST(Tss, Rsp0AndNoIoBitmap) {
    auto t = tss(0x10'2000);
    uint64_t rsp0 = 0;
    std::memcpy(&rsp0, t.data() + 4, 8);
    EXPECT_EQ(rsp0, 0x10'2000u);
    uint16_t iopb = 0;
    std::memcpy(&iopb, t.data() + 102, 2);
    EXPECT_GE(iopb, kTssSize);  // beyond the limit: every port denied
    for (size_t i = 36; i < 36 + 56; ++i) EXPECT_EQ(t[i], std::byte{0}) << "IST must be empty";
}

TEST(Idt, ExceptionVectorsPointAtTheStubs) {
    auto idt = guest_idt();
    ASSERT_EQ(idt.size(), 512u);
    for (uint64_t v = 0; v < 256; ++v) {
        uint64_t lo = idt[2 * v], hi = idt[2 * v + 1];
        if (v >= layout::kExceptionVectors) {
            EXPECT_EQ((lo >> 47) & 1, 0u) << "vector " << v << " must not be present";
            continue;
        }
        uint64_t handler = (lo & 0xFFFF) | (((lo >> 48) & 0xFFFF) << 16) | ((hi & 0xFFFF'FFFF) << 32);
        EXPECT_EQ(handler, layout::kExceptionStubsAddr + v * layout::kExceptionStubStride);
        EXPECT_EQ((lo >> 16) & 0xFFFF, layout::kKernelCodeSelector);
        EXPECT_EQ((lo >> 32) & 0x7, 0u);    // no IST
        EXPECT_EQ((lo >> 40) & 0xF, 0xEu);  // interrupt gate
        EXPECT_EQ((lo >> 45) & 3, 0u);      // DPL 0
        EXPECT_EQ((lo >> 47) & 1, 1u);
    }
}

TEST(VcpuState, SregsForLongModeUser) {
    kvm::Sregs current;
    current.apic_base = 0xFEE0'0900;
    kvm::Sregs s = initial_sregs(current, 5, 0x20'0000, 0x100);
    EXPECT_EQ(s.cr0, 0x8005'0033u);
    EXPECT_EQ(s.cr3, 0x20'0000u);
    EXPECT_EQ(s.cr4 & kCr4Pae, kCr4Pae);
    EXPECT_EQ(s.efer, kEferLme | kEferLma | kEferNxe | kEferSce);
    EXPECT_EQ(s.cs.selector, layout::kUserCodeSelector);
    EXPECT_EQ(s.cs.dpl, 3);
    EXPECT_TRUE(s.cs.l);
    EXPECT_FALSE(s.cs.db);
    EXPECT_EQ(s.ss.selector, layout::kUserDataSelector);
    EXPECT_EQ(s.ss.dpl, 3);
    EXPECT_EQ(s.tr.selector, layout::kTssSelectorBase + 16 * 5);
    EXPECT_EQ(s.tr.base, layout::tss_addr(5));
    EXPECT_EQ(s.tr.type, kTssTypeBusy);
    EXPECT_EQ(s.gdt.base, layout::kGdtAddr);
    EXPECT_EQ(s.gdt.limit, 0xFFu);
    EXPECT_EQ(s.idt.base, layout::kIdtAddr);
    EXPECT_EQ(s.idt.limit, 0xFFFu);
    EXPECT_EQ(s.apic_base, 0xFEE0'0900u);
}

TEST(VcpuState, RegsFollowTheEntryContract) {
    kvm::Regs r = initial_regs(3, 0x60'1000);
    EXPECT_EQ(r.rip, 0x60'1000u);
    EXPECT_EQ(r.rsp, layout::user_stack_top(3));
    EXPECT_EQ(r.rdi, 3u);
    EXPECT_EQ(r.rsi, layout::kBootInfoAddr);
    EXPECT_EQ(r.rflags, 0x2u);
    EXPECT_EQ(r.rax, 0u);
}

TEST(VcpuState, CpuidCarriesTheApicId) {
    std::vector<kvm::CpuidEntry> supported = {{0x1, 0, 0, 0, 0xFF00'0800, 0, 0},
                                              {0xB, 0, 1, 0, 0, 0, 0xFF},
                                              {0xB, 1, 1, 0, 0, 0, 0xFF},
                                              {0x7, 0, 1, 1, 2, 3, 4}};
    auto out = vcpu_cpuid(supported, 7);
    ASSERT_EQ(out.size(), supported.size());
    EXPECT_EQ(out[0].ebx, 0x0700'0800u);
    EXPECT_EQ(out[1].edx, 7u);
    EXPECT_EQ(out[2].edx, 7u);
    EXPECT_EQ(out[3].ebx, 2u);  // untouched
}

}  // namespace
}  // namespace pv::x86
