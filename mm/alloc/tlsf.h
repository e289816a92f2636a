// Tlsf: Two-Level Segregated Fit byte allocator (Masmano et al.), O(1) alloc
// and free, over one or more pools.
//
// Blocks: every block has a 16-byte header {prev_phys, size|flags} followed by
// its payload (the pointer handed out, 16-byte aligned; size = payload bytes, a
// multiple of 16, >= 16). A free block keeps its free-list links in its
// payload. Flags: kFree (this block), kPrevFree (the physically previous one).
// Each pool ends with a zero-size, used sentinel block so no walk leaves it.
//
// Free lists: size classes indexed (fl, sl): fl = floor(log2(size)) with sizes
// below 512 in fl 0 (linear steps of 16), sl = the next kSlLog2 bits (32 lists
// per fl by default). A first-level bitmap and one second-level bitmap per fl
// mark the non-empty lists, so finding a fit is two countr_zero; alloc rounds
// the request up to the next list boundary (good fit, not best fit).
//
// Alignment above 16: search for size + align + 32, then split off the leading
// part as a free block (>= 32 bytes, else move on by align) and trim the tail.
// Bound: a request of size s aligned to A needs a free block of at least
// s + A + 32 bytes (plus list rounding, < 1/32 of that), and holds at most s + 32
// bytes once trimmed.
//
// Invariants (check_invariants): the blocks of a pool tile it; prev_phys and
// kPrevFree agree with the physical walk; no two physically adjacent blocks are
// free (immediate coalescing with both neighbours); every free block is in the
// list of its size class, lists and bitmaps agree; kChecked: the live-block
// bitmap (one bit per 16 bytes) marks exactly the used blocks.
// Statistics: total = bytes of all blocks of all pools (headers included,
// sentinels, alignment slack and the checked bitmap excluded); used = header +
// payload of every used block (so tail rounding and trimming slack count as
// used); available = the same for free blocks; used + available == total.
// Worst case: no loop depends on the number of blocks; dealloc scans the pool
// table (O(kMaxPools)).
//
// Errors:
//   InvalidParam   size 0 or > 2^62, align not a power of two; a pool that is
//                  empty, wraps, or cannot hold one 16-byte block (plus bitmap)
//   BadState       init called twice
//   MemoryOverlap  add_memory overlapping a pool
//   NoMemory       no free block fits (or more than kMaxPools pools)
//   NotAllocated   dealloc of something not live. Always detected: pointer
//                  outside every pool or not 16-aligned, header marks it free
//                  (double free), header size runs past the pool, or the next
//                  block's prev_phys does not point back. kChecked adds the
//                  live-block bitmap (interior and forged pointers) and a size
//                  larger than the block.
// Pools larger than 2^48 bytes are used only up to 2^48. Ownership: owns no
// memory. Single-threaded.
#pragma once

#include "mm/alloc/allocator.h"
#include "mm/alloc/intrusive_list.h"
#include "mm/alloc/region.h"
#include "mm/std.h"

namespace mm {

template <bool kChecked = true, unsigned kSlLog2 = 5, size_t kMaxPools = 16>
class Tlsf {
    static_assert(kSlLog2 >= 2 && kSlLog2 <= 5, "second-level bitmaps are 32-bit");

public:
    static constexpr bool kIsChecked = kChecked;
    static constexpr size_t kGranule = 16;
    static constexpr size_t kHeader = 16;
    static constexpr size_t kMinPayload = 16;
    static constexpr size_t kMinBlock = kHeader + kMinPayload;
    static constexpr unsigned kSlCount = 1U << kSlLog2;
    static constexpr unsigned kFlShift = kSlLog2 + 4;  // log2(kSmallSize)
    static constexpr size_t kSmallSize = size_t(1) << kFlShift;
    static constexpr unsigned kMaxLog2 = 48;
    static constexpr unsigned kFlCount = kMaxLog2 - kFlShift + 1;
    static constexpr size_t kMaxPayload = (size_t(1) << kMaxLog2) - kGranule;

    Status init(std::span<std::byte> region) {
        if (m_initialized) return err(Error::BadState);
        MM_TRY(add_memory(region));
        m_initialized = true;
        return ok();
    }

    Status add_memory(std::span<std::byte> region) {
        RawRegion raw;
        MM_TRY(check_new_region(region, m_pools.data(), m_pool_count, kMaxPools, raw));
        Pool p{};
        MM_TRY(layout_pool(raw.start, raw.end, p));
        m_pools[m_pool_count++] = p;
        auto* first = block_at(p.first);
        auto* sentinel = block_at(p.sentinel);
        first->prev_phys = nullptr;
        first->size_flags = (p.sentinel - p.first - kHeader) | kFree;
        sentinel->prev_phys = first;
        sentinel->size_flags = kPrevFree;
        insert_free(first);
        m_total += p.sentinel - p.first;
        return ok();
    }

    Result<void*> alloc(size_t size, size_t align) {
        MM_TRY(validate_layout(size, align));
        if (size > kMaxPayload || align > kMaxPayload) return err(Error::NoMemory);
        size_t adj = (size + kGranule - 1) & ~(kGranule - 1);
        size_t need = align <= kGranule ? adj : adj + align + kMinBlock;
        Block* b = take_fit(need);
        if (b == nullptr) return err(Error::NoMemory);
        if (align > kGranule) b = split_leading(b, align);
        split_trailing(b, adj);
        mark_used(b);
        m_used += kHeader + b->size();
        if constexpr (kChecked) set_live(b, true);
        return static_cast<void*>(payload(b));
    }

    Status dealloc(void* p, size_t size, size_t align) {
        MM_TRY(validate_layout(size, align));
        auto a = reinterpret_cast<uintptr_t>(p);
        const Pool* pool = find_pool(a);
        if (pool == nullptr || (a & (kGranule - 1)) != 0) return err(Error::NotAllocated);
        Block* b = block_at(a - kHeader);
        if (b->is_free() || b->size() < kMinPayload || b->size() > pool->sentinel - a) return err(Error::NotAllocated);
        if (next_phys(b)->prev_phys != b) return err(Error::NotAllocated);
        if constexpr (kChecked) {
            if (!is_live(pool, b) || size > b->size()) return err(Error::NotAllocated);
            set_live(b, false);
        }
        m_used -= kHeader + b->size();
        free_block(b);
        return ok();
    }

    [[nodiscard]] size_t total_bytes() const { return m_total; }
    [[nodiscard]] size_t used_bytes() const { return m_used; }
    [[nodiscard]] size_t available_bytes() const { return m_total - m_used; }
    [[nodiscard]] size_t pool_count() const { return m_pool_count; }
    // Payload bytes of the live block at p (p must be live; for tests/diagnostics).
    [[nodiscard]] size_t block_payload(const void* p) const {
        return block_at(reinterpret_cast<uintptr_t>(p) - kHeader)->size();
    }
    // Number of free blocks (for tests).
    [[nodiscard]] size_t free_block_count() const {
        size_t n = 0;
        for (const auto& row : m_heads)
            for (const Block* h : row)
                for (const Block* b = h; b != nullptr; b = b->next_free) ++n;
        return n;
    }

    [[nodiscard]] bool check_invariants() const {
        size_t used = 0;
        size_t free_blocks = 0;
        size_t total = 0;
        for (size_t i = 0; i < m_pool_count; ++i) {
            if (!check_pool(m_pools[i], used, free_blocks, total)) return false;
        }
        if (used != m_used || total != m_total) return false;
        return check_lists(free_blocks);
    }

private:
    static constexpr uint64_t kFree = 1;
    static constexpr uint64_t kPrevFree = 2;
    static constexpr uint64_t kFlagMask = kGranule - 1;

    struct Block {
        Block* prev_phys;
        uint64_t size_flags;
        Block* next_free;  // free blocks only (first bytes of the payload)
        Block* prev_free;
        [[nodiscard]] size_t size() const { return size_flags & ~kFlagMask; }
        [[nodiscard]] bool is_free() const { return (size_flags & kFree) != 0; }
        [[nodiscard]] bool is_prev_free() const { return (size_flags & kPrevFree) != 0; }
        void set_size(size_t s) { size_flags = s | (size_flags & kFlagMask); }
        void set_flag(uint64_t f, bool on) { size_flags = on ? (size_flags | f) : (size_flags & ~f); }
    };
    struct Pool {
        uintptr_t raw_start;
        uintptr_t raw_end;
        uintptr_t first;      // header of the first block
        uintptr_t sentinel;   // header of the zero-size end block
        uint64_t* live_bits;  // kChecked: bit (block - first) / 16
        size_t live_words;
    };
    struct Index {
        unsigned fl;
        unsigned sl;
    };

    static Block* block_at(uintptr_t a) { return reinterpret_cast<Block*>(a); }
    static std::byte* payload(Block* b) { return reinterpret_cast<std::byte*>(b) + kHeader; }
    static Block* next_phys(const Block* b) { return block_at(reinterpret_cast<uintptr_t>(b) + kHeader + b->size()); }

    static Status layout_pool(uintptr_t start, uintptr_t end, Pool& p) {
        p.raw_start = start;
        p.raw_end = end;
        uintptr_t meta = (start + 7) & ~uintptr_t(7);
        if (meta < start || meta >= end) return err(Error::InvalidParam);
        p.live_words = kChecked ? ((end - start) / kGranule + 63) / 64 : 0;
        p.live_bits = kChecked ? reinterpret_cast<uint64_t*>(meta) : nullptr;
        if ((end - meta) / 8 < p.live_words + 2) return err(Error::InvalidParam);
        uintptr_t first = (meta + p.live_words * 8 + kGranule - 1) & ~uintptr_t(kGranule - 1);
        uintptr_t last = (end & ~uintptr_t(kGranule - 1));
        if (last < first || last - first < kMinBlock + kHeader) return err(Error::InvalidParam);
        size_t payload_bytes = last - first - 2 * kHeader;
        if (payload_bytes > kMaxPayload) payload_bytes = kMaxPayload;
        p.first = first;
        p.sentinel = first + kHeader + payload_bytes;
        detail::words_clear(p.live_bits, p.live_words);
        return ok();
    }

    const Pool* find_pool(uintptr_t payload_addr) const {
        for (size_t i = 0; i < m_pool_count; ++i) {
            if (payload_addr >= m_pools[i].first + kHeader && payload_addr < m_pools[i].sentinel) return &m_pools[i];
        }
        return nullptr;
    }

    // ---- size classes ----
    static Index mapping_insert(size_t size) {
        if (size < kSmallSize) return {0, static_cast<unsigned>(size / (kSmallSize / kSlCount))};
        unsigned l = detail::floor_log2(size);
        auto sl = static_cast<unsigned>((size >> (l - kSlLog2)) ^ kSlCount);
        return {l - kFlShift + 1, sl};
    }
    // Rounds up so that every block in the returned list is large enough.
    static Index mapping_search(size_t size) {
        if (size >= kSmallSize) size += (size_t(1) << (detail::floor_log2(size) - kSlLog2)) - 1;
        return mapping_insert(size);
    }

    Block* take_fit(size_t need) {
        Index i = mapping_search(need);
        if (i.fl >= kFlCount) return nullptr;
        uint32_t sl_map = m_sl_bits[i.fl] & (~uint32_t(0) << i.sl);
        if (sl_map == 0) {
            uint64_t fl_map = i.fl + 1 < 64 ? m_fl_bits & (~uint64_t(0) << (i.fl + 1)) : 0;
            if (fl_map == 0) return nullptr;
            i.fl = static_cast<unsigned>(std::countr_zero(fl_map));
            sl_map = m_sl_bits[i.fl];
        }
        i.sl = static_cast<unsigned>(std::countr_zero(sl_map));
        Block* b = m_heads[i.fl][i.sl];
        remove_free(b, i);
        return b;
    }

    void insert_free(Block* b) {
        Index i = mapping_insert(b->size());
        Block*& head = m_heads[i.fl][i.sl];
        b->prev_free = nullptr;
        b->next_free = head;
        if (head != nullptr) head->prev_free = b;
        head = b;
        m_sl_bits[i.fl] |= uint32_t(1) << i.sl;
        m_fl_bits |= uint64_t(1) << i.fl;
    }
    void remove_free(Block* b, Index i) {
        if (b->prev_free != nullptr)
            b->prev_free->next_free = b->next_free;
        else
            m_heads[i.fl][i.sl] = b->next_free;
        if (b->next_free != nullptr) b->next_free->prev_free = b->prev_free;
        if (m_heads[i.fl][i.sl] == nullptr) {
            m_sl_bits[i.fl] &= ~(uint32_t(1) << i.sl);
            if (m_sl_bits[i.fl] == 0) m_fl_bits &= ~(uint64_t(1) << i.fl);
        }
    }
    void remove_free(Block* b) { remove_free(b, mapping_insert(b->size())); }

    // b is free and off the lists. Splits [b, aligned payload) off as a free
    // block and returns the block whose payload is aligned.
    Block* split_leading(Block* b, size_t align) {
        uintptr_t pay = reinterpret_cast<uintptr_t>(payload(b));
        uintptr_t aligned = (pay + align - 1) & ~uintptr_t(align - 1);
        if (aligned == pay) return b;
        if (aligned - pay < kMinBlock) aligned += align;
        size_t gap = aligned - pay;
        Block* nb = block_at(aligned - kHeader);
        nb->prev_phys = b;
        nb->size_flags = (b->size() - gap) | kFree | kPrevFree;
        next_phys(nb)->prev_phys = nb;
        b->set_size(gap - kHeader);
        insert_free(b);
        return nb;
    }

    // b is free and off the lists; gives back its tail beyond `size` bytes.
    void split_trailing(Block* b, size_t size) {
        if (b->size() < size + kMinBlock) return;
        Block* rest = block_at(reinterpret_cast<uintptr_t>(payload(b)) + size);
        rest->prev_phys = b;
        rest->size_flags = (b->size() - size - kHeader) | kFree | kPrevFree;
        next_phys(rest)->prev_phys = rest;
        b->set_size(size);
        insert_free(rest);  // its next neighbour is used: b was free and coalesced
    }

    void mark_used(Block* b) {
        b->set_flag(kFree, false);
        next_phys(b)->set_flag(kPrevFree, false);
    }

    void free_block(Block* b) {
        b->set_flag(kFree, true);
        if (b->is_prev_free()) {
            Block* prev = b->prev_phys;
            remove_free(prev);
            prev->set_size(prev->size() + kHeader + b->size());
            b = prev;
        }
        Block* next = next_phys(b);
        if (next->is_free()) {
            remove_free(next);
            b->set_size(b->size() + kHeader + next->size());
            next = next_phys(b);
        }
        next->prev_phys = b;
        next->set_flag(kPrevFree, true);
        insert_free(b);
    }

    // ---- checked mode ----
    const Pool* pool_of_block(const Block* b) const { return find_pool(reinterpret_cast<uintptr_t>(b) + kHeader); }
    void set_live(Block* b, bool on) {
        const Pool* pool = pool_of_block(b);
        MM_ASSERT(pool != nullptr);
        size_t i = (reinterpret_cast<uintptr_t>(b) - pool->first) / kGranule;
        if (on)
            detail::bit_set(pool->live_bits, i);
        else
            detail::bit_clear(pool->live_bits, i);
    }
    static bool is_live(const Pool* pool, const Block* b) {
        return detail::bit_test(pool->live_bits, (reinterpret_cast<uintptr_t>(b) - pool->first) / kGranule);
    }

    bool check_pool(const Pool& pool, size_t& used, size_t& free_blocks, size_t& total) const {
        const Block* prev = nullptr;
        bool prev_free = false;
        size_t live = 0;
        uintptr_t a = pool.first;
        while (a < pool.sentinel) {
            const Block* b = block_at(a);
            if (b->prev_phys != prev || b->is_prev_free() != prev_free) return false;
            if (b->size() < kMinPayload || b->size() > pool.sentinel - a - kHeader) return false;
            if (b->is_free() && prev_free) return false;  // not coalesced
            if (b->is_free())
                ++free_blocks;
            else
                used += kHeader + b->size();
            if constexpr (kChecked) {
                if (is_live(&pool, b) == b->is_free()) return false;
                live += b->is_free() ? 0 : 1;
            }
            total += kHeader + b->size();
            prev = b;
            prev_free = b->is_free();
            a += kHeader + b->size();
        }
        const Block* s = block_at(pool.sentinel);
        if (a != pool.sentinel || s->prev_phys != prev || s->is_prev_free() != prev_free || s->size() != 0 ||
            s->is_free())
            return false;
        if constexpr (kChecked) {
            if (detail::bit_count(pool.live_bits, pool.live_words) != live) return false;
        }
        return true;
    }

    bool check_lists(size_t free_blocks) const {
        size_t listed = 0;
        for (unsigned fl = 0; fl < kFlCount; ++fl) {
            if (((m_fl_bits >> fl) & 1U) != (m_sl_bits[fl] != 0 ? 1U : 0U)) return false;
            for (unsigned sl = 0; sl < kSlCount; ++sl) {
                const Block* h = m_heads[fl][sl];
                if (((m_sl_bits[fl] >> sl) & 1U) != (h != nullptr ? 1U : 0U)) return false;
                const Block* prev = nullptr;
                for (const Block* b = h; b != nullptr; prev = b, b = b->next_free) {
                    Index i = mapping_insert(b->size());
                    if (!b->is_free() || b->prev_free != prev || i.fl != fl || i.sl != sl) return false;
                    if (pool_of_block(b) == nullptr || ++listed > free_blocks) return false;
                }
            }
        }
        return (m_fl_bits >> kFlCount) == 0 && listed == free_blocks;
    }

    std::array<std::array<Block*, kSlCount>, kFlCount> m_heads{};
    std::array<uint32_t, kFlCount> m_sl_bits{};
    uint64_t m_fl_bits = 0;
    std::array<Pool, kMaxPools> m_pools{};
    size_t m_pool_count = 0;
    size_t m_total = 0;
    size_t m_used = 0;
    bool m_initialized = false;
};

}  // namespace mm
