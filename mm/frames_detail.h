// Building blocks of mm::FrameAllocator (mm/frames.h), kept apart so the
// allocator itself reads as policy: relaxed atomics, a lock guard, the
// metadata carver, the "in guest use" bitmap and the frame range table.
//
// Internal (namespace mm::frames_detail): these trust their caller, which
// validates every input first.
#pragma once

#include "mm/addr.h"
#include "mm/result.h"
#include "mm/std.h"

namespace mm::frames_detail {

// <atomic> is outside the freestanding allow-list of mm/std.h, so the few
// atomic accesses use the compiler builtins (inlined, lock-free for 8 bytes on x86-64).
template <class T>
inline T load_relaxed(const T& x) {
    return __atomic_load_n(&x, __ATOMIC_RELAXED);
}
template <class T>
inline void store_relaxed(T& x, T v) {
    __atomic_store_n(&x, v, __ATOMIC_RELAXED);
}
template <class T>
inline void add_relaxed(T& x, T v) {
    (void)__atomic_fetch_add(&x, v, __ATOMIC_RELAXED);
}

// std::lock_guard lives in <mutex>, outside the allow-list.
template <class Lock>
class Guard {
public:
    explicit Guard(Lock& lock) : m_lock(lock) { m_lock.lock(); }
    ~Guard() { m_lock.unlock(); }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

private:
    Lock& m_lock;
};

// Worst-case bytes of one carved piece: its size plus alignment padding.
constexpr size_t piece_bytes(size_t bytes, size_t align) { return bytes + align - 1; }

// Cuts aligned pieces off the front of a metadata span. Each take() consumes
// at most piece_bytes(size, align), so a span of the summed piece_bytes always fits.
class Carver {
public:
    explicit Carver(std::span<std::byte> span) : m_next(span.data()), m_left(span.size()) {}

    // nullptr if the piece does not fit.
    std::byte* take(size_t bytes, size_t align) {
        size_t pad = (align - reinterpret_cast<uintptr_t>(m_next) % align) % align;
        if (pad > m_left || bytes > m_left - pad) return nullptr;
        std::byte* p = m_next + pad;
        m_next = p + bytes;
        m_left -= pad + bytes;
        return p;
    }

private:
    std::byte* m_next;
    size_t m_left;
};

constexpr size_t words_for_bits(uint64_t bits) { return size_t((bits + 63) / 64); }

// Bits [b, b + n) of a bitmap shared between CPUs, changed atomically so that
// of two racing updates of one bit exactly one succeeds.
//   set_run    false (and no change) if any bit was already set
//   clear_run  false (and no change) if any bit was already clear
// A failed run restores the bits it changed, so other bits of the same words,
// which other CPUs may change meanwhile, are never disturbed.
inline uint64_t run_mask(uint64_t b, uint64_t end, uint64_t wi) {
    uint64_t lo = wi * 64 > b ? 0 : b - wi * 64;
    uint64_t hi = end - wi * 64 >= 64 ? 64 : end - wi * 64;  // exclusive, > lo
    uint64_t ones = hi - lo == 64 ? ~uint64_t(0) : (uint64_t(1) << (hi - lo)) - 1;
    return ones << lo;
}

inline bool update_run(uint64_t* words, uint64_t b, uint64_t n, bool set) {
    uint64_t end = b + n;
    for (uint64_t wi = b / 64; wi * 64 < end; ++wi) {
        uint64_t mask = run_mask(b, end, wi);
        uint64_t old = set ? __atomic_fetch_or(&words[wi], mask, __ATOMIC_RELAXED)
                           : __atomic_fetch_and(&words[wi], ~mask, __ATOMIC_RELAXED);
        uint64_t expected = set ? 0 : mask;
        if ((old & mask) == expected) continue;
        // Undo: this word's bits we changed, then every earlier word of the run.
        uint64_t changed = set ? mask & ~old : mask & old;
        for (uint64_t wj = b / 64;; ++wj) {
            uint64_t m = wj == wi ? changed : run_mask(b, end, wj);
            if (set)
                (void)__atomic_fetch_and(&words[wj], ~m, __ATOMIC_RELAXED);
            else
                (void)__atomic_fetch_or(&words[wj], m, __ATOMIC_RELAXED);
            if (wj == wi) break;
        }
        return false;
    }
    return true;
}
inline bool set_run(uint64_t* words, uint64_t b, uint64_t n) { return update_run(words, b, n, true); }
inline bool clear_run(uint64_t* words, uint64_t b, uint64_t n) { return update_run(words, b, n, false); }

// Single-bit forms for the fast paths (one `lock bts`/`lock btr`).
inline bool set_bit(uint64_t* words, uint64_t b) {
    uint64_t m = uint64_t(1) << (b % 64);
    return (__atomic_fetch_or(&words[b / 64], m, __ATOMIC_RELAXED) & m) == 0;
}
inline bool clear_bit(uint64_t* words, uint64_t b) {
    uint64_t m = uint64_t(1) << (b % 64);
    return (__atomic_fetch_and(&words[b / 64], ~m, __ATOMIC_RELAXED) & m) != 0;
}

inline bool test_bit(const uint64_t* words, uint64_t b) {
    return (__atomic_load_n(&words[b / 64], __ATOMIC_RELAXED) >> (b % 64)) & 1;
}

// One range of guest frames owned by a node: frames [first, first + count),
// whose "in use" bits start at bit `bit` of the node's bitmap.
struct RangeEntry {
    uint64_t first = 0;
    uint64_t count = 0;
    uint64_t bit = 0;
    uint32_t node = 0;

    [[nodiscard]] bool contains(uint64_t frame) const { return frame - first < count; }
    [[nodiscard]] uint64_t last() const { return first + (count - 1); }
};

// The ranges of all nodes, sorted by first frame and disjoint. Filled during
// setup (add_range), then read-only, so lookups need no lock.
class RangeTable {
public:
    void bind(RangeEntry* entries, size_t capacity) {
        m_entries = entries;
        m_capacity = capacity;
        m_count = 0;
    }

    // The range holding frame, or nullptr.
    [[nodiscard]] const RangeEntry* find(uint64_t frame) const {
        size_t lo = 0;
        size_t hi = m_count;
        while (lo < hi) {  // first entry starting above frame
            size_t mid = lo + (hi - lo) / 2;
            if (m_entries[mid].first <= frame)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == 0 || !m_entries[lo - 1].contains(frame)) return nullptr;
        return &m_entries[lo - 1];
    }

    // MemoryOverlap if e overlaps a range, NoMemory if the table is full.
    Status insert(const RangeEntry& e) {
        size_t pos = 0;
        while (pos < m_count && m_entries[pos].first < e.first) ++pos;
        if (pos > 0 && m_entries[pos - 1].last() >= e.first) return err(Error::MemoryOverlap);
        if (pos < m_count && m_entries[pos].first <= e.last()) return err(Error::MemoryOverlap);
        if (m_count == m_capacity) return err(Error::NoMemory);
        for (size_t i = m_count; i > pos; --i) m_entries[i] = m_entries[i - 1];
        m_entries[pos] = e;
        ++m_count;
        return ok();
    }

    // Calls f(entry, first_frame, count) for the pieces of frames [first, first + n)
    // when they lie in ranges of ONE node that follow each other without a gap;
    // false (after no call, or after the calls f accepted) otherwise, or when f returns false.
    template <class F>
    bool for_each_piece(uint64_t first, uint64_t n, F&& f) const {
        const RangeEntry* e = find(first);
        if (e == nullptr) return false;
        uint32_t node = e->node;
        for (;;) {
            uint64_t count = n < e->last() - first + 1 ? n : e->last() - first + 1;
            if (!f(*e, first, count)) return false;
            n -= count;
            if (n == 0) return true;
            first += count;
            ++e;
            if (e == m_entries + m_count || e->first != first || e->node != node) return false;
        }
    }

    // True iff frames [first, first + n) lie in ranges of one node without a gap.
    [[nodiscard]] bool covers(uint64_t first, uint64_t n) const {
        return for_each_piece(first, n, [](const RangeEntry&, uint64_t, uint64_t) { return true; });
    }

    [[nodiscard]] size_t size() const { return m_count; }
    [[nodiscard]] const RangeEntry& operator[](size_t i) const { return m_entries[i]; }

private:
    RangeEntry* m_entries = nullptr;
    size_t m_capacity = 0;
    size_t m_count = 0;
};

}  // namespace mm::frames_detail
