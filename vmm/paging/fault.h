// The outcome of a guest page fault, decided by GuestAddressSpace::handle_fault.
#pragma once

#include <cstdint>

#include "mm/addr.h"

namespace pv::paging {

// x86 #PF error-code bits.
inline constexpr uint64_t kPfPresent = 1U << 0;   // the page was present (protection violation)
inline constexpr uint64_t kPfWrite = 1U << 1;     // the access was a write
inline constexpr uint64_t kPfUser = 1U << 2;      // the access came from CPL3
inline constexpr uint64_t kPfReserved = 1U << 3;  // a reserved bit was set in an entry
inline constexpr uint64_t kPfFetch = 1U << 4;     // instruction fetch

enum class AccessKind : uint8_t { Read, Write, Exec };
enum class SegvReason : uint8_t {
    NoArea,      // no area contains the address
    Protection,  // the area does not allow this access (incl. user access to supervisor, exec on NX, guard)
    BadEntry,    // reserved-bit fault: the page table is corrupt
};

struct FaultResult {
    enum class Kind : uint8_t {
        Mapped,       // pages were mapped (the faulting one plus fault-around); resume
        Spurious,     // already present with sufficient rights (stale TLB); resume, nothing replaced
        Segv,         // deliver a segmentation fault: addr, access, reason
        OutOfMemory,  // the area allows the access but `node` (and its fallbacks) has no frame
    };
    Kind kind = Kind::Spurious;
    uint64_t pages = 0;  // Mapped: pages mapped including fault-around
    mm::GuestVirtAddr addr;
    AccessKind access = AccessKind::Read;
    SegvReason reason = SegvReason::NoArea;
    uint32_t node = 0;  // OutOfMemory: the node asked for

    static FaultResult mapped(uint64_t pages) { return {Kind::Mapped, pages, {}, AccessKind::Read, {}, 0}; }
    static FaultResult spurious() { return {}; }
    static FaultResult segv(mm::GuestVirtAddr a, AccessKind k, SegvReason r) { return {Kind::Segv, 0, a, k, r, 0}; }
    static FaultResult oom(mm::GuestVirtAddr a, AccessKind k, uint32_t node) {
        return {Kind::OutOfMemory, 0, a, k, SegvReason::NoArea, node};
    }
};

constexpr AccessKind access_kind(uint64_t error_code) {
    if ((error_code & kPfFetch) != 0) return AccessKind::Exec;
    if ((error_code & kPfWrite) != 0) return AccessKind::Write;
    return AccessKind::Read;
}

}  // namespace pv::paging
