// BitmapPageAllocator: a page allocator over an abstract address space.
//
// What it is: allocation state for the pages of one or more segments (regions
// given with add_memory) of an address space of type Address (an mm::Addr<Tag>:
// guest-physical frames in the VMM, host-virtual pages, ...). The pages are
// never touched; only the metadata span handed to init() is written.
// Ownership: the caller owns the metadata span and keeps it alive and
// untouched while the allocator is used (the allocator points into it, so it
// is not copyable). Satisfies mm::PageAllocator. Single-threaded: callers lock.
//
// Layout: the metadata holds a segment table (max_segments entries, sorted by
// address) and a BitmapCore (mm/alloc/bitmap_core.h): one bit per page, 1 = free,
// with summary levels, so finding a free page costs O(log64 pages) word reads
// at any fill level, and a run of n >= 7 pages jumps between free aligned 4-,
// 8- or 64-page blocks instead of visiting free pages (runs of 2..6 pages visit
// free pages, each in O(log64 pages)). Each segment owns a range of bit
// indices; its first bit is chosen so that bit index = page number (mod 64), so
// a bitmap word is always a 64-page (256 KiB for 4 KiB pages) aligned block.
// Padding bits between segments are permanently "allocated" and never counted.
// A next-fit hint (segment, bit) makes consecutive allocations start where the
// previous one ended.
//
// Alignment is relative to the ABSOLUTE address (not the segment start), for
// every size including one page. A run returned by alloc_pages lies inside one
// segment; alloc_pages_at and dealloc_pages accept ranges spanning segments
// that are adjacent in the address space.
//
// Invariants (check_invariants): segments sorted, non-empty, disjoint in the
// address space and in bit space, inside the core's capacity, bit = page
// (mod 64); every bit outside segments is 0; the core's summaries are
// consistent and its free count equals the popcount; total_pages = sum of
// segment sizes = used_pages + available_pages.
//
// Errors:
//   AlreadyInitialized  init called twice
//   BadState            add_memory before init
//   InvalidParam        zero size/count, size or address not page aligned,
//                       align not a power of two >= kPageSize, base not aligned
//                       to align, a region that wraps past 2^64, max_segments 0
//   MemoryOverlap       add_memory overlapping a managed segment
//   NoMemory            no free aligned run of n pages (alloc_pages), a page of
//                       the range is taken (alloc_pages_at), metadata too small
//                       (init) or full (add_memory: segment table or bit space)
//   OutOfRange          alloc_pages_at of a range with a page outside the segments
//   NotAllocated        dealloc_pages of a range with a page that is free or
//                       outside the segments (nothing changes)
#pragma once

#include "mm/addr.h"
#include "mm/alloc/bitmap_core.h"
#include "mm/result.h"
#include "mm/std.h"

namespace mm {

template <AddressType AddressT, size_t kPageSizeV = 4096>
class BitmapPageAllocator {
    static_assert(is_power_of_two(kPageSizeV) && kPageSizeV > 1, "page size must be a power of two");

public:
    using Address = AddressT;
    static constexpr size_t kPageSize = kPageSizeV;
    static constexpr size_t kDefaultMaxSegments = 8;

    // Metadata bytes for `segments` segments holding `total_pages` pages in
    // total (any split, any start addresses), whatever the span's alignment.
    static constexpr size_t metadata_bytes(size_t total_pages, size_t segments = kDefaultMaxSegments) {
        size_t bits = total_pages + 63 * segments;  // each segment may need 63 padding bits
        return alignof(uint64_t) - 1 + segments * sizeof(Segment) +
               bitmap::BitmapCore::words_for(bits) * sizeof(uint64_t);
    }

    constexpr BitmapPageAllocator() = default;
    BitmapPageAllocator(const BitmapPageAllocator&) = delete;
    BitmapPageAllocator& operator=(const BitmapPageAllocator&) = delete;

    Status init(std::span<std::byte> metadata, size_t max_segments = kDefaultMaxSegments) {
        if (m_initialized) return err(Error::AlreadyInitialized);
        if (max_segments == 0) return err(Error::InvalidParam);
        uint64_t* words = nullptr;
        size_t nwords = bitmap::metadata_words(metadata, &words);
        static_assert(sizeof(Segment) % sizeof(uint64_t) == 0);
        size_t table_words = max_segments * (sizeof(Segment) / sizeof(uint64_t));
        if (max_segments > nwords || table_words >= nwords) return err(Error::NoMemory);
        size_t capacity = bitmap::BitmapCore::capacity_for_words(nwords - table_words);
        if (capacity == 0) return err(Error::NoMemory);
        m_segments = reinterpret_cast<Segment*>(words);
        for (size_t i = 0; i < max_segments; ++i) ::new (static_cast<void*>(m_segments + i)) Segment{};
        m_max_segments = max_segments;
        m_core.bind(words + table_words, capacity);
        m_initialized = true;
        return ok();
    }

    Status add_memory(Address start, size_t size_bytes) {
        if (!m_initialized) return err(Error::BadState);
        if (size_bytes == 0 || !is_aligned(start.value(), kPageSize) || !is_aligned(size_bytes, kPageSize) ||
            size_bytes - 1 > UINT64_MAX - start.value())
            return err(Error::InvalidParam);
        uint64_t first = start.value() / kPageSize;
        uint64_t pages = size_bytes / kPageSize;
        size_t pos = upper_segment(first);  // insertion point: first segment starting above
        if (pos > 0 && first - m_segments[pos - 1].first_page < m_segments[pos - 1].pages)
            return err(Error::MemoryOverlap);
        if (pos < m_segment_count && m_segments[pos].first_page - first < pages) return err(Error::MemoryOverlap);
        if (m_segment_count == m_max_segments) return err(Error::NoMemory);
        size_t bit = m_next_bit + ((first - m_next_bit) & 63);  // bit = page (mod 64)
        if (bit > m_core.capacity() || pages > m_core.capacity() - bit) return err(Error::NoMemory);
        for (size_t i = m_segment_count; i > pos; --i) m_segments[i] = m_segments[i - 1];
        m_segments[pos] = Segment{first, pages, bit};
        ++m_segment_count;
        m_next_bit = bit + pages;
        m_total += pages;
        m_core.fill(bit, pages, true);
        set_hint(pos, bit);
        return ok();
    }

    // n pages, first address a multiple of align (bytes, power of two >= kPageSize).
    Result<Address> alloc_pages(size_t n, size_t align = kPageSize) {
        if (n == 1 && align == kPageSize) {  // hot path: the next free page after the hint
            size_t b = m_core.find_free(m_hint_bit);
            if (b < m_hint.end_bit) {
                m_core.take(b);
                m_hint_bit = b + 1;
                return Address((b + m_hint.page_minus_bit) * kPageSize);
            }
        }
        if (n == 0 || !is_power_of_two(align) || align < kPageSize) return err(Error::InvalidParam);
        if (n > m_core.free_count()) return err(Error::NoMemory);
        size_t align_pages = align / kPageSize;
        // Next-fit: the hint segment from the hint, every other segment, then
        // the hint segment's runs that start before the hint.
        size_t si = m_hint_segment;
        for (size_t k = 0; k <= m_segment_count; ++k, si = si + 1 == m_segment_count ? 0 : si + 1) {
            const Segment& s = m_segments[si];
            size_t lo = k == 0 ? m_hint_bit : s.bit;
            size_t hi = s.bit + s.pages;
            if (k == m_segment_count && n - 1 < hi - m_hint_bit) hi = m_hint_bit + n - 1;
            size_t b = m_core.find_run(lo, hi, n, align_pages, phase(s, align_pages));
            if (b == bitmap::kNoBit) continue;
            m_core.fill(b, n, false);
            set_hint(si, b + n);
            return address_of(s, b);
        }
        return err(Error::NoMemory);
    }

    // Exactly [base, base + n pages); base a multiple of align.
    Result<Address> alloc_pages_at(Address base, size_t n, size_t align = kPageSize) {
        if (n == 0 || !is_power_of_two(align) || align < kPageSize || !is_aligned(base.value(), align))
            return err(Error::InvalidParam);
        uint64_t first = base.value() / kPageSize;
        if (!for_each_piece(first, n, [](size_t, size_t) { return true; })) return err(Error::OutOfRange);
        if (!for_each_piece(first, n,
                            [&](size_t b, size_t c) { return m_core.find_first(b, c, false) == bitmap::kNoBit; }))
            return err(Error::NoMemory);
        (void)for_each_piece(first, n, [&](size_t b, size_t c) {
            m_core.fill(b, c, false);
            return true;
        });
        return base;
    }

    // All-or-nothing: NotAllocated (and no change) unless every page is allocated.
    Status dealloc_pages(Address base, size_t n) {
        if (n == 1 && is_aligned(base.value(), kPageSize)) {  // hot path: a page of the hint segment
            size_t b = base.value() / kPageSize - m_hint.page_minus_bit;
            if (b - m_hint.bit < m_hint.pages) {
                if (m_core.is_free(b)) return err(Error::NotAllocated);
                m_core.release(b);
                return ok();
            }
        }
        if (n == 0 || !is_aligned(base.value(), kPageSize)) return err(Error::InvalidParam);
        uint64_t first = base.value() / kPageSize;
        size_t si = find_segment(first);
        if (si == kNoSegment) return err(Error::NotAllocated);
        if (uint64_t offset = first - m_segments[si].first_page; n <= m_segments[si].pages - offset) {
            size_t b = m_segments[si].bit + offset;  // the common case: inside one segment
            if (n == 1) {
                if (m_core.is_free(b)) return err(Error::NotAllocated);
                m_core.release(b);
                return ok();
            }
            if (m_core.find_first(b, n, true) != bitmap::kNoBit) return err(Error::NotAllocated);
            m_core.fill(b, n, true);
            return ok();
        }
        if (!for_each_piece(first, n,
                            [&](size_t b, size_t c) { return m_core.find_first(b, c, true) == bitmap::kNoBit; }))
            return err(Error::NotAllocated);
        (void)for_each_piece(first, n, [&](size_t b, size_t c) {
            m_core.fill(b, c, true);
            return true;
        });
        return ok();
    }

    // Whether the page containing addr is managed and allocated.
    [[nodiscard]] bool is_allocated(Address addr) const {
        uint64_t page = addr.value() / kPageSize;
        size_t si = find_segment(page);
        if (si == kNoSegment) return false;
        return !m_core.is_free(m_segments[si].bit + (page - m_segments[si].first_page));
    }

    [[nodiscard]] size_t total_pages() const { return m_total; }
    [[nodiscard]] size_t used_pages() const { return m_total - m_core.free_count(); }
    [[nodiscard]] size_t available_pages() const { return m_core.free_count(); }
    [[nodiscard]] size_t segment_count() const { return m_segment_count; }
    // Pages (including per-segment padding) the metadata can still describe.
    [[nodiscard]] size_t remaining_capacity() const { return m_core.capacity() - m_next_bit; }

    [[nodiscard]] bool check_invariants() const {
        if (!m_initialized) return m_segment_count == 0 && m_total == 0;
        if (!m_core.check_invariants() || m_next_bit > m_core.capacity()) return false;
        size_t total = 0;
        size_t free_in_segments = 0;
        for (size_t i = 0; i < m_segment_count; ++i) {
            const Segment& s = m_segments[i];
            if (!segment_ok(s)) return false;
            if (i > 0 && s.first_page - m_segments[i - 1].first_page < m_segments[i - 1].pages) return false;
            for (size_t j = 0; j < i; ++j)  // bit ranges disjoint (segments are few)
                if (s.bit < m_segments[j].bit + m_segments[j].pages && m_segments[j].bit < s.bit + s.pages)
                    return false;
            total += s.pages;
            free_in_segments += m_core.count_free(s.bit, s.pages);
        }
        if (total != m_total || free_in_segments != m_core.free_count()) return false;  // padding bits are 0
        if (m_segment_count == 0) return true;
        if (m_hint_segment >= m_segment_count) return false;
        const Segment& h = m_segments[m_hint_segment];
        return m_hint_bit >= h.bit && m_hint_bit - h.bit <= h.pages && m_hint.bit == h.bit && m_hint.pages == h.pages &&
               m_hint.end_bit == h.bit + h.pages && m_hint.page_minus_bit == h.first_page - h.bit;
    }

private:
    struct Segment {
        uint64_t first_page = 0;  // address / kPageSize
        uint64_t pages = 0;
        uint64_t bit = 0;  // bit index of first_page in the core
    };
    // The hint segment's fields the hot paths need, copied out of the table
    // (bit index = page - page_minus_bit, mod 2^64); all zero without segments.
    struct HintCache {
        uint64_t bit = 0;
        uint64_t pages = 0;
        uint64_t end_bit = 0;  // bit + pages
        uint64_t page_minus_bit = 0;
    };
    static constexpr size_t kNoSegment = ~size_t(0);

    void set_hint(size_t si, size_t bit) {
        const Segment& s = m_segments[si];
        m_hint_segment = si;
        m_hint_bit = bit;
        m_hint = HintCache{s.bit, s.pages, s.bit + s.pages, s.first_page - s.bit};
    }
    static constexpr uint64_t kPageSpace = (UINT64_MAX / kPageSize) + 1;  // pages in the 64-bit space

    bool segment_ok(const Segment& s) const {
        return s.pages > 0 && s.first_page < kPageSpace && s.pages <= kPageSpace - s.first_page &&
               s.bit + s.pages <= m_next_bit && (s.bit & 63) == (s.first_page & 63);
    }

    // (b + phase) % align == 0 <=> the page of bit b is aligned in the address space.
    static size_t phase(const Segment& s, size_t align_pages) { return (s.first_page - s.bit) & (align_pages - 1); }

    static Address address_of(const Segment& s, size_t b) { return Address((s.first_page + (b - s.bit)) * kPageSize); }

    // Index of the first segment starting above page (binary search).
    size_t upper_segment(uint64_t page) const {
        size_t lo = 0;
        size_t hi = m_segment_count;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (m_segments[mid].first_page <= page)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo;
    }
    size_t find_segment(uint64_t page) const {
        if (m_segment_count != 0) {  // most frees hit the segment allocations come from
            const Segment& h = m_segments[m_hint_segment];
            if (page - h.first_page < h.pages) return m_hint_segment;
        }
        size_t pos = upper_segment(page);
        if (pos == 0 || page - m_segments[pos - 1].first_page >= m_segments[pos - 1].pages) return kNoSegment;
        return pos - 1;
    }

    // Calls f(bit, count) for each segment piece of pages [first, first + n);
    // false if a page is unmanaged (or the range wraps) or f returned false.
    template <class F>
    bool for_each_piece(uint64_t first, uint64_t n, F&& f) const {
        if (first >= kPageSpace || n > kPageSpace - first) return false;
        size_t si = find_segment(first);
        if (si == kNoSegment) return false;
        for (;;) {
            const Segment& s = m_segments[si];
            uint64_t offset = first - s.first_page;
            uint64_t count = n < s.pages - offset ? n : s.pages - offset;
            if (!f(s.bit + offset, count)) return false;
            n -= count;
            if (n == 0) return true;
            first += count;
            if (++si == m_segment_count || m_segments[si].first_page != first) return false;
        }
    }

    Segment* m_segments = nullptr;
    size_t m_max_segments = 0;
    size_t m_segment_count = 0;
    size_t m_next_bit = 0;  // bit space in use: [0, m_next_bit)
    size_t m_total = 0;
    size_t m_hint_segment = 0;
    size_t m_hint_bit = 0;
    HintCache m_hint;
    bool m_initialized = false;
    bitmap::BitmapCore m_core;
};

}  // namespace mm
