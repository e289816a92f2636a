// Buddy: a binary buddy byte allocator over one or more regions of memory.
//
// What it is: power-of-two blocks of order kMinOrder..kMaxOrder (sizes
// 2^order bytes), each naturally aligned in ABSOLUTE addresses (a block of
// order k starts at a multiple of 2^k), so any power-of-two alignment up to the
// block size holds. A request (size, align) gets one block of order
// max(ceil_log2(size), log2(align), kMinOrder).
//
// Layout: each region starts with its bitmaps (one bit per 2^kMinOrder bytes),
// the rest is the "area", carved into maximal aligned blocks. Region
// descriptors live in a fixed array in the object (at most kMaxRegions).
//   free bitmap    bit set <=> a free block starts there
//   alloc bitmap   (kChecked only) bit set <=> an allocated block starts there
// A free block holds its free-list links, its order and its region index.
//
// Invariants (check_invariants):
//   - free list k holds exactly the free blocks of order k, and bit k of
//     m_nonempty is set iff list k is non-empty; alloc finds the smallest
//     usable order with one countr_zero.
//   - free bitmap bits == free blocks; alloc bits == live blocks; disjoint.
//   - coalescing: no free block has a free buddy of the same order.
//   - used_bytes + available_bytes == total_bytes, where total = the bytes of
//     all areas, used = the sizes of live blocks (rounding to a power of two
//     counts as used), available = the sizes of free blocks.
// Costs: alloc O(orders) (split loop); dealloc O(orders) (coalesce loop) plus
// O(regions) to find the region; no loop depends on the number of blocks.
//
// Errors:
//   InvalidParam   size 0 or > 2^62, align not a power of two; a region that is
//                  empty, wraps past 2^64 or is too small for its bitmaps plus
//                  one minimum block
//   BadState       init called a second time
//   MemoryOverlap  add_memory overlapping a managed region
//   NoMemory       no free block big enough (also: request above kMaxOrder,
//                  or more than kMaxRegions regions)
//   NotAllocated   dealloc of a pointer that is not a live block. Detected:
//                  always: pointer outside every area, not aligned to the block
//                  size, block past the area end, block start currently free.
//                  kChecked adds: not the start of a live block (interior or
//                  foreign pointer inside the area, double free after
//                  coalescing), and a size/align whose order differs from the
//                  allocation's (O(orders) bitmap probes).
// Ownership: the allocator owns no memory; regions must outlive it and are
// never given back. Single-threaded.
#pragma once

#include "mm/alloc/allocator.h"
#include "mm/alloc/intrusive_list.h"
#include "mm/alloc/region.h"
#include "mm/std.h"

namespace mm {

template <unsigned kMinOrder = 5, unsigned kMaxOrder = 47, bool kChecked = true, size_t kMaxRegions = 16>
class Buddy {
    static_assert(kMinOrder >= 5, "a free block holds two links, its order and region (32 bytes)");
    static_assert(kMaxOrder >= kMinOrder && kMaxOrder <= 62);

public:
    static constexpr size_t kMinBlock = size_t(1) << kMinOrder;
    static constexpr bool kIsChecked = kChecked;

    // The order a (size, align) request is served with; > kMaxOrder if it cannot be.
    static constexpr unsigned order_for(size_t size, size_t align) {
        size_t s = size > align ? size : align;
        unsigned o = detail::ceil_log2(s);
        return o < kMinOrder ? kMinOrder : o;
    }
    // The bytes a valid (size, align) request consumes (its block size).
    static constexpr size_t block_size(size_t size, size_t align) { return size_t(1) << order_for(size, align); }

    Status init(std::span<std::byte> region) {
        if (m_initialized) return err(Error::BadState);
        MM_TRY(add_memory(region));
        m_initialized = true;
        return ok();
    }

    Status add_memory(std::span<std::byte> region) {
        RawRegion raw;
        MM_TRY(check_new_region(region, m_regions.data(), m_region_count, kMaxRegions, raw));
        Region r{};
        MM_TRY(layout_region(raw.start, raw.end, r));
        m_regions[m_region_count] = r;
        carve(static_cast<uint32_t>(m_region_count));
        ++m_region_count;
        m_total += r.area_end - r.area_start;
        return ok();
    }

    Result<void*> alloc(size_t size, size_t align) {
        MM_TRY(validate_layout(size, align));
        unsigned o = order_for(size, align);
        if (o > kMaxOrder) return err(Error::NoMemory);
        uint64_t usable = m_nonempty & (~uint64_t(0) << o);
        if (usable == 0) return err(Error::NoMemory);
        auto k = static_cast<unsigned>(std::countr_zero(usable));
        FreeBlock* b = pop_free(k);
        uintptr_t a = reinterpret_cast<uintptr_t>(b);
        uint32_t region = b->region;
        while (k > o) {
            --k;
            push_free(region, a + (uintptr_t(1) << k), k);
        }
        if constexpr (kChecked) {
            detail::bit_set(m_regions[region].alloc_bits, index(m_regions[region], a));
            ++m_live_blocks;
        }
        m_used += size_t(1) << o;
        return reinterpret_cast<void*>(a);
    }

    Status dealloc(void* p, size_t size, size_t align) {
        MM_TRY(validate_layout(size, align));
        unsigned o = order_for(size, align);
        if (o > kMaxOrder) return err(Error::NotAllocated);
        uintptr_t a = reinterpret_cast<uintptr_t>(p);
        const int ri = find_region(a);
        if (ri < 0) return err(Error::NotAllocated);
        const Region& r = m_regions[ri];
        uintptr_t bsize = uintptr_t(1) << o;
        if ((a & (bsize - 1)) != 0 || r.area_end - a < bsize) return err(Error::NotAllocated);
        if (detail::bit_test(r.free_bits, index(r, a))) return err(Error::NotAllocated);
        if constexpr (kChecked) {
            if (!is_live_block(r, a, o)) return err(Error::NotAllocated);
            detail::bit_clear(r.alloc_bits, index(r, a));
            --m_live_blocks;
        }
        m_used -= bsize;
        coalesce_and_free(static_cast<uint32_t>(ri), a, o);
        return ok();
    }

    [[nodiscard]] size_t total_bytes() const { return m_total; }
    [[nodiscard]] size_t used_bytes() const { return m_used; }
    [[nodiscard]] size_t available_bytes() const { return m_total - m_used; }
    [[nodiscard]] size_t region_count() const { return m_region_count; }

    // Whether p lies in the area of a managed region (readable memory of ours).
    [[nodiscard]] bool contains(const void* p) const { return find_region(reinterpret_cast<uintptr_t>(p)) >= 0; }
    // Whether [p, p + size) lies inside the area of one managed region.
    [[nodiscard]] bool contains(const void* p, size_t size) const {
        auto a = reinterpret_cast<uintptr_t>(p);
        const int ri = find_region(a);
        return ri >= 0 && m_regions[ri].area_end - a >= size;
    }
    // Number of free blocks of `order` (for tests and diagnostics).
    [[nodiscard]] size_t free_blocks(unsigned order) const {
        size_t n = 0;
        if (order > kMaxOrder) return 0;
        (void)m_free[order].walk(SIZE_MAX, [&](const ListNode*) { return ++n, true; });
        return n;
    }
    // Largest order that has a free block, or -1 when nothing is free.
    [[nodiscard]] int largest_free_order() const { return m_nonempty == 0 ? -1 : 63 - std::countl_zero(m_nonempty); }

    [[nodiscard]] bool check_invariants() const {
        size_t free_bytes = 0;
        size_t free_count = 0;
        for (unsigned k = 0; k < 64; ++k) {
            bool nonempty = ((m_nonempty >> k) & 1U) != 0;
            if (nonempty != !m_free[k].empty()) return false;
            if ((k < kMinOrder || k > kMaxOrder) && nonempty) return false;
            bool good = m_free[k].walk(m_total / kMinBlock + 1, [&](const ListNode* n) {
                ++free_count;
                free_bytes += size_t(1) << k;
                return check_free_block(static_cast<const FreeBlock*>(n), k);
            });
            if (!good) return false;
        }
        if (free_bytes + m_used != m_total) return false;
        size_t free_bits = 0;
        size_t alloc_bits = 0;
        for (size_t i = 0; i < m_region_count; ++i) {
            const Region& r = m_regions[i];
            free_bits += detail::bit_count(r.free_bits, r.bitmap_words);
            if constexpr (kChecked) {
                alloc_bits += detail::bit_count(r.alloc_bits, r.bitmap_words);
                for (size_t w = 0; w < r.bitmap_words; ++w)
                    if ((r.free_bits[w] & r.alloc_bits[w]) != 0) return false;
            }
        }
        if (free_bits != free_count) return false;
        if constexpr (kChecked) {
            if (alloc_bits != m_live_blocks) return false;
        }
        return true;
    }

private:
    struct FreeBlock : ListNode {
        uint32_t order;
        uint32_t region;
    };
    static_assert(sizeof(FreeBlock) <= kMinBlock);

    struct Region {
        uintptr_t raw_start;  // the span handed in
        uintptr_t raw_end;
        uintptr_t area_start;  // blocks live in [area_start, area_end)
        uintptr_t area_end;
        uint64_t* free_bits;
        uint64_t* alloc_bits;  // kChecked only
        size_t bitmap_words;
    };

    static Status layout_region(uintptr_t start, uintptr_t end, Region& r) {
        r.raw_start = start;
        r.raw_end = end;
        size_t blocks = (end - start) >> kMinOrder;
        r.bitmap_words = (blocks + 63) / 64;
        size_t meta = r.bitmap_words * 8 * (kChecked ? 2 : 1);
        uintptr_t bits = (start + 7) & ~uintptr_t(7);
        if (bits < start || end - start < meta + (bits - start)) return err(Error::InvalidParam);
        uintptr_t area = bits + meta;
        if (end - area < kMinBlock) return err(Error::InvalidParam);
        r.area_start = (area + kMinBlock - 1) & ~uintptr_t(kMinBlock - 1);
        r.area_end = end & ~uintptr_t(kMinBlock - 1);
        if (r.area_start >= r.area_end) return err(Error::InvalidParam);
        r.free_bits = reinterpret_cast<uint64_t*>(bits);
        r.alloc_bits = kChecked ? r.free_bits + r.bitmap_words : nullptr;
        detail::words_clear(r.free_bits, r.bitmap_words * (kChecked ? 2 : 1));
        return ok();
    }

    // Cuts a fresh area into maximal naturally aligned blocks.
    void carve(uint32_t ri) {
        const Region& r = m_regions[ri];
        for (uintptr_t a = r.area_start; a < r.area_end;) {
            unsigned o = detail::floor_log2(r.area_end - a);
            unsigned align_order = static_cast<unsigned>(std::countr_zero(a));
            if (align_order < o) o = align_order;
            if (o > kMaxOrder) o = kMaxOrder;
            push_free(ri, a, o);
            a += uintptr_t(1) << o;
        }
    }

    static size_t index(const Region& r, uintptr_t a) { return (a - r.area_start) >> kMinOrder; }

    int find_region(uintptr_t a) const {
        for (size_t i = 0; i < m_region_count; ++i) {
            if (a >= m_regions[i].area_start && a < m_regions[i].area_end) return static_cast<int>(i);
        }
        return -1;
    }

    void push_free(uint32_t ri, uintptr_t a, unsigned o) {
        auto* b = ::new (reinterpret_cast<void*>(a)) FreeBlock{};
        b->order = o;
        b->region = ri;
        m_free[o].push_front(b);
        m_nonempty |= uint64_t(1) << o;
        detail::bit_set(m_regions[ri].free_bits, index(m_regions[ri], a));
    }
    void unlink_free(FreeBlock* b) {
        unsigned o = b->order;
        m_free[o].remove(b);
        if (m_free[o].empty()) m_nonempty &= ~(uint64_t(1) << o);
        const Region& r = m_regions[b->region];
        detail::bit_clear(r.free_bits, index(r, reinterpret_cast<uintptr_t>(b)));
    }
    FreeBlock* pop_free(unsigned o) {
        auto* b = static_cast<FreeBlock*>(m_free[o].front());
        unlink_free(b);
        return b;
    }

    bool is_start(const Region& r, uintptr_t a) const {
        size_t i = index(r, a);
        return detail::bit_test(r.free_bits, i) || detail::bit_test(r.alloc_bits, i);
    }
    // Blocks tile the area, so a live block of order o at a has: its alloc bit,
    // a block start (or the area end) right after it, and no start inside it.
    // A claimed order larger than the real one hits the start after the real
    // block; a smaller one finds no start at its claimed end.
    bool is_live_block(const Region& r, uintptr_t a, unsigned o) const {
        if (!detail::bit_test(r.alloc_bits, index(r, a))) return false;
        uintptr_t next = a + (uintptr_t(1) << o);
        if (next != r.area_end && !is_start(r, next)) return false;
        for (unsigned j = kMinOrder; j < o; ++j) {
            if (is_start(r, a + (uintptr_t(1) << j))) return false;
        }
        return true;
    }

    // A buddy at b is free with order o iff a free block starts at b (its
    // header is then ours, not caller data) and that header says order o.
    void coalesce_and_free(uint32_t ri, uintptr_t a, unsigned o) {
        const Region& r = m_regions[ri];
        while (o < kMaxOrder) {
            uintptr_t size = uintptr_t(1) << o;
            uintptr_t b = a ^ size;
            if (b < r.area_start || b > r.area_end - size) break;
            if (!detail::bit_test(r.free_bits, index(r, b))) break;
            auto* fb = reinterpret_cast<FreeBlock*>(b);
            if (fb->order != o) break;
            unlink_free(fb);
            a = a < b ? a : b;
            ++o;
        }
        push_free(ri, a, o);
    }

    bool check_free_block(const FreeBlock* b, unsigned k) const {
        uintptr_t a = reinterpret_cast<uintptr_t>(b);
        uintptr_t size = uintptr_t(1) << k;
        if (b->order != k || b->region >= m_region_count) return false;
        const Region& r = m_regions[b->region];
        if ((a & (size - 1)) != 0 || a < r.area_start || a > r.area_end - size) return false;
        if (!detail::bit_test(r.free_bits, index(r, a))) return false;
        // Nothing else starts inside a free block.
        size_t first = index(r, a);
        size_t starts = detail::bit_count_range(r.free_bits, first, first + (size >> kMinOrder));
        if constexpr (kChecked) starts += detail::bit_count_range(r.alloc_bits, first, first + (size >> kMinOrder));
        if (starts != 1) return false;
        uintptr_t buddy = a ^ size;
        if (k < kMaxOrder && buddy >= r.area_start && buddy <= r.area_end - size &&
            detail::bit_test(r.free_bits, index(r, buddy)) && reinterpret_cast<const FreeBlock*>(buddy)->order == k)
            return false;  // should have been coalesced
        return true;
    }

    std::array<IntrusiveList, 64> m_free{};
    uint64_t m_nonempty = 0;
    std::array<Region, kMaxRegions> m_regions{};
    size_t m_region_count = 0;
    size_t m_total = 0;
    size_t m_used = 0;
    size_t m_live_blocks = 0;  // kChecked only
    bool m_initialized = false;
};

}  // namespace mm
