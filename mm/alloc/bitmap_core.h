// Hierarchical bitmaps shared by the bitmap page allocator and the ID allocator.
//
// SummaryTree: a base bitmap of `bits` bits plus summary levels above it, where
// bit j of level k+1 is set iff word j of level k is non-zero. The top level is
// a single word, so "first set bit at or after pos" costs O(levels) word reads
// (levels = ceil(log64(bits)), 4 for 2^20 bits), whatever the fill.
//
// BitmapCore: the allocation state of `capacity` slots (pages or IDs), bit = 1
// meaning FREE, kept in SummaryTrees:
//   m_free       base = the slots; its summaries answer "next free slot >= pos".
//   m_blocks[t]  base = one bit per word of m_free, set iff that word holds a
//                free block of B = kBlockSizes[t] slots aligned to B (B = 64:
//                the word is all free). A run of n >= 2B - 1 slots always
//                contains such a block, so a multi-slot search jumps from block
//                to block and skips every word without one, at any fill level.
// Invariants (check_invariants): every summary bit equals "word below non-zero";
// m_blocks[t]'s base bit w equals "m_free word w has a free aligned B-block";
// bits at or past the end of a level are zero; m_free_count equals the popcount
// of m_free's base.
// Slots are abstract: the core never touches the memory they stand for. Its
// metadata is an array of uint64_t owned by the caller (bound with bind()).
//
// This is an internal building block (namespace mm::bitmap): it trusts its
// callers (ranges are in bounds, n >= 1, align a power of two); the public
// allocators validate everything before calling it.
#pragma once

#include "mm/std.h"

namespace mm::bitmap {

inline constexpr size_t kNoBit = ~size_t(0);
inline constexpr unsigned kMaxTreeLevels = 8;
// 64^8 base bits would fit in kMaxTreeLevels; 2^48 slots (1 EiB of 4 KiB pages)
// is far beyond any metadata one can hand in, and keeps index arithmetic far from 2^64.
inline constexpr size_t kMaxBitmapBits = size_t(1) << 48;

constexpr size_t ceil_div64(size_t x) { return (x >> 6) + ((x & 63) != 0 ? 1 : 0); }
constexpr uint64_t low_mask_from(unsigned bit) { return ~uint64_t(0) << bit; }          // bits >= bit
constexpr uint64_t high_mask_upto(unsigned bit) { return ~uint64_t(0) >> (63 - bit); }  // bits <= bit

// First x' >= x with (x' + phase) a multiple of align (align a power of two).
constexpr size_t align_up_phase(size_t x, size_t align, size_t phase) {
    return x + ((size_t(0) - (x + phase)) & (align - 1));
}

class SummaryTree {
public:
    // uint64_t words used by all levels for `bits` base bits.
    static constexpr size_t words_for(size_t bits) {
        size_t count = bits == 0 ? 1 : ceil_div64(bits);
        size_t total = count;
        while (count > 1) {
            count = ceil_div64(count);
            total += count;
        }
        return total;
    }

    // Lays the levels out in `words` (words_for(bits) of them) and clears them.
    void bind(uint64_t* words, size_t bits) {
        m_bits = bits;
        m_levels = 0;
        size_t count = bits == 0 ? 1 : ceil_div64(bits);
        for (;;) {
            MM_ASSERT(m_levels < kMaxTreeLevels);
            m_level[m_levels] = words;
            m_count[m_levels] = count;
            ++m_levels;
            for (size_t i = 0; i < count; ++i) words[i] = 0;
            words += count;
            if (count == 1) break;
            count = ceil_div64(count);
        }
    }

    [[nodiscard]] size_t bits() const { return m_bits; }
    [[nodiscard]] size_t base_words() const { return m_count[0]; }
    [[nodiscard]] uint64_t word(size_t wi) const { return m_level[0][wi]; }
    [[nodiscard]] bool test(size_t b) const { return (m_level[0][b >> 6] >> (b & 63)) & 1; }

    // Replaces base word wi and keeps the summaries consistent.
    void store_word(size_t wi, uint64_t value) {
        uint64_t old = m_level[0][wi];
        m_level[0][wi] = value;
        if ((old == 0) != (value == 0)) propagate(wi, value != 0);
    }
    // store_word when the old word is known non-zero (a bit was cleared).
    void store_cleared(size_t wi, uint64_t value) {
        m_level[0][wi] = value;
        if (value == 0) propagate(wi, false);
    }
    // store_word when bits were only set (old -> value = old | bits).
    void store_set(size_t wi, uint64_t old, uint64_t value) {
        m_level[0][wi] = value;
        if (old == 0) propagate(wi, true);
    }
    void clear_set_bit(size_t b) {  // b is set
        MM_DEBUG_ASSERT(test(b));
        store_cleared(b >> 6, m_level[0][b >> 6] & ~(uint64_t(1) << (b & 63)));
    }
    void set_bit(size_t b) {
        uint64_t old = m_level[0][b >> 6];
        store_set(b >> 6, old, old | (uint64_t(1) << (b & 63)));
    }
    void assign_bit(size_t b, bool value) {
        uint64_t bit = uint64_t(1) << (b & 63);
        uint64_t w = m_level[0][b >> 6];
        store_word(b >> 6, value ? (w | bit) : (w & ~bit));
    }

    // The first set base bit at or after pos, or kNoBit.
    [[nodiscard]] size_t find_next(size_t pos) const {
        if (pos >= m_bits) return kNoBit;
        size_t idx = pos;
        unsigned lvl = 0;
        for (;;) {  // climb until a word has a set bit at or after idx
            size_t wi = idx >> 6;
            if (wi >= m_count[lvl]) return kNoBit;
            uint64_t w = m_level[lvl][wi] & low_mask_from(idx & 63);
            if (w != 0) {
                idx = (wi << 6) | size_t(std::countr_zero(w));
                break;
            }
            if (lvl + 1 == m_levels) return kNoBit;
            idx = wi + 1;
            ++lvl;
        }
        while (lvl > 0) {  // descend along the lowest set bits
            --lvl;
            idx = (idx << 6) | size_t(std::countr_zero(m_level[lvl][idx]));
        }
        return idx;
    }

    [[nodiscard]] bool check() const {
        unsigned tail = unsigned(m_bits & 63);  // base bits past m_bits must stay clear
        if (m_bits == 0 ? m_level[0][0] != 0 : (tail != 0 && (m_level[0][m_count[0] - 1] & low_mask_from(tail)) != 0))
            return false;
        for (unsigned lvl = 1; lvl < m_levels; ++lvl) {
            for (size_t j = 0; j < m_count[lvl] * 64; ++j) {
                bool expect = j < m_count[lvl - 1] && m_level[lvl - 1][j] != 0;
                bool have = (m_level[lvl][j >> 6] >> (j & 63)) & 1;
                if (expect != have) return false;
            }
        }
        return true;
    }

private:
    void propagate(size_t idx, bool nonzero) {
        for (unsigned lvl = 1; lvl < m_levels; ++lvl) {
            uint64_t& w = m_level[lvl][idx >> 6];
            uint64_t bit = uint64_t(1) << (idx & 63);
            bool was = w != 0;
            w = nonzero ? (w | bit) : (w & ~bit);
            if (was == (w != 0)) return;
            idx >>= 6;
        }
    }

    uint64_t* m_level[kMaxTreeLevels] = {};
    size_t m_count[kMaxTreeLevels] = {};
    unsigned m_levels = 0;
    size_t m_bits = 0;
};

class BitmapCore {
public:
    // log2 of the block sizes with a summary tree each, ascending; the last is a whole word.
    static constexpr unsigned kBlockShifts[] = {2, 3, 6};
    static constexpr size_t kBlockTrees = sizeof(kBlockShifts) / sizeof(kBlockShifts[0]);

    static constexpr size_t words_for(size_t bits) {
        return SummaryTree::words_for(bits) + kBlockTrees * SummaryTree::words_for(ceil_div64(bits));
    }
    // The most slots whose metadata fits in `words` uint64_t (capped at kMaxBitmapBits).
    static constexpr size_t capacity_for_words(size_t words) {
        size_t lo = 0;
        size_t hi = kMaxBitmapBits;
        if (words_for(hi) <= words) return hi;
        while (lo < hi) {  // largest lo with words_for(lo) <= words
            size_t mid = lo + (hi - lo + 1) / 2;
            if (words_for(mid) <= words)
                lo = mid;
            else
                hi = mid - 1;
        }
        return lo;
    }

    // Bit i of the result is set iff i is a multiple of 2^shift and bits
    // [i, i + 2^shift) of w are all set.
    static constexpr uint64_t block_starts(uint64_t w, unsigned shift) {
        for (unsigned k = 0; k < shift; ++k) w &= w >> (1U << k);
        return w & kAlignedStarts[shift];
    }

    // Binds words_for(capacity) words; every slot starts ALLOCATED (bit 0), so
    // callers free the slots that exist (add_memory, an ID range).
    void bind(uint64_t* words, size_t capacity) {
        m_free.bind(words, capacity);
        words += SummaryTree::words_for(capacity);
        for (auto& tree : m_blocks) {
            tree.bind(words, ceil_div64(capacity));
            words += SummaryTree::words_for(ceil_div64(capacity));
        }
        m_free_count = 0;
    }

    [[nodiscard]] size_t capacity() const { return m_free.bits(); }
    [[nodiscard]] size_t free_count() const { return m_free_count; }
    [[nodiscard]] bool is_free(size_t b) const { return m_free.test(b); }

    // Single-slot forms of find_run(.., 1, 1, 0) and fill, for the hot path.
    [[nodiscard]] size_t find_free(size_t pos) const { return m_free.find_next(pos); }
    // Only the aligned blocks that contain b can vanish (take) or appear
    // (release), so these skip the whole-word block_kinds of fill(); every
    // block tree holding b's aligned blocks contains b's smallest block, so
    // when that one is not (was not) free nothing but m_free changes.
    void take(size_t b) {
        size_t wi = b >> 6;
        unsigned off = unsigned(b & 63);
        uint64_t old = m_free.word(wi);
        MM_DEBUG_ASSERT((old >> off) & 1);
        uint64_t value = old & ~(uint64_t(1) << off);
        m_free.store_cleared(wi, value);
        --m_free_count;
        if (old == ~uint64_t(0)) {  // 63 free slots keep every smaller block kind
            m_blocks[kBlockTrees - 1].clear_set_bit(wi);
            return;
        }
        if (((old >> (off & ~(kSmallest - 1))) & kSmallestOnes) != kSmallestOnes) return;
        for_each_small_block([&]<size_t t, unsigned kSize, uint64_t kOnes>() {
            if (((old >> (off & ~(kSize - 1))) & kOnes) == kOnes && block_starts(value, kBlockShifts[t]) == 0)
                m_blocks[t].clear_set_bit(wi);
        });
    }
    void release(size_t b) {
        size_t wi = b >> 6;
        unsigned off = unsigned(b & 63);
        uint64_t old = m_free.word(wi);
        MM_DEBUG_ASSERT(((old >> off) & 1) == 0);
        uint64_t value = old | (uint64_t(1) << off);
        m_free.store_set(wi, old, value);
        ++m_free_count;
        if (value == ~uint64_t(0)) {  // old had 63 free slots: every smaller block kind already
            m_blocks[kBlockTrees - 1].set_bit(wi);
            return;
        }
        if (((value >> (off & ~(kSmallest - 1))) & kSmallestOnes) != kSmallestOnes) return;
        for_each_small_block([&]<size_t t, unsigned kSize, uint64_t kOnes>() {
            if (((value >> (off & ~(kSize - 1))) & kOnes) == kOnes) m_blocks[t].set_bit(wi);
        });
    }

    // Marks [b, b+n) free (free=true) or allocated. Precondition: every slot of
    // the range is in the other state (callers check first), so the count moves by n.
    [[gnu::always_inline]] void fill(size_t b, size_t n, bool free) {
        MM_DEBUG_ASSERT(n != 0);  // the one-word mask below shifts by 64 - n
        m_free_count = free ? m_free_count + n : m_free_count - n;
        if (n <= 64 - (b & 63)) {  // one word (most multi-slot allocations): no loop to inline
            fill_word(b >> 6, (~uint64_t(0) >> (64 - n)) << (b & 63), free);
            return;
        }
        for_each_word(b, n, [&](size_t wi, uint64_t mask) {
            fill_word(wi, mask, free);
            return true;
        });
    }

    // The first slot in [b, b+n) that is free (free=true) / allocated, or kNoBit.
    [[nodiscard]] size_t find_first(size_t b, size_t n, bool free) const {
        size_t found = kNoBit;
        for_each_word(b, n, [&](size_t wi, uint64_t mask) {
            uint64_t w = free ? m_free.word(wi) : ~m_free.word(wi);
            if ((w & mask) == 0) return true;
            found = (wi << 6) | size_t(std::countr_zero(w & mask));
            return false;
        });
        return found;
    }

    // The last slot in [b, b+n) that is free / allocated, or kNoBit.
    [[nodiscard]] size_t find_last(size_t b, size_t n, bool free) const {
        size_t first_wi = b >> 6;
        size_t last = b + n - 1;
        for (size_t wi = last >> 6;; --wi) {
            uint64_t mask = ~uint64_t(0);
            if (wi == first_wi) mask &= low_mask_from(b & 63);
            if (wi == last >> 6) mask &= high_mask_upto(last & 63);
            uint64_t w = (free ? m_free.word(wi) : ~m_free.word(wi)) & mask;
            if (w != 0) return (wi << 6) | size_t(63 - std::countl_zero(w));
            if (wi == first_wi) return kNoBit;
        }
    }

    [[nodiscard]] size_t count_free(size_t b, size_t n) const {
        size_t count = 0;
        for_each_word(b, n, [&](size_t wi, uint64_t mask) {
            count += size_t(std::popcount(m_free.word(wi) & mask));
            return true;
        });
        return count;
    }

    // The first b in [lo, hi) with [b, b+n) free, b+n <= hi and (b + phase) a
    // multiple of align; kNoBit if there is none. Complete: finds a run whenever one exists.
    [[nodiscard]] size_t find_run(size_t lo, size_t hi, size_t n, size_t align, size_t phase) const {
        if (lo > hi || n > hi - lo) return kNoBit;
        // The largest block size B with n >= 2B - 1 (compile-time t: the folds unroll).
        if (n >= min_run_for<2>()) return find_run_by_blocks<2>(lo, hi, n, align, phase);
        if (n >= min_run_for<1>()) return find_run_by_blocks<1>(lo, hi, n, align, phase);
        if (n >= min_run_for<0>()) return find_run_by_blocks<0>(lo, hi, n, align, phase);
        return find_run_by_slots(lo, hi, n, align, phase);
    }

    [[nodiscard]] bool check_invariants() const {
        if (!m_free.check()) return false;
        for (const auto& tree : m_blocks)
            if (!tree.check()) return false;
        size_t popcount = 0;
        for (size_t wi = 0; wi < m_free.base_words(); ++wi) {
            uint64_t w = m_free.word(wi);
            popcount += size_t(std::popcount(w));
            for (size_t t = 0; t < kBlockTrees; ++t)
                if (m_blocks[t].test(wi) != (block_starts(w, kBlockShifts[t]) != 0)) return false;
        }
        return popcount == m_free_count;
    }

private:
    static_assert(kBlockShifts[kBlockTrees - 1] == 6);
    static constexpr unsigned kSmallest = 1U << kBlockShifts[0];  // slots in the smallest block
    static constexpr uint64_t kSmallestOnes = (uint64_t(1) << kSmallest) - 1;
    // Bits at the multiples of 2^shift, for shift = 0..6.
    static constexpr uint64_t kAlignedStarts[] = {~uint64_t(0),
                                                  0x5555555555555555,
                                                  0x1111111111111111,
                                                  0x0101010101010101,
                                                  0x0001000100010001,
                                                  0x0000000100000001,
                                                  1};

    template <class F>
    static void for_each_word(size_t b, size_t n, F&& f) {
        size_t first_wi = b >> 6;
        size_t last = b + n - 1;
        size_t last_wi = last >> 6;
        for (size_t wi = first_wi; wi <= last_wi; ++wi) {
            uint64_t mask = ~uint64_t(0);
            if (wi == first_wi) mask &= low_mask_from(b & 63);
            if (wi == last_wi) mask &= high_mask_upto(last & 63);
            if (!f(wi, mask)) return;
        }
    }

    // Calls f.template operator()<t, size, ones>() for every block tree but the
    // last (whole words), with compile-time constants so the folds unroll.
    template <class F>
    static void for_each_small_block(F&& f) {
        for_each_small_block(f, std::make_index_sequence<kBlockTrees - 1>{});
    }
    template <class F, size_t... t>
    static void for_each_small_block(F& f, std::index_sequence<t...>) {
        (f.template operator()<t, (1U << kBlockShifts[t]), (uint64_t(1) << (1U << kBlockShifts[t])) - 1>(), ...);
    }

    // Bit t set iff w holds a free aligned block of tree t (block_starts for
    // kBlockShifts = {2, 3, 6}, unrolled: this runs on every word update).
    static constexpr unsigned block_kinds(uint64_t w) {
        uint64_t pairs = w & (w >> 1);
        uint64_t quads = pairs & (pairs >> 2);
        uint64_t octets = quads & (quads >> 4);
        return unsigned((quads & kAlignedStarts[2]) != 0) | (unsigned((octets & kAlignedStarts[3]) != 0) << 1) |
               (unsigned(w == ~uint64_t(0)) << 2);
    }
    static_assert(kBlockTrees == 3 && kBlockShifts[0] == 2 && kBlockShifts[1] == 3, "update block_kinds");

    [[gnu::always_inline]] void fill_word(size_t wi, uint64_t mask, bool free) {
        uint64_t old = m_free.word(wi);
        MM_DEBUG_ASSERT((old & mask) == (free ? 0 : mask));
        store(wi, old, free ? (old | mask) : (old & ~mask));
    }

    // Replaces m_free word wi (old -> value) and keeps the block trees in step.
    void store(size_t wi, uint64_t old, uint64_t value) {
        m_free.store_word(wi, value);
        unsigned now = block_kinds(value);
        unsigned changed = block_kinds(old) ^ now;
        for (size_t t = 0; changed != 0; ++t, changed >>= 1)
            if (changed & 1) m_blocks[t].assign_bit(wi, (now >> t) & 1);
    }

    // Runs this long always contain a free aligned block of tree t.
    template <size_t t>
    static constexpr size_t min_run_for() {
        return (size_t(2) << kBlockShifts[t]) - 1;
    }

    // The start of the first free aligned block of tree t at or after pos, or kNoBit.
    template <size_t t>
    [[nodiscard]] size_t find_block(size_t pos) const {
        size_t wi = pos >> 6;
        if (wi >= m_free.base_words()) return kNoBit;
        uint64_t here = block_starts(m_free.word(wi), kBlockShifts[t]) & low_mask_from(pos & 63);
        if (here != 0) return (wi << 6) | size_t(std::countr_zero(here));
        size_t next = m_blocks[t].find_next(wi + 1);
        if (next == kNoBit) return kNoBit;
        return (next << 6) | size_t(std::countr_zero(block_starts(m_free.word(next), kBlockShifts[t])));
    }

    // Candidates are free slots found through m_free's summaries; a candidate
    // run that hits an allocated slot z rules out every start up to z.
    [[nodiscard]] size_t find_run_by_slots(size_t lo, size_t hi, size_t n, size_t align, size_t phase) const {
        size_t pos = lo;
        for (;;) {
            size_t b = m_free.find_next(pos);
            if (b >= hi) return kNoBit;
            size_t s = align_up_phase(b, align, phase);
            if (s > hi - n) return kNoBit;
            if (n == 1 && s == b) return s;
            size_t z = find_first(s, n, false);
            if (z == kNoBit) return s;
            pos = z + 1;
        }
    }

    // A run of n >= 2B - 1 starting at or after pos contains a free aligned
    // B-block starting at or after pos. With q the first such block, the run
    // starts no earlier than q - n + 1 (else it would end before q and hold an
    // earlier block) nor at or before the last allocated slot below q; from
    // there, align and verify forward; a failure at z rules out starts up to z.
    template <size_t t>
    [[nodiscard]] size_t find_run_by_blocks(size_t lo, size_t hi, size_t n, size_t align, size_t phase) const {
        size_t pos = lo;
        for (;;) {
            size_t q = find_block<t>(pos);
            if (q >= hi) return kNoBit;  // also kNoBit
            size_t start = q >= n ? q - n + 1 : 0;
            if (start < pos) start = pos;
            if (start < q) {
                size_t z = find_last(start, q - start, false);
                if (z != kNoBit) start = z + 1;
            }
            size_t s = align_up_phase(start, align, phase);
            if (s > hi - n) return kNoBit;
            size_t z = find_first(s, n, false);
            if (z == kNoBit) return s;
            pos = z + 1;
        }
    }

    SummaryTree m_free;
    SummaryTree m_blocks[kBlockTrees];
    size_t m_free_count = 0;
};

// Aligns a caller's metadata span to uint64_t words; returns how many whole words it holds.
inline size_t metadata_words(std::span<std::byte> metadata, uint64_t** words) {
    auto addr = reinterpret_cast<uintptr_t>(metadata.data());
    size_t adjust = (alignof(uint64_t) - (addr & (alignof(uint64_t) - 1))) & (alignof(uint64_t) - 1);
    if (metadata.size() < adjust) {
        *words = nullptr;
        return 0;
    }
    *words = reinterpret_cast<uint64_t*>(metadata.data() + adjust);
    return (metadata.size() - adjust) / sizeof(uint64_t);
}

}  // namespace mm::bitmap
