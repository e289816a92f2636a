// BitmapIdAllocator: contiguous, aligned ranges of integer IDs in [0, size).
//
// What it is: a BitmapCore (mm/alloc/bitmap_core.h, one bit per ID, 1 = free,
// with summary levels) over metadata handed to init(); finding a free ID or a
// free aligned run costs O(log64 size) word reads at any fill level. A next-fit
// hint makes consecutive allocations continue where the previous one ended
// (so freed IDs are not reused at once, which helps catch stale IDs).
// The caller owns the metadata span and keeps it alive while the allocator is
// used (not copyable: it points into the span). Satisfies mm::IdAllocator.
// Single-threaded: callers lock. The concept is mm::IdAllocator, hence the
// class name BitmapIdAllocator.
//
// Invariants (check_invariants): the core's summaries match its bits; IDs at
// or past size() are never free; used() + available() == size() and
// available() equals the number of free bits.
//
// Errors:
//   AlreadyInitialized  init called twice
//   InvalidParam        size 0 or above 2^48 (init), count 0, align not a power of two
//   NoMemory            metadata too small (init); no free aligned run (alloc_id);
//                       the ID is taken (alloc_fixed_id)
//   OutOfRange          alloc_fixed_id(id) with id >= size()
//   NotAllocated        dealloc_id of a range with an ID that is free or >= size()
//                       (nothing changes)
#pragma once

#include "mm/addr.h"
#include "mm/alloc/bitmap_core.h"
#include "mm/result.h"
#include "mm/std.h"

namespace mm {

class BitmapIdAllocator {
public:
    static constexpr size_t metadata_bytes(size_t size) {
        return alignof(uint64_t) - 1 + bitmap::BitmapCore::words_for(size) * sizeof(uint64_t);
    }

    constexpr BitmapIdAllocator() = default;
    BitmapIdAllocator(const BitmapIdAllocator&) = delete;
    BitmapIdAllocator& operator=(const BitmapIdAllocator&) = delete;

    Status init(std::span<std::byte> metadata, size_t size) {
        if (m_size != 0) return err(Error::AlreadyInitialized);
        if (size == 0 || size > bitmap::kMaxBitmapBits) return err(Error::InvalidParam);
        uint64_t* words = nullptr;
        size_t nwords = bitmap::metadata_words(metadata, &words);
        if (nwords < bitmap::BitmapCore::words_for(size)) return err(Error::NoMemory);
        m_core.bind(words, size);
        m_core.fill(0, size, true);
        m_size = size;
        m_hint = 0;
        return ok();
    }

    // count contiguous IDs, the first a multiple of align.
    Result<uint64_t> alloc_id(size_t count = 1, size_t align = 1) {
        if (count == 0 || !is_power_of_two(align)) return err(Error::InvalidParam);
        if (count > m_core.free_count()) return err(Error::NoMemory);
        if (count == 1 && align == 1) {  // hot path: the next free ID after the hint
            if (size_t b = m_core.find_free(m_hint); b != bitmap::kNoBit) {
                m_core.take(b);
                m_hint = b + 1;
                return uint64_t(b);
            }
        }
        size_t b = m_core.find_run(m_hint, m_size, count, align, 0);
        if (b == bitmap::kNoBit) {  // runs starting before the hint
            size_t hi = count - 1 < m_size - m_hint ? m_hint + count - 1 : m_size;
            b = m_core.find_run(0, hi, count, align, 0);
            if (b == bitmap::kNoBit) return err(Error::NoMemory);
        }
        m_core.fill(b, count, false);
        m_hint = b + count;
        return uint64_t(b);
    }

    Status alloc_fixed_id(uint64_t id) {
        if (id >= m_size) return err(Error::OutOfRange);
        if (!m_core.is_free(id)) return err(Error::NoMemory);
        m_core.take(id);
        return ok();
    }

    // All-or-nothing: NotAllocated (and no change) unless every ID is allocated.
    Status dealloc_id(uint64_t start, size_t count = 1) {
        if (count == 0) return err(Error::InvalidParam);
        if (start >= m_size || count > m_size - start) return err(Error::NotAllocated);
        if (count == 1) {
            if (m_core.is_free(start)) return err(Error::NotAllocated);
            m_core.release(start);
            return ok();
        }
        if (m_core.find_first(start, count, true) != bitmap::kNoBit) return err(Error::NotAllocated);
        m_core.fill(start, count, true);
        return ok();
    }

    [[nodiscard]] bool is_allocated(uint64_t id) const { return id < m_size && !m_core.is_free(id); }
    [[nodiscard]] size_t size() const { return m_size; }
    [[nodiscard]] size_t used() const { return m_size - m_core.free_count(); }
    [[nodiscard]] size_t available() const { return m_core.free_count(); }

    [[nodiscard]] bool check_invariants() const {
        if (m_size == 0) return true;
        return m_core.check_invariants() && m_core.capacity() == m_size && m_hint <= m_size &&
               m_core.free_count() <= m_size;
    }

private:
    size_t m_size = 0;  // 0 until init
    size_t m_hint = 0;  // next-fit cursor in [0, size]
    bitmap::BitmapCore m_core;
};

}  // namespace mm
