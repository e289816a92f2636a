#include "vmm/x86/descriptors.h"

#include <cstring>

#include "vmm/abi/layout.h"

namespace pv::x86 {

std::array<uint64_t, 2> tss_descriptor(uint64_t base, uint32_t limit, uint8_t type) {
    uint64_t lo = (limit & 0xFFFFULL) | ((base & 0xFF'FFFFULL) << 16) | (uint64_t(type & 0xF) << 40) |
                  (1ULL << 47) /* P */ | (uint64_t((limit >> 16) & 0xF) << 48) | (((base >> 24) & 0xFFULL) << 56);
    uint64_t hi = base >> 32;
    return {lo, hi};
}

std::array<std::byte, kTssSize> tss(uint64_t rsp0) {
    std::array<std::byte, kTssSize> t{};
    std::memcpy(t.data() + 4, &rsp0, sizeof rsp0);  // RSP0 (unaligned by design of the TSS)
    uint16_t iopb = kTssSize;
    std::memcpy(t.data() + 102, &iopb, sizeof iopb);
    return t;
}

std::array<uint64_t, 2> interrupt_gate(uint64_t handler, uint16_t selector, uint8_t dpl) {
    uint64_t lo = (handler & 0xFFFFULL) | (uint64_t(selector) << 16) | (0xEULL << 40) | (uint64_t(dpl & 3) << 45) |
                  (1ULL << 47) | (((handler >> 16) & 0xFFFFULL) << 48);
    uint64_t hi = handler >> 32;
    return {lo, hi};
}

std::vector<uint64_t> guest_gdt(uint32_t vcpus) {
    std::vector<uint64_t> gdt = {0, kKernelCode64, kKernelData, kUserData, kUserCode64};
    for (uint32_t i = 0; i < vcpus; ++i) {
        auto d = tss_descriptor(layout::tss_addr(i), kTssSize - 1, kTssTypeBusy);
        gdt.push_back(d[0]);
        gdt.push_back(d[1]);
    }
    return gdt;
}

std::vector<uint64_t> guest_idt() {
    std::vector<uint64_t> idt(size_t{256} * 2, 0);
    for (uint64_t v = 0; v < layout::kExceptionVectors; ++v) {
        auto g = interrupt_gate(layout::kExceptionStubsAddr + v * layout::kExceptionStubStride,
                                layout::kKernelCodeSelector, 0);
        idt[2 * v] = g[0];
        idt[2 * v + 1] = g[1];
    }
    return idt;
}

}  // namespace pv::x86
