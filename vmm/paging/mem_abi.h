// PROPOSAL for vmm/abi/hypercall.h (the lead merges it): the argument bits and
// negative return codes of the memory hypercalls Mmap/Munmap/Mprotect/Brk.
// Freestanding (mm/std.h only) so the guest can include it.
//
//   Mmap(u64 hint, u64 len, u64 prot, u64 flags, u64 node) -> address | -MemError
//   Munmap(u64 addr, u64 len)                              -> 0 | -MemError
//   Mprotect(u64 addr, u64 len, u64 prot)                  -> 0 | -MemError
//   Brk(u64 new_end)                                       -> current break | -MemError
//       (new_end 0 queries the break without changing it)
// Addresses must be page aligned; lengths are rounded up to whole pages.
#pragma once

#include "mm/std.h"

namespace pv::abi {

// Values chosen so that the codes shared with HcError keep HcError's numbers.
enum class MemError : int64_t {
    Invalid = -3,      // unaligned address, zero length, unknown prot/flag bits, bad node
    NoMemory = -4,     // frames exhausted (populate), no free virtual range, area table full
    Permission = -5,   // the range contains a guard area (cannot be changed by the guest)
    Exists = -16,      // Fixed|NoReplace over an existing mapping
    OutOfRange = -17,  // the range leaves the user range (or touches the fixed kernel structures)
    Overflow = -18,    // addr + len wraps, or len rounded up to pages wraps
    NotMapped = -19,   // mprotect over a range with unmapped holes (nothing changed)
};

// prot bits (POSIX PROT_* values). Write or Exec imply Read (x86 cannot express
// write-only or exec-only pages). 0 = PROT_NONE: a reservation nobody can touch.
inline constexpr uint64_t kProtRead = 1U << 0;
inline constexpr uint64_t kProtWrite = 1U << 1;
inline constexpr uint64_t kProtExec = 1U << 2;
inline constexpr uint64_t kProtMask = kProtRead | kProtWrite | kProtExec;

// mmap flags.
inline constexpr uint64_t kMapFixed = 1U << 0;      // place exactly at hint (replacing what is there)
inline constexpr uint64_t kMapPopulate = 1U << 1;   // allocate and map every page now
inline constexpr uint64_t kMapHuge = 1U << 2;       // use 2 MiB pages where the range allows
inline constexpr uint64_t kMapNoReplace = 1U << 3;  // with Fixed: fail with Exists instead of replacing
inline constexpr uint64_t kMapMask = kMapFixed | kMapPopulate | kMapHuge | kMapNoReplace;

// mmap node argument: the faulting vCPU's node (first-touch), else a guest node index.
inline constexpr uint64_t kNodeAny = 0xFFFF'FFFF;

// The user part of the guest-virtual space (proposed for vmm/abi/layout.h).
// Everything below kBrkBase is the fixed identity-mapped layout (structures below
// layout::kFreeRamStart, the device window at 0xD000_0000): memory calls never touch it.
inline constexpr uint64_t kBrkBase = 0x8'0000'0000;     // 32 GiB: the break starts here
inline constexpr uint64_t kBrkLimit = 0x10'0000'0000;   // 64 GiB: the break never passes this (32 GiB heap)
inline constexpr uint64_t kMmapBase = kBrkLimit;        // mmap areas live in [kMmapBase, kUserTop)
inline constexpr uint64_t kUserTop = 0x7FFF'FFFF'F000;  // end of the lower canonical half minus a guard page
inline constexpr uint64_t kUserBase = kBrkBase;         // memory calls accept [kUserBase, kUserTop)

static_assert(kBrkBase > 0xD001'0000, "user range must lie above the device window");
static_assert(kBrkBase % 0x20'0000 == 0 && kMmapBase % 0x20'0000 == 0);

}  // namespace pv::abi
