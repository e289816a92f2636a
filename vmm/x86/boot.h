// Writing the guest's boot state into guest RAM, driven by vmm/abi/layout.h:
// the image's segments, the GDT/IDT/TSSs, BootInfo, and the initial page
// tables (identity mappings, GVA == GPA, with the permissions listed below).
#pragma once

#include <span>
#include <vector>

#include "vmm/abi/hypercall.h"

#include <array>
#include <string>

#include "vmm/base/error.h"
#include "vmm/x86/guest_page_table.h"

namespace pv::loader {
struct Image;
}
namespace pv::memory {
class GuestMemory;
}

namespace pv::x86 {

struct BootConfig {
    uint32_t vcpus = 1;
    uint64_t seed = 0;
    std::string workload;  // at most 31 bytes (Usage error otherwise)
    std::array<uint64_t, 8> params{};
    // BootInfo's RAM map (at most abi::kMaxRamRanges, sorted, >= kFreeRamStart)
    // and the guest NUMA node of each vCPU (empty: all on node 0).
    std::vector<abi::RamRange> ram;
    std::vector<uint32_t> vcpu_node;
    uint32_t node_count = 1;
    abi::WorkloadArgs args{};  // allocator workload arguments
    uint64_t tsc_khz = 0;      // 0 = unknown
};

// Copies every segment's file bytes to its GPA and zeroes the rest of it.
Status load_image(const memory::GuestMemory& mem, const loader::Image& image);

// GDT (x86::guest_gdt), IDT, one TSS per vCPU, and BootInfo.
Status write_boot_structures(const memory::GuestMemory& mem, const BootConfig& config);

// Maps, in a new page table from `pool`:
//   image segments        their own perms (User iff the loader says so)
//   BootInfo              user R, NX
//   hypercall pages       user RW, NX (one per vCPU)
//   user stacks           user RW, NX, the lowest page of each left unmapped (guard)
//   GDT/IDT/TSS pages     supervisor RW, NX
//   kernel stacks         supervisor RW, NX
//   device window         user RW, NX (no memslot behind it: every access exits)
//   RAM map ranges        user RW, NX, identity (ReadOnly too: KVM refuses the write), 2 MiB pages
// Page 0 and everything else stay unmapped.
Expected<GuestPageTable> build_page_tables(TablePool& pool, const loader::Image& image, uint32_t vcpus,
                                           std::span<const abi::RamRange> ram = {});

}  // namespace pv::x86
