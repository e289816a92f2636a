// Validation of a region handed to a byte allocator's add_memory(), shared by
// Buddy and Tlsf (which keep a fixed table of regions with raw_start/raw_end).
#pragma once

#include "mm/result.h"
#include "mm/std.h"

namespace mm {

struct RawRegion {
    uintptr_t start = 0;  // first byte of the span handed in
    uintptr_t end = 0;    // one past its last byte
};

// InvalidParam if `region` is empty or wraps past the top of the address space;
// MemoryOverlap if it overlaps one of the `count` regions in `existing`;
// NoMemory if the table is full (count == capacity). On success `out` holds its bounds.
template <class R>
Status check_new_region(std::span<std::byte> region, const R* existing, size_t count, size_t capacity, RawRegion& out) {
    uintptr_t start = reinterpret_cast<uintptr_t>(region.data());
    uintptr_t end = 0;
    if (region.empty() || __builtin_add_overflow(start, region.size(), &end)) return err(Error::InvalidParam);
    for (size_t i = 0; i < count; ++i) {
        if (start < existing[i].raw_end && existing[i].raw_start < end) return err(Error::MemoryOverlap);
    }
    if (count == capacity) return err(Error::NoMemory);
    out = RawRegion{start, end};
    return ok();
}

}  // namespace mm
