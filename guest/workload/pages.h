// The page-granular workloads: frames (bitmap page allocator over the heap's
// pages), ids (ID allocator, one 8-byte tag per ID in the heap) and sparse
// (reserve a lot, touch little). See workload.h.
#pragma once

#include "guest/workload/common.h"
#include "mm/addr.h"
#include "mm/alloc/bitmap.h"
#include "mm/alloc/id_allocator.h"
#include "mm/std.h"

namespace pv::workload {
namespace detail {

// The workload's own address space (guest-virtual in the guest, host-virtual on
// the host): the page allocator only sees addresses of this type.
struct LocalTag {
    static constexpr const char* kName = "LVA";
};
using LocalAddr = mm::Addr<LocalTag>;
using FrameAlloc = mm::BitmapPageAllocator<LocalAddr>;

inline constexpr uint64_t kPageWordOffsets[] = {0, kPage - 8};  // the words of a page the pattern covers

inline void fill_page_words(uint64_t page, uint64_t key) {
    for (uint64_t off : kPageWordOffsets)
        *reinterpret_cast<volatile uint64_t*>(page + off) = pattern_word(key, page + off);
}
inline bool check_page_words(uint64_t page, uint64_t key) {
    bool ok = true;
    for (uint64_t off : kPageWordOffsets)
        ok &= *reinterpret_cast<const volatile uint64_t*>(page + off) == pattern_word(key, page + off);
    return ok;
}

// frames: random page runs (1..max_block pages, random power-of-two alignment,
// one in five at a random fixed address) over the heap's pages; every page of a
// run gets its first and last word written and verified.
template <class Env>
class FramesRun {
public:
    FramesRun(const Params& p, Env& env, Result& r) : m_p(p), m_env(env), m_r(r), m_rng(mix64(p.seed ^ 0xF7A3E5)) {}

    void run() {
        Mappings<Env> maps(m_env);
        if (!setup(maps)) return;
        op_loop(
            m_p, m_env, m_r, [&](uint64_t) { step(); }, [&] { return corrupt(); }, [&] { check(); });
        while (!m_table.empty()) free_one(m_table.size() - 1);
        check();
        if (m_alloc->used_pages() != 0) ++m_r.invariant_failures;
        m_r.pages_touched = m_pages.count();
        m_r.add_stat("pages", m_alloc->total_pages());
        m_alloc->~FrameAlloc();
    }

private:
    bool setup(Mappings<Env>& maps) {
        const uint64_t n = m_p.heap_bytes / kPage;
        const uint64_t cap = n < kMaxLiveBlocks ? n : kMaxLiveBlocks;
        const uint64_t bitmap = FrameAlloc::metadata_bytes(n, 1);
        const uint64_t meta_bytes = Arena::need(sizeof(FrameAlloc)) + Arena::need(bitmap) +
                                    Arena::need(cap * sizeof(Block)) +
                                    Arena::need(PageSet::words_for(m_p.heap_bytes) * 8);
        void* meta = maps.map(meta_bytes, true, m_r);
        void* heap = meta == nullptr ? nullptr : maps.map_heap(m_p, m_p.heap_bytes, m_r);
        if (heap == nullptr) return false;
        Arena arena(meta, round_up_pages(meta_bytes));
        m_alloc = ::new (arena.take(sizeof(FrameAlloc))) FrameAlloc();
        std::span<std::byte> md(static_cast<std::byte*>(arena.take(bitmap)), bitmap);
        m_table = BlockTable(static_cast<Block*>(arena.take(cap * sizeof(Block))), cap);
        m_base = reinterpret_cast<uintptr_t>(heap);
        m_pages =
            PageSet(static_cast<uint64_t*>(arena.take(PageSet::words_for(m_p.heap_bytes) * 8)), m_base, m_p.heap_bytes);
        if (!m_alloc->init(md, 1) || !m_alloc->add_memory(LocalAddr(m_base), m_p.heap_bytes)) {
            ++m_r.invariant_failures;
            return false;
        }
        return true;
    }

    void step() {
        if (m_rng.one_in(1024)) m_grow = !m_grow;
        bool alloc = m_table.empty() || (!m_table.full() && m_rng.below(4) < (m_grow ? 3u : 1u));
        if (alloc)
            alloc_one();
        else
            free_one(m_rng.below(m_table.size()));
    }

    void alloc_one() {
        const uint64_t n = 1 + m_rng.below(m_p.max_block);
        const uint64_t align = kPage << (m_rng.one_in(2) ? 0 : m_rng.below(log2_floor(m_p.max_block) + 1));
        mm::Result<LocalAddr> r = mm::err(mm::Error::NoMemory);
        if (m_rng.one_in(5)) {
            const uint64_t slots = m_p.heap_bytes / align;
            const uint64_t at = (m_base + align - 1) / align * align + m_rng.below(slots) * align;
            r = m_alloc->alloc_pages_at(LocalAddr(at), n, align);
            if (!r && r.error() == mm::Error::OutOfRange) {  // ran past the heap's end: a refusal, not an error
                ++m_r.failures;
                return;
            }
        } else {
            r = m_alloc->alloc_pages(n, align);
        }
        if (!r) {
            if (r.error() == mm::Error::NoMemory)
                ++m_r.failures;
            else
                ++m_r.invariant_failures;
            return;
        }
        const uint64_t a = r->value();
        if (a % align != 0 || a < m_base || a + n * kPage > m_base + m_p.heap_bytes) ++m_r.invariant_failures;
        const uint64_t key = pattern_key(a, n, m_p.seed);
        for (uint64_t i = 0; i < n; ++i) fill_page_words(a + i * kPage, key);
        m_pages.mark(a, n * kPage);
        m_table.push(Block{a, n, 0, 0});
        m_tally.add(m_r, n * kPage, a - m_base);
    }

    void free_one(uint64_t i) {
        const Block b = m_table.take(i);
        const uint64_t key = pattern_key(b.addr, b.size, m_p.seed);
        bool ok = true;
        for (uint64_t pg = 0; pg < b.size; ++pg) ok &= check_page_words(b.addr + pg * kPage, key);
        if (!ok) ++m_r.verify_errors;
        if (!m_alloc->is_allocated(LocalAddr(b.addr)) || !m_alloc->dealloc_pages(LocalAddr(b.addr), b.size))
            ++m_r.invariant_failures;
        m_tally.remove(m_r, b.size * kPage);
    }

    bool corrupt() {
        if (m_table.empty()) return false;
        const Block& b = m_table[m_rng.below(m_table.size())];
        corrupt_byte(b.addr + m_rng.below(b.size) * kPage, 8, m_rng);
        return true;
    }

    void check() {
        ++m_r.invariant_checks;
        if (!m_alloc->check_invariants() || m_alloc->used_pages() * kPage != m_tally.live_bytes)
            ++m_r.invariant_failures;
    }

    const Params& m_p;
    Env& m_env;
    Result& m_r;
    Rng m_rng;
    FrameAlloc* m_alloc = nullptr;
    BlockTable m_table;
    PageSet m_pages;
    Tally m_tally;
    uint64_t m_base = 0;
    bool m_grow = true;
};

template <class Env>
Result run_frames(const Params& p, Env& env) {
    Result r;
    FramesRun<Env>(p, env, r).run();
    return r;
}

// ids: runs of 1..max_block IDs with random power-of-two alignments, and one
// request in six for a random fixed ID, over heap_bytes / 8 IDs; the heap holds
// one 8-byte tag per ID, written on allocation and verified on free.
template <class Env>
class IdsRun {
public:
    IdsRun(const Params& p, Env& env, Result& r) : m_p(p), m_env(env), m_r(r), m_rng(mix64(p.seed ^ 0x1D5A11)) {}

    void run() {
        Mappings<Env> maps(m_env);
        if (!setup(maps)) return;
        op_loop(
            m_p, m_env, m_r, [&](uint64_t) { step(); }, [&] { return corrupt(); }, [&] { check(); });
        while (!m_table.empty()) free_one(m_table.size() - 1);
        check();
        if (m_ids.used() != 0) ++m_r.invariant_failures;
        m_r.pages_touched = m_pages.count();
        m_r.add_stat("ids", m_ids.size());
    }

private:
    bool setup(Mappings<Env>& maps) {
        m_count = m_p.heap_bytes / 8;
        const uint64_t md_bytes = mm::BitmapIdAllocator::metadata_bytes(m_count);
        const uint64_t meta_bytes = Arena::need(md_bytes) + Arena::need(kMaxLiveBlocks * sizeof(Block)) +
                                    Arena::need(PageSet::words_for(m_p.heap_bytes) * 8);
        void* meta = maps.map(meta_bytes, true, m_r);
        void* heap = meta == nullptr ? nullptr : maps.map_heap(m_p, m_p.heap_bytes, m_r);
        if (heap == nullptr) return false;
        Arena arena(meta, round_up_pages(meta_bytes));
        std::span<std::byte> md(static_cast<std::byte*>(arena.take(md_bytes)), md_bytes);
        m_table = BlockTable(static_cast<Block*>(arena.take(kMaxLiveBlocks * sizeof(Block))), kMaxLiveBlocks);
        m_tags = static_cast<uint64_t*>(heap);
        m_pages = PageSet(static_cast<uint64_t*>(arena.take(PageSet::words_for(m_p.heap_bytes) * 8)),
                          reinterpret_cast<uintptr_t>(heap), m_p.heap_bytes);
        if (!m_ids.init(md, m_count)) {
            ++m_r.invariant_failures;
            return false;
        }
        return true;
    }

    void step() {
        if (m_rng.one_in(1024)) m_grow = !m_grow;
        bool alloc = m_table.empty() || (!m_table.full() && m_rng.below(4) < (m_grow ? 3u : 1u));
        if (alloc)
            alloc_one();
        else
            free_one(m_rng.below(m_table.size()));
    }

    void alloc_one() {
        uint64_t first = 0;
        uint64_t n = 1;
        if (m_rng.one_in(6)) {
            first = m_rng.below(m_count);
            if (mm::Status s = m_ids.alloc_fixed_id(first); !s) {
                count_refusal(s.error());
                return;
            }
        } else {
            n = pick_size(m_rng, m_p.max_block);
            const uint64_t align = uint64_t(1) << m_rng.below(7);
            mm::Result<uint64_t> r = m_ids.alloc_id(n, align);
            if (!r) {
                count_refusal(r.error());
                return;
            }
            first = *r;
            if (first % align != 0 || first + n > m_count) ++m_r.invariant_failures;
        }
        const uint64_t key = pattern_key(first, n, m_p.seed);
        for (uint64_t i = 0; i < n; ++i) m_tags[first + i] = pattern_word(key, first + i);
        m_pages.mark(reinterpret_cast<uintptr_t>(m_tags + first), n * 8);
        m_table.push(Block{first, n, 0, 0});
        m_tally.add(m_r, n, first);
    }

    void count_refusal(mm::Error e) {
        if (e == mm::Error::NoMemory)
            ++m_r.failures;
        else
            ++m_r.invariant_failures;
    }

    void free_one(uint64_t i) {
        const Block b = m_table.take(i);
        const uint64_t key = pattern_key(b.addr, b.size, m_p.seed);
        bool ok = true;
        for (uint64_t j = 0; j < b.size; ++j) ok &= m_tags[b.addr + j] == pattern_word(key, b.addr + j);
        if (!ok) ++m_r.verify_errors;
        if (!m_ids.dealloc_id(b.addr, b.size)) ++m_r.invariant_failures;
        m_tally.remove(m_r, b.size);
    }

    bool corrupt() {
        if (m_table.empty()) return false;
        const Block& b = m_table[m_rng.below(m_table.size())];
        corrupt_byte(reinterpret_cast<uintptr_t>(m_tags + b.addr + m_rng.below(b.size)), 8, m_rng);
        return true;
    }

    void check() {
        ++m_r.invariant_checks;
        if (!m_ids.check_invariants() || m_ids.used() != m_tally.live_bytes) ++m_r.invariant_failures;
    }

    const Params& m_p;
    Env& m_env;
    Result& m_r;
    Rng m_rng;
    mm::BitmapIdAllocator m_ids;
    uint64_t m_count = 0;
    uint64_t* m_tags = nullptr;
    BlockTable m_table;
    PageSet m_pages;
    Tally m_tally;
    bool m_grow = true;
};

template <class Env>
Result run_ids(const Params& p, Env& env) {
    Result r;
    IdsRun<Env>(p, env, r).run();
    return r;
}

// sparse: heap_bytes mapped, only a keyed subset of 1/64 of its pages (at
// least one) ever touched: each op picks a page of the subset; a first touch
// writes 8 pattern words across the page, a later one verifies them. At the end
// every touched page is verified. pages_touched is exactly the pages written.
template <class Env>
class SparseRun {
public:
    static constexpr uint64_t kSubsetShift = 6;
    static constexpr uint64_t kWordStride = kPage / 8;

    SparseRun(const Params& p, Env& env, Result& r) : m_p(p), m_env(env), m_r(r), m_rng(mix64(p.seed ^ 0x5BA25E)) {}

    void run() {
        Mappings<Env> maps(m_env);
        if (!setup(maps)) return;
        op_loop(
            m_p, m_env, m_r, [&](uint64_t) { touch(page_of(m_rng.below(m_subset))); }, [&] { return corrupt(); },
            [&] { check(); });
        for (uint64_t j = 0; j < m_subset; ++j) {
            const uint64_t pg = page_of(j);
            if (m_pages.contains_page(pg) && !verify(pg)) ++m_r.verify_errors;
        }
        check();
        m_r.pages_touched = m_pages.count();
        m_r.add_stat("subset", m_subset);
    }

private:
    bool setup(Mappings<Env>& maps) {
        m_pages_total = m_p.heap_bytes / kPage;
        m_subset = m_pages_total >> kSubsetShift;
        if (m_subset == 0) m_subset = 1;
        m_stride = coprime(1 + m_rng.below(m_pages_total), m_pages_total);
        m_offset = m_rng.below(m_pages_total);
        const uint64_t words = PageSet::words_for(m_p.heap_bytes);
        void* meta = maps.map(words * 8, true, m_r);
        void* heap = meta == nullptr ? nullptr : maps.map_heap(m_p, m_p.heap_bytes, m_r);
        if (heap == nullptr) return false;
        m_base = reinterpret_cast<uintptr_t>(heap);
        m_pages = PageSet(static_cast<uint64_t*>(meta), m_base, m_p.heap_bytes);
        return true;
    }

    static constexpr uint64_t gcd(uint64_t a, uint64_t b) {
        while (b != 0) {
            const uint64_t t = a % b;
            a = b;
            b = t;
        }
        return a;
    }
    // The first value >= s coprime with n (1 always is).
    static constexpr uint64_t coprime(uint64_t s, uint64_t n) {
        while (s > 1 && gcd(s, n) != 1) --s;
        return s;
    }
    // Subset member j -> a page index; distinct for distinct j < n (stride coprime with n).
    [[nodiscard]] uint64_t page_of(uint64_t j) const {
        return (m_offset + (j % m_pages_total) * m_stride % m_pages_total) % m_pages_total;
    }
    [[nodiscard]] uint64_t key() const { return pattern_key(m_base, m_p.heap_bytes, m_p.seed); }

    void touch(uint64_t pg) {
        const uint64_t a = m_base + pg * kPage;
        if (m_pages.contains_page(pg)) {
            if (!verify(pg)) ++m_r.verify_errors;
            return;
        }
        for (uint64_t w = 0; w < 8; ++w)
            *reinterpret_cast<volatile uint64_t*>(a + w * kWordStride) = pattern_word(key(), a + w * kWordStride);
        m_pages.mark(a, kPage);
        m_tally.add(m_r, kPage, pg);
    }

    [[nodiscard]] bool verify(uint64_t pg) const {
        const uint64_t a = m_base + pg * kPage;
        bool ok = true;
        for (uint64_t w = 0; w < 8; ++w)
            ok &= *reinterpret_cast<const volatile uint64_t*>(a + w * kWordStride) ==
                  pattern_word(key(), a + w * kWordStride);
        return ok;
    }

    bool corrupt() {
        if (m_pages.count() == 0) return false;
        for (uint64_t j = m_rng.below(m_subset), n = 0; n < m_subset; ++n, j = (j + 1) % m_subset) {
            if (!m_pages.contains_page(page_of(j))) continue;
            corrupt_byte(m_base + page_of(j) * kPage + m_rng.below(8) * kWordStride, 8, m_rng);
            return true;
        }
        return false;
    }

    // The workload's own bookkeeping: the bitmap counts what was written, never more than the subset.
    void check() {
        ++m_r.invariant_checks;
        if (m_pages.count() != m_tally.live_blocks || m_pages.count() > m_subset) ++m_r.invariant_failures;
    }

    const Params& m_p;
    Env& m_env;
    Result& m_r;
    Rng m_rng;
    uint64_t m_pages_total = 0;
    uint64_t m_subset = 0;
    uint64_t m_stride = 1;
    uint64_t m_offset = 0;
    uint64_t m_base = 0;
    PageSet m_pages;
    Tally m_tally;
};

template <class Env>
Result run_sparse(const Params& p, Env& env) {
    Result r;
    SparseRun<Env>(p, env, r).run();
    return r;
}

}  // namespace detail
}  // namespace pv::workload
