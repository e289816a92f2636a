// The entry state of every vCPU (vmm/abi/hypercall.h "Entry state"): 64-bit
// user mode at the ELF entry, with that vCPU's TSS, the shared GDT/IDT, paging
// on with the VMM-built tables. Pure functions of their inputs.
#pragma once

#include <span>
#include <vector>

#include "vmm/kvm/types.h"

namespace pv::x86 {

inline constexpr uint64_t kCr0 = 0x8005'0033;  // PE | MP | ET | NE | WP | AM | PG
inline constexpr uint64_t kCr4Pae = 1ULL << 5;
inline constexpr uint64_t kCr4Osfxsr = 1ULL << 9;
inline constexpr uint64_t kCr4Osxmmexcpt = 1ULL << 10;
inline constexpr uint64_t kEferSce = 1ULL << 0;
inline constexpr uint64_t kEferLme = 1ULL << 8;
inline constexpr uint64_t kEferLma = 1ULL << 10;
inline constexpr uint64_t kEferNxe = 1ULL << 11;
inline constexpr uint64_t kInitialRflags = 0x2;

// `current` is the vCPU's state from KVM (its APIC base is kept). `gdt_bytes`
// is the size of the GDT the VMM wrote (x86::guest_gdt()).
kvm::Sregs initial_sregs(const kvm::Sregs& current, uint32_t vcpu, uint64_t cr3, uint64_t gdt_bytes);

kvm::Regs initial_regs(uint32_t vcpu, uint64_t entry);

// KVM's supported CPUID with this vCPU's APIC id in leaves 0x1, 0xB, 0x1F
// and 0x8000001E.
std::vector<kvm::CpuidEntry> vcpu_cpuid(std::span<const kvm::CpuidEntry> supported, uint32_t vcpu);

}  // namespace pv::x86
