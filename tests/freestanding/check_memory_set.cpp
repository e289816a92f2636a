// Freestanding use of mm/memory_set.h: a MemorySet over a page-granular flag
// table, exercising map/unmap/protect/find/find_free_area/merge/clear.
#include "mm/memory_set.h"

namespace {

using mm::GuestVirtAddr;

struct FlagTable {
    mm::uint8_t pages[64] = {};
};

// A linear backend: maps page p of an area to "frame" base + (p - area start).
struct LinearBackend {
    using Addr = GuestVirtAddr;
    using Flags = mm::uint8_t;
    using PageTable = FlagTable;

    mm::uint64_t offset = 0;  // frame offset of the area's first page

    // The whole piece must lie in the 64-page table; all-or-nothing.
    mm::Status set(Addr start, mm::uint64_t size, Flags f, PageTable& pt, bool want_mapped) const {
        mm::uint64_t first = start.value() / mm::kPageSize;
        mm::uint64_t end = first + size / mm::kPageSize;
        if (first >= 64 || size / mm::kPageSize > 64 - first) return mm::err(mm::Error::OutOfRange);
        for (mm::uint64_t p = first; p < end && p < 64; ++p)
            if ((pt.pages[p] != 0) != want_mapped) return mm::err(mm::Error::BadState);
        for (mm::uint64_t p = first; p < end && p < 64; ++p) pt.pages[p] = f;
        return mm::ok();
    }
    mm::Status map(Addr start, mm::uint64_t size, Flags f, PageTable& pt) const {
        return set(start, size, f, pt, false);
    }
    mm::Status unmap(Addr start, mm::uint64_t size, PageTable& pt) const { return set(start, size, 0, pt, true); }
    mm::Status protect(Addr start, mm::uint64_t size, Flags f, PageTable& pt) const {
        return set(start, size, f, pt, true);
    }
    LinearBackend split_at(mm::uint64_t at) { return LinearBackend{offset + at / mm::kPageSize}; }
    bool can_merge_with(const LinearBackend& right, mm::uint64_t left_size) const {
        return right.offset == offset + left_size / mm::kPageSize;
    }
};
static_assert(mm::MappingBackend<LinearBackend>);

using Set = mm::MemorySet<LinearBackend>;
using Area = Set::Area;

alignas(Set::node_align()) std::byte g_storage[Set::node_bytes() * 16];

int run() {
    FlagTable pt;
    auto created = Set::try_create(std::span<std::byte>(g_storage, sizeof(g_storage)));
    if (!created) return 1;
    Set set = static_cast<Set&&>(*created);
    if (set.capacity() != 16) return 2;
    for (mm::uint64_t i = 0; i < 8; ++i)
        if (!set.map(Area(GuestVirtAddr(i * 0x2000), 0x1000, 1, LinearBackend{i * 2}), pt, false)) return 3;
    if (set.map(Area(GuestVirtAddr(0), 0x3000, 1, LinearBackend{}), pt, false).error() != mm::Error::AlreadyExists)
        return 4;
    if (!set.map(Area(GuestVirtAddr(0x1000), 0x1000, 1, LinearBackend{1}), pt, false)) return 5;
    if (set.merge_adjacent() != 2 || set.size() != 7) return 6;  // [0, 0x3000) is one area now
    auto upd = [](mm::uint8_t) { return mm::FlagsUpdate<mm::uint8_t>::to(3); };
    if (!set.protect(GuestVirtAddr(0x1000), 0x1000, upd, pt) || set.size() != 9 || pt.pages[1] != 3) return 7;
    if (!set.unmap(GuestVirtAddr(0x2000), 0x4000, pt) || set.find(GuestVirtAddr(0x4000)) != nullptr) return 8;
    auto range = mm::GuestVirtRange::from_start_size(GuestVirtAddr(0), 64 * mm::kPageSize);
    auto free = set.find_free_area(GuestVirtAddr(0x1000), 0x3000, range, 0x1000);
    if (!free || free->value() != 0x2000) return 9;
    if (!set.check_invariants()) return 10;
    if (!set.clear(pt) || !set.is_empty()) return 11;
    for (auto f : pt.pages)
        if (f != 0) return 12;
    return 0;
}

}  // namespace

int pv_freestanding_main();

int pv_freestanding_main() { return run(); }
