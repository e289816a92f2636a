#include "vmm/x86/vcpu_state.h"

#include "vmm/abi/hypercall.h"
#include "vmm/abi/layout.h"
#include "vmm/x86/descriptors.h"

namespace pv::x86 {
namespace {

kvm::Segment flat_segment(uint16_t selector, uint8_t type, bool code) {
    kvm::Segment s;
    s.base = 0;
    s.limit = 0xFFFF'FFFF;
    s.selector = selector;
    s.type = type;
    s.present = true;
    s.dpl = selector & 3;
    s.db = !code;  // 64-bit code needs D = 0 with L = 1
    s.s = true;
    s.l = code;
    s.g = true;
    return s;
}

}  // namespace

kvm::Sregs initial_sregs(const kvm::Sregs& current, uint32_t vcpu, uint64_t cr3, uint64_t gdt_bytes) {
    kvm::Sregs s = current;
    s.cs = flat_segment(layout::kUserCodeSelector, 0xB, true);                // execute/read, accessed
    kvm::Segment data = flat_segment(layout::kUserDataSelector, 0x3, false);  // read/write, accessed
    s.ds = s.es = s.fs = s.gs = s.ss = data;

    s.tr = kvm::Segment{};
    s.tr.base = layout::tss_addr(vcpu);
    s.tr.limit = kTssSize - 1;
    s.tr.selector = static_cast<uint16_t>(layout::kTssSelectorBase + 16 * vcpu);
    s.tr.type = kTssTypeBusy;
    s.tr.present = true;

    s.ldt = kvm::Segment{};
    s.ldt.limit = 0xFFFF;
    s.ldt.type = 0x2;
    s.ldt.present = true;

    s.gdt = {layout::kGdtAddr, static_cast<uint16_t>(gdt_bytes - 1)};
    s.idt = {layout::kIdtAddr, static_cast<uint16_t>(256 * 16 - 1)};
    s.cr0 = kCr0;
    s.cr2 = 0;
    s.cr3 = cr3;
    s.cr4 = kCr4Pae | kCr4Osfxsr | kCr4Osxmmexcpt;
    s.cr8 = 0;
    s.efer = kEferSce | kEferLme | kEferLma | kEferNxe;
    return s;
}

kvm::Regs initial_regs(uint32_t vcpu, uint64_t entry) {
    kvm::Regs r;
    r.rip = entry;
    r.rsp = layout::user_stack_top(vcpu);
    r.rdi = vcpu;
    r.rsi = layout::kBootInfoAddr;
    r.rflags = kInitialRflags;
    return r;
}

std::vector<kvm::CpuidEntry> vcpu_cpuid(std::span<const kvm::CpuidEntry> supported, uint32_t vcpu) {
    std::vector<kvm::CpuidEntry> out(supported.begin(), supported.end());
    for (auto& e : out) {
        switch (e.function) {
            case 0x1: e.ebx = (e.ebx & 0x00FF'FFFF) | (vcpu << 24); break;
            case 0xB:
            case 0x1F: e.edx = vcpu; break;
            case 0x8000'001E: e.eax = vcpu; break;
            default: break;
        }
    }
    return out;
}

}  // namespace pv::x86
