// x86-64 descriptor encodings (GDT entries, TSS, IDT gates) as pure functions,
// and the layout-driven contents of the guest's GDT, IDT and TSSs.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace pv::x86 {

// Flat 64-bit segment descriptors.
inline constexpr uint64_t kKernelCode64 = 0x00AF'9A00'0000'FFFF;  // P, DPL0, code exec/read, L, G
inline constexpr uint64_t kKernelData = 0x00CF'9200'0000'FFFF;    // P, DPL0, data read/write, D/B, G
inline constexpr uint64_t kUserData = 0x00CF'F200'0000'FFFF;      // P, DPL3, data read/write, D/B, G
inline constexpr uint64_t kUserCode64 = 0x00AF'FA00'0000'FFFF;    // P, DPL3, code exec/read, L, G

inline constexpr uint8_t kTssTypeAvailable = 0x9;
inline constexpr uint8_t kTssTypeBusy = 0xB;
inline constexpr uint32_t kTssSize = 104;  // the 64-bit TSS; its limit is kTssSize - 1

// The two 8-byte halves of a 64-bit TSS (system) descriptor.
std::array<uint64_t, 2> tss_descriptor(uint64_t base, uint32_t limit, uint8_t type);

// A 64-bit TSS with RSP0 = rsp0, no IST, and the I/O bitmap offset beyond the
// limit (so every port is denied at CPL3).
std::array<std::byte, kTssSize> tss(uint64_t rsp0);

// A present 64-bit interrupt gate (type 0xE) with the given DPL, no IST.
std::array<uint64_t, 2> interrupt_gate(uint64_t handler, uint16_t selector, uint8_t dpl);

// The guest GDT (layout.h selectors): null, kernel code/data, user data/code,
// then one TSS descriptor per vCPU (marked busy: TR is loaded through sregs,
// which is what LTR would leave behind).
std::vector<uint64_t> guest_gdt(uint32_t vcpus);

// The guest IDT: 256 gates, vectors 0..31 present (DPL 0, kernel code) and
// pointing at layout::kExceptionStubsAddr + 16*v; the rest not present.
std::vector<uint64_t> guest_idt();

}  // namespace pv::x86
