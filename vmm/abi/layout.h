// The guest memory layout: every fixed guest address, one comment each.
//
// Shared by the VMM and the guest (freestanding: only mm/std.h). Guest RAM
// is identity-mapped for everything below: for these addresses GVA == GPA.
// RAM occupies [0, min(size, kLowRamLimit)) and, for larger guests,
// [k4GiB, ...). Addresses below kFreeRamStart are reserved for the fixed
// structures here; the guest gets the rest through later memory hypercalls.
#pragma once

#include "mm/std.h"

namespace pv::layout {

inline constexpr uint64_t kPage = 0x1000;

// ---- fixed supervisor structures (no U bit) ----
inline constexpr uint64_t kNullGuardEnd = 0x1000;  // [0, 0x1000) is never mapped: null dereferences fault
inline constexpr uint64_t kGdtAddr = 0x1000;       // GDT: null, kernel code/data, user data/code, one TSS per vCPU
inline constexpr uint64_t kStubDataAddr = 0x1F00;  // abi::StubData: what the CPL0 #PF stub reads, in the GDT page
                                                   // past the GDT's limit (supervisor RW; written by the VMM only)
inline constexpr uint64_t kIdtAddr = 0x2000;       // IDT: 256 gates (vectors 0-31 point at the exception stubs)
inline constexpr uint64_t kBootInfoAddr = 0x3000;  // BootInfo (abi/hypercall.h), user read-only
inline constexpr uint64_t kTssArrayAddr = 0x4000;  // kMaxVcpus TSS structures, kTssStride bytes apart (2 pages)
inline constexpr uint64_t kTssStride = 128;
inline constexpr uint64_t kHypercallPagesAddr = 0x1'0000;  // vCPU i's HypercallPage at + i*kPage, user read-write
inline constexpr uint64_t kKernelStacksAddr = 0x10'0000;   // vCPU i's CPL0 stack: [+ i*kKernelStackSize, + (i+1)*...)
inline constexpr uint64_t kKernelStackSize = 0x2000;
inline constexpr uint64_t kPageTablePoolAddr = 0x20'0000;  // guest page tables built by the VMM live here
inline constexpr uint64_t kPageTablePoolSize = 0x20'0000;  // 2 MiB = 512 tables

// ---- the guest image (ELF, linked at these addresses, GVA == GPA) ----
inline constexpr uint64_t kImageBase = 0x40'0000;        // lowest address a PT_LOAD segment may use
inline constexpr uint64_t kKernelWindowEnd = 0x60'0000;  // segments below this are mapped supervisor-only (CPL0 stubs)
inline constexpr uint64_t kImageLimit = 0x100'0000;      // 16 MiB: segments end at or below this (12 MiB of image)
inline constexpr uint64_t kExceptionStubsAddr = 0x40'0000;  // stub for vector v (0..31) at + v*kExceptionStubStride
inline constexpr uint64_t kExceptionStubStride = 16;
inline constexpr uint64_t kExceptionVectors = 32;

// ---- per-vCPU user stacks ----
inline constexpr uint64_t kUserStacksAddr = 0x100'0000;  // vCPU i's stack: [+ i*kUserStackSize, + (i+1)*kUserStackSize)
inline constexpr uint64_t kUserStackSize = 0x1'0000;     // 64 KiB slot; its lowest page is unmapped (guard),
                                                         // so the usable stack is kUserStackSize - kPage

// ---- what the guest may use, and the doorbell ----
inline constexpr uint64_t kFreeRamStart = 0x200'0000;  // 32 MiB: first byte not used by a fixed structure
inline constexpr uint64_t kMinRamSize = 0x300'0000;    // 48 MiB: smallest guest
inline constexpr uint64_t kLowRamLimit = 0xC000'0000;  // RAM below 3 GiB; the rest starts at k4GiB
inline constexpr uint64_t k4GiB = 0x1'0000'0000;
inline constexpr uint64_t kDeviceWindowAddr =
    0xD000'0000;  // 64 KiB with no memslot, mapped user RW: every access exits
inline constexpr uint64_t kDeviceWindowSize = 0x1'0000;
inline constexpr uint64_t kDoorbellAddr = kDeviceWindowAddr;  // hypercall doorbell (8-byte store); any other access to
                                                              // the window is an "unmapped GPA" guest error

inline constexpr uint32_t kMaxVcpus = 32;  // kUserStacks/kKernelStacks/TSS/hypercall pages sized for this
inline constexpr uint16_t kExceptionPort =
    0x00F4;  // CPL0 exception stub's `out %al, $imm8` port (docs/hypercall-abi.md)

// GDT selectors.
inline constexpr uint16_t kKernelCodeSelector = 0x08;
inline constexpr uint16_t kKernelDataSelector = 0x10;
inline constexpr uint16_t kUserDataSelector = 0x18 | 3;
inline constexpr uint16_t kUserCodeSelector = 0x20 | 3;
inline constexpr uint16_t kTssSelectorBase = 0x28;  // vCPU i's TSS descriptor: kTssSelectorBase + 16*i

constexpr uint64_t hypercall_page(uint32_t vcpu) { return kHypercallPagesAddr + uint64_t(vcpu) * kPage; }
constexpr uint64_t kernel_stack_top(uint32_t vcpu) { return kKernelStacksAddr + uint64_t(vcpu + 1) * kKernelStackSize; }
constexpr uint64_t user_stack_top(uint32_t vcpu) { return kUserStacksAddr + uint64_t(vcpu + 1) * kUserStackSize; }
constexpr uint64_t tss_addr(uint32_t vcpu) { return kTssArrayAddr + uint64_t(vcpu) * kTssStride; }

static_assert(kHypercallPagesAddr + kMaxVcpus * kPage <= kKernelStacksAddr);
static_assert(kKernelStacksAddr + kMaxVcpus * kKernelStackSize <= kPageTablePoolAddr);
static_assert(kTssArrayAddr + kMaxVcpus * kTssStride <= kHypercallPagesAddr);
static_assert(kPageTablePoolAddr + kPageTablePoolSize <= kImageBase);
static_assert(kUserStacksAddr + kMaxVcpus * kUserStackSize <= kFreeRamStart);
static_assert(kTssSelectorBase + 16 * kMaxVcpus <= kPage);
static_assert(kGdtAddr + kTssSelectorBase + 16 * kMaxVcpus <= kStubDataAddr && kStubDataAddr + 0x100 <= kIdtAddr,
              "StubData must not overlap the largest GDT");

}  // namespace pv::layout
