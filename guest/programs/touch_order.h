// The index math of the guest's `touch` workload (guest/programs/touch.cpp):
// which pages it touches, in which order, which vCPU takes which of them, and
// what it writes there. Freestanding and header-only so that the host unit
// test (tests/mm/guest_touch_order_test.cpp) runs the very same code and a
// host test can recompute the guest's patterns and checksums.
//
//  - PageOrder: the order the n selected pages are visited in (sequential,
//    keyed random permutation, descending, strided), with O(1) memory.
//  - slice_of: vCPU i's contiguous share of the ordered sequence.
//  - PageMap: selected RAM ranges concatenated, page index -> GPA.
//  - ram_map_error: validation of BootInfo's RAM map (from the VMM).
#pragma once

#include "mm/std.h"
#include "vmm/abi/hypercall.h"
#include "vmm/abi/layout.h"

namespace pv::guest::touch {

using mm::uint32_t;
using mm::uint64_t;

inline constexpr uint64_t kPageSize = layout::kPage;
inline constexpr uint64_t kWordsPerPage = kPageSize / sizeof(uint64_t);
// Identity-mapped RAM must stay below the top of the canonical user half.
inline constexpr uint64_t kUserAddrLimit = uint64_t(1) << 47;

constexpr uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

constexpr uint64_t gcd(uint64_t a, uint64_t b) {
    while (b != 0) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

// (a * b) mod m without 128-bit arithmetic (no libgcc call); a, b < m.
constexpr uint64_t mulmod(uint64_t a, uint64_t b, uint64_t m) {
    auto addmod = [m](uint64_t x, uint64_t y) { return x >= m - y ? x - (m - y) : x + y; };
    uint64_t r = 0;
    for (; b != 0; b >>= 1) {
        if ((b & 1) != 0) r = addmod(r, a);
        a = addmod(a, a);
    }
    return r;
}

// The stride actually used for n pages: stride mod n, moved up to the next
// value coprime with n, so that i*stride mod n visits every index once.
// Result in [1, n) for n >= 2; 0 for n <= 1 (every stride visits index 0).
constexpr uint64_t coprime_stride(uint64_t stride, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t s = stride % n;
    if (s == 0) s = 1;
    while (gcd(s, n) != 1) ++s;  // ends at n-1 at the latest: gcd(n-1, n) == 1
    return s;
}

// A contiguous part of the positions [0, n).
struct Slice {
    uint64_t begin;
    uint64_t count;
};

// Part `index` of `parts` near-equal contiguous parts of [0, n): the first
// n % parts parts get one more. parts >= 1, index < parts.
constexpr Slice slice_of(uint64_t n, uint32_t parts, uint32_t index) {
    const uint64_t q = n / parts;
    const uint64_t r = n % parts;
    const uint64_t begin = index * q + (index < r ? index : r);
    return Slice{begin, q + (index < r ? 1 : 0)};
}

// A keyed bijection of [0, n) from a seed, O(1) memory: a few rounds of
// xor-key / multiply-by-odd / xorshift over the smallest power-of-two domain
// holding n (each step is a bijection of k-bit values), and cycle-walking to
// come back into [0, n) (the domain is < 2n, so under two steps on average).
class Permutation {
public:
    constexpr Permutation() = default;
    constexpr Permutation(uint64_t n, uint64_t seed) : m_n(n) {
        const int bits = n <= 1 ? 0 : std::bit_width(n - 1);
        m_mask = bits == 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1;
        m_shift = bits / 2 + 1;
        for (int r = 0; r < kRounds; ++r) {
            m_key[r] = splitmix64(seed + 2 * uint64_t(r)) & m_mask;
            m_mul[r] = splitmix64(seed + 2 * uint64_t(r) + 1) | 1;
        }
    }
    // The image of i; i < size().
    constexpr uint64_t operator()(uint64_t i) const {
        MM_DEBUG_ASSERT(i < m_n);
        uint64_t x = i;
        do {
            x = step(x);
        } while (x >= m_n);
        return x;
    }
    [[nodiscard]] constexpr uint64_t size() const { return m_n; }

private:
    static constexpr int kRounds = 4;

    constexpr uint64_t step(uint64_t x) const {
        for (int r = 0; r < kRounds; ++r) {
            x = ((x ^ m_key[r]) * m_mul[r]) & m_mask;
            x ^= x >> m_shift;
        }
        return x;
    }

    uint64_t m_n = 0;
    uint64_t m_mask = 0;
    int m_shift = 1;
    uint64_t m_key[kRounds]{};
    uint64_t m_mul[kRounds]{};
};

// params[3] of `touch`.
enum class Order : uint64_t { Sequential = 0, Random = 1, Descending = 2, Strided = 3 };
inline constexpr uint64_t kOrderCount = 4;
inline constexpr uint64_t kDefaultStride = 512;  // pages: every touch in another 2 MiB region

constexpr const char* order_name(Order o) {
    switch (o) {
        case Order::Sequential: return "sequential";
        case Order::Random: return "random";
        case Order::Descending: return "descending";
        case Order::Strided: return "strided";
    }
    return "?";
}

// The order n page indices are visited in: position p (0 <= p < n) visits
// index at(p), and every index is visited exactly once. n < 2^63.
class PageOrder {
public:
    constexpr PageOrder() = default;
    // stride: for Order::Strided, 0 = kDefaultStride; fixed up by coprime_stride.
    constexpr PageOrder(Order order, uint64_t n, uint64_t seed, uint64_t stride)
        : m_order(order),
          m_n(n),
          m_stride(coprime_stride(stride == 0 ? kDefaultStride : stride, n)),
          m_perm(order == Order::Random ? Permutation(n, seed) : Permutation()) {
        MM_ASSERT(n < (uint64_t(1) << 63));
    }

    constexpr uint64_t at(uint64_t pos) const {
        switch (m_order) {
            case Order::Sequential: return pos;
            case Order::Random: return m_perm(pos);
            case Order::Descending: return m_n - 1 - pos;
            case Order::Strided: return m_n <= 1 ? 0 : mulmod(pos, m_stride, m_n);
        }
        return pos;
    }

    // Calls fn(index) for the positions [s.begin, s.begin + s.count) in
    // order, as at() would, with a loop specialised per order (hot path).
    template <class Fn>
    constexpr void for_each(Slice s, Fn&& fn) const {
        MM_ASSERT(s.begin <= m_n && s.count <= m_n - s.begin);
        if (s.count == 0) return;
        const uint64_t end = s.begin + s.count;
        switch (m_order) {
            case Order::Sequential:
                for (uint64_t i = s.begin; i < end; ++i) fn(i);
                return;
            case Order::Random:
                for (uint64_t i = s.begin; i < end; ++i) fn(m_perm(i));
                return;
            case Order::Descending:
                for (uint64_t i = s.begin; i < end; ++i) fn(m_n - 1 - i);
                return;
            case Order::Strided: for_each_strided(s, fn); return;
        }
    }

    [[nodiscard]] constexpr Order order() const { return m_order; }
    [[nodiscard]] constexpr uint64_t size() const { return m_n; }
    // The stride in use (Strided; 0 when size() <= 1).
    [[nodiscard]] constexpr uint64_t stride() const { return m_stride; }

private:
    template <class Fn>
    constexpr void for_each_strided(Slice s, Fn& fn) const {
        if (m_n == 1) {
            fn(uint64_t(0));
            return;
        }
        uint64_t idx = mulmod(s.begin, m_stride, m_n);
        for (uint64_t i = 0; i < s.count; ++i) {
            fn(idx);
            idx += m_stride;  // both < n < 2^63: no overflow
            if (idx >= m_n) idx -= m_n;
        }
    }

    Order m_order = Order::Sequential;
    uint64_t m_n = 0;
    uint64_t m_stride = 0;
    Permutation m_perm;
};

// The value `touch` writes to word `word` (0..kWordsPerPage-1) of the page at
// page_gpa: pattern_base(page_gpa, seed) + word * kPatternStep. Without
// "write whole page" it writes only word pattern_word_index(page_gpa).
inline constexpr uint64_t kPatternStep = 0x9E3779B97F4A7C15ULL;
constexpr uint64_t pattern_base(uint64_t page_gpa, uint64_t seed) { return splitmix64(page_gpa ^ seed); }
constexpr uint64_t pattern_value(uint64_t page_gpa, uint64_t word, uint64_t seed) {
    return pattern_base(page_gpa, seed) + word * kPatternStep;
}
constexpr uint64_t pattern_word_index(uint64_t page_gpa) { return (page_gpa / kPageSize) % kWordsPerPage; }

// What the read-only pass adds to its checksum (a wrapping sum, so the total
// does not depend on the order or the vCPU count) for a word read at word_gpa.
constexpr uint64_t checksum_term(uint64_t word_gpa, uint64_t value) { return splitmix64(word_gpa ^ value); }

// Selected RAM ranges laid end to end: page index i of the concatenation is
// at gpa_of(i). Invariant: segments are in insertion order, each non-empty,
// m_segs[k].first == sum of the page counts before it, total() == their sum.
class PageMap {
public:
    // Appends `pages` pages starting at gpa; false when full or pages == 0.
    constexpr bool add(uint64_t gpa, uint64_t pages) {
        if (m_count == abi::kMaxRamRanges || pages == 0) return false;
        m_segs[m_count++] = Segment{m_total, pages, gpa};
        m_total += pages;
        return true;
    }
    // GPA of page index i < total(). `hint` caches the segment of the last
    // lookup (start it at 0), so runs inside one segment cost one compare.
    constexpr uint64_t gpa_of(uint64_t i, uint32_t& hint) const {
        MM_DEBUG_ASSERT(i < m_total && hint < m_count);
        const Segment* s = &m_segs[hint];
        if (i - s->first >= s->pages) {  // unsigned: also catches i < first
            hint = find(i);
            s = &m_segs[hint];
        }
        return s->gpa + (i - s->first) * kPageSize;
    }
    [[nodiscard]] constexpr uint64_t total() const { return m_total; }
    [[nodiscard]] constexpr uint32_t segments() const { return m_count; }

    [[nodiscard]] constexpr bool check_invariants() const {
        uint64_t first = 0;
        for (uint32_t k = 0; k < m_count; ++k) {
            if (m_segs[k].first != first || m_segs[k].pages == 0) return false;
            first += m_segs[k].pages;
        }
        return first == m_total;
    }

private:
    struct Segment {
        uint64_t first;  // page index of its first page
        uint64_t pages;
        uint64_t gpa;
    };

    // The last segment whose first index is <= i (binary search).
    constexpr uint32_t find(uint64_t i) const {
        uint32_t lo = 0;
        uint32_t hi = m_count;  // answer in [lo, hi)
        while (hi - lo > 1) {
            const uint32_t mid = lo + (hi - lo) / 2;
            if (m_segs[mid].first <= i)
                lo = mid;
            else
                hi = mid;
        }
        return lo;
    }

    Segment m_segs[abi::kMaxRamRanges]{};
    uint32_t m_count = 0;
    uint64_t m_total = 0;
};

// Why BootInfo's RAM map is unusable, or nullptr when it is well formed:
// ram_count <= kMaxRamRanges, node_count >= 1 (if any range), and each range non-empty, page
// aligned, at or above kFreeRamStart, below kUserAddrLimit, of a known kind,
// on a node < node_count, and above the previous one (sorted, disjoint).
// *bad_index receives the offending range's index (or ram_count).
constexpr const char* ram_map_error(const abi::BootInfo& boot, uint32_t* bad_index) {
    *bad_index = boot.ram_count;
    if (boot.ram_count > abi::kMaxRamRanges) return "ram_count exceeds kMaxRamRanges";
    if (boot.ram_count != 0 && boot.node_count == 0) return "node_count is 0";
    uint64_t prev_end = layout::kFreeRamStart;
    for (uint32_t i = 0; i < boot.ram_count; ++i) {
        const abi::RamRange& r = boot.ram[i];
        *bad_index = i;
        if (r.size == 0) return "empty range";
        if (r.gpa % kPageSize != 0 || r.size % kPageSize != 0) return "range not page aligned";
        if (r.gpa < prev_end) return i == 0 ? "range below kFreeRamStart" : "ranges not sorted or overlapping";
        if (r.gpa >= kUserAddrLimit || r.size > kUserAddrLimit - r.gpa) return "range beyond the user address space";
        if (r.kind != abi::RamKind::Eager && r.kind != abi::RamKind::Demand && r.kind != abi::RamKind::ReadOnly)
            return "unknown range kind";
        if (r.node >= boot.node_count) return "range node >= node_count";
        prev_end = r.gpa + r.size;
    }
    *bad_index = boot.ram_count;
    return nullptr;
}

constexpr const char* ram_kind_name(abi::RamKind k) {
    switch (k) {
        case abi::RamKind::Eager: return "eager";
        case abi::RamKind::Demand: return "demand";
        case abi::RamKind::ReadOnly: return "read-only";
    }
    return "?";
}

}  // namespace pv::guest::touch
