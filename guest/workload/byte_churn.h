// Byte-allocator churn (slab-churn, buddy-churn, tlsf-churn) and the
// multi-vCPU workload (multi): random sizes and alignments, a random
// alloc/free mix in alternating grow and shrink phases. See workload.h.
#pragma once

#include "guest/workload/common.h"
#include "mm/alloc/buddy.h"
#include "mm/alloc/locked_heap.h"
#include "mm/alloc/slab_heap.h"
#include "mm/alloc/tlsf.h"
#include "mm/std.h"

namespace pv::workload {

// The state the vCPUs of one `multi` run share (Env::shared()). Value-initialise
// it before any vCPU starts; vCPU 0 sets the shared heap up and tears it down.
template <class Lock>
struct MultiShared {
    mm::LockedHeap<mm::SlabHeap<>, Lock> heap;
    uint64_t* page_words = nullptr;  // touched pages of the shared heap (atomic bit ors)
    uint64_t heap_base = 0;
    uint64_t heap_bytes = 0;
    uint32_t state = 0;  // kSharedPending / kSharedReady / kSharedFailed (atomic)
    uint32_t done = 0;   // vCPUs finished (atomic)
    Result results[32];
};

namespace detail {

enum : uint32_t { kSharedPending = 0, kSharedReady = 1, kSharedFailed = 2 };

inline uint32_t atomic_load(const uint32_t& v) { return __atomic_load_n(&v, __ATOMIC_ACQUIRE); }
inline void atomic_store(uint32_t& v, uint32_t x) { __atomic_store_n(&v, x, __ATOMIC_RELEASE); }

inline constexpr uint64_t kMaxLiveBlocks = uint64_t(1) << 16;
inline constexpr uint32_t kMaxAlignLog2 = 12;  // alignments 1 .. 4096

constexpr uint32_t log2_floor(uint64_t v) { return 63 - static_cast<uint32_t>(std::countl_zero(v | 1)); }

// Random size in [1, max]: a log-uniform size class, then uniform inside it,
// so small blocks dominate but every size up to max occurs.
inline uint64_t pick_size(Rng& rng, uint64_t max) {
    uint64_t cls = uint64_t(1) << rng.below(log2_floor(max) + 1);
    uint64_t s = 1 + rng.below(cls);
    return s > max ? max : s;
}
// log2 of a random alignment: mostly 8 or 16, sometimes anything up to 4096.
inline uint32_t pick_align(Rng& rng) {
    uint64_t r = rng.below(8);
    if (r < 3) return 3;
    if (r < 6) return 4;
    return static_cast<uint32_t>(rng.below(kMaxAlignLog2 + 1));
}

// One vCPU's churn over its own heap Own and optionally a Shared heap (multi).
// Either is anything with alloc/dealloc/check_invariants/used_bytes (an mm
// byte allocator or an mm::LockedHeap).
template <class Own, class Shared>
class Churn {
public:
    Churn(const Params& p, Result& r, Own& own, Shared* shared, BlockTable table, PageSet own_pages,
          PageSet shared_pages)
        : m_p(p),
          m_r(r),
          m_rng(mix64(p.seed ^ (uint64_t(p.vcpu) << 56) ^ 0xC4A11)),
          m_own(own),
          m_shared(shared),
          m_table(table),
          m_pages{own_pages, shared_pages},
          m_bases{own_pages.base(), shared_pages.base()} {}

    // The op loop (op_loop), then the drain and the final checks.
    template <class Env>
    void run(Env& env) {
        op_loop(
            m_p, env, m_r, [&](uint64_t) { step(); }, [&] { return corrupt(); }, [&] { check(); });
        drain();
        check();
        if (m_own.used_bytes() != 0) ++m_r.invariant_failures;  // everything freed: nothing may stay used
        m_r.pages_touched = m_pages[0].count() + m_pages[1].count();
        m_r.add_stat("used_peak", m_used_peak);
        m_r.add_stat("total", m_own.total_bytes());
    }

private:
    void step() {
        if (m_rng.one_in(2048)) m_grow = !m_grow;
        bool alloc = m_table.empty() || (!m_table.full() && m_rng.below(4) < (m_grow ? 3u : 1u));
        if (alloc)
            alloc_one();
        else
            free_one(m_rng.below(m_table.size()));
    }

    void alloc_one() {
        const uint64_t size = pick_size(m_rng, m_p.max_block);
        const uint32_t align = pick_align(m_rng);
        const uint32_t heap = (m_shared != nullptr && m_rng.one_in(4)) ? 1 : 0;
        mm::Result<void*> r =
            heap == 1 ? m_shared->alloc(size, size_t(1) << align) : m_own.alloc(size, size_t(1) << align);
        if (!r) {
            if (r.error() == mm::Error::NoMemory)
                ++m_r.failures;
            else
                ++m_r.invariant_failures;  // a valid request must succeed or be NoMemory
            return;
        }
        const uint64_t a = reinterpret_cast<uintptr_t>(*r);
        if ((a & ((uint64_t(1) << align) - 1)) != 0) ++m_r.invariant_failures;
        fill_pattern(a, size, pattern_key(a, size, m_p.seed));
        m_pages[heap].mark(a, size);
        m_table.push(Block{a, size, align, heap});
        m_tally.add(m_r, size, a - m_bases[heap]);
        if (heap == 0 && m_own.used_bytes() > m_used_peak) m_used_peak = m_own.used_bytes();
    }

    void free_one(uint64_t i) {
        const Block b = m_table.take(i);
        if (!check_pattern(b.addr, b.size, pattern_key(b.addr, b.size, m_p.seed))) ++m_r.verify_errors;
        void* ptr = reinterpret_cast<void*>(b.addr);
        const size_t align = size_t(1) << b.align;
        mm::Status s = b.heap == 1 ? m_shared->dealloc(ptr, b.size, align) : m_own.dealloc(ptr, b.size, align);
        if (!s) ++m_r.invariant_failures;
        m_tally.remove(m_r, b.size);
    }

    bool corrupt() {
        if (m_table.empty()) return false;
        const Block& b = m_table[m_rng.below(m_table.size())];
        corrupt_byte(b.addr, b.size, m_rng);
        return true;
    }

    void drain() {
        while (!m_table.empty()) free_one(m_table.size() - 1);
    }

    void check() {
        ++m_r.invariant_checks;
        if (!m_own.check_invariants()) ++m_r.invariant_failures;
        if (m_shared != nullptr && !m_shared->check_invariants()) ++m_r.invariant_failures;  // under its lock
    }

    const Params& m_p;
    Result& m_r;
    Rng m_rng;
    Own& m_own;
    Shared* m_shared;
    BlockTable m_table;
    PageSet m_pages[2];
    uint64_t m_bases[2];
    Tally m_tally;
    uint64_t m_used_peak = 0;
    bool m_grow = true;
};

// Metadata of one churn: the allocator object, the block table, the page bitmap.
template <class A>
constexpr uint64_t churn_meta_bytes(uint64_t heap_bytes) {
    return Arena::need(sizeof(A)) + Arena::need(kMaxLiveBlocks * sizeof(Block)) +
           Arena::need(PageSet::words_for(heap_bytes) * 8);
}

struct ChurnSetup {
    BlockTable table;
    PageSet pages;
    void* alloc_slot = nullptr;
    std::span<std::byte> heap;
};

// Maps metadata and heap; false (with r.map_failed) if either mapping failed.
template <class A, class Env>
bool setup_churn(const Params& p, Mappings<Env>& maps, Result& r, ChurnSetup& s) {
    const uint64_t meta_bytes = churn_meta_bytes<A>(p.heap_bytes);
    void* meta = maps.map(meta_bytes, true, r);
    if (meta == nullptr) return false;
    void* heap = maps.map_heap(p, p.heap_bytes, r);
    if (heap == nullptr) return false;
    Arena arena(meta, round_up_pages(meta_bytes));
    s.alloc_slot = arena.take(sizeof(A));
    s.table = BlockTable(static_cast<Block*>(arena.take(kMaxLiveBlocks * sizeof(Block))), kMaxLiveBlocks);
    const uint64_t base = reinterpret_cast<uintptr_t>(heap);
    s.pages = PageSet(static_cast<uint64_t*>(arena.take(PageSet::words_for(p.heap_bytes) * 8)), base, p.heap_bytes);
    s.heap = std::span<std::byte>(static_cast<std::byte*>(heap), p.heap_bytes);
    return true;
}

template <class A, class Env>
Result run_single_churn(const Params& p, Env& env) {
    Result r;
    Mappings<Env> maps(env);
    ChurnSetup s;
    if (!setup_churn<A>(p, maps, r, s)) return r;
    A* alloc = ::new (s.alloc_slot) A();
    if (!alloc->init(s.heap)) {
        ++r.invariant_failures;  // a >= 1 MiB heap must be accepted
        return r;
    }
    Churn<A, A> churn(p, r, *alloc, nullptr, s.table, s.pages, PageSet());
    churn.run(env);
    alloc->~A();
    return r;
}

// multi, vCPU 0: maps and initialises the shared heap (and proves a second
// init is refused); publishes kSharedReady or kSharedFailed.
template <class Lock, class Env>
void setup_shared(const Params& p, Mappings<Env>& maps, MultiShared<Lock>& sh, Result& r) {
    const uint64_t words = PageSet::words_for(p.heap_bytes);
    auto* page_words = static_cast<uint64_t*>(maps.map(words * 8, true, r));
    void* heap = page_words == nullptr ? nullptr : maps.map_heap(p, p.heap_bytes, r);
    if (heap == nullptr) {
        atomic_store(sh.state, kSharedFailed);
        return;
    }
    std::span<std::byte> region(static_cast<std::byte*>(heap), p.heap_bytes);
    if (!sh.heap.init(region)) {
        ++r.invariant_failures;
        atomic_store(sh.state, kSharedFailed);
        return;
    }
    mm::Status again = sh.heap.init(region);
    r.heap_reinit_error = (!again && again.error() == mm::Error::AlreadyInitialized) ? 1 : 0;
    if (r.heap_reinit_error != 1) ++r.invariant_failures;
    sh.page_words = page_words;
    sh.heap_base = reinterpret_cast<uintptr_t>(heap);
    sh.heap_bytes = p.heap_bytes;
    atomic_store(sh.state, kSharedReady);
}

inline void accumulate(Result& sum, const Result& v) {
    sum.ops += v.ops;
    sum.allocs += v.allocs;
    sum.frees += v.frees;
    sum.failures += v.failures;
    sum.verify_errors += v.verify_errors;
    sum.invariant_checks += v.invariant_checks;
    sum.invariant_failures += v.invariant_failures;
    sum.bytes_peak += v.bytes_peak;  // sum of per-vCPU peaks: an upper bound of the joint peak
    sum.live_peak += v.live_peak;
    sum.heap_bytes += v.heap_bytes;
    sum.pages_touched += v.pages_touched;
    if (v.cycles > sum.cycles) sum.cycles = v.cycles;
    if (v.map_failed && !sum.map_failed) {
        sum.map_failed = true;
        sum.map_bytes = v.map_bytes;
    }
}

// multi, vCPU 0 after every vCPU finished: the aggregate, with the shared
// heap's final checks (everything freed, invariants hold).
template <class Lock>
Result aggregate(MultiShared<Lock>& sh, uint32_t vcpus, int64_t reinit) {
    Result sum;
    for (uint32_t v = 0; v < vcpus; ++v) accumulate(sum, sh.results[v]);
    sum.heap_reinit_error = reinit;
    if (atomic_load(sh.state) == kSharedReady) {
        ++sum.invariant_checks;
        if (!sh.heap.check_invariants()) ++sum.invariant_failures;
        auto st = sh.heap.stats();
        if (st.used_bytes != 0 || st.allocs != st.frees) ++sum.invariant_failures;
        sum.add_stat("shared_allocs", st.allocs);
        sum.add_stat("shared_fails", st.failed_allocs);
    }
    const Result& v0 = sh.results[0];
    for (uint32_t i = 0; i < v0.stat_count; ++i) sum.add_stat(v0.stats[i].name, v0.stats[i].value);
    return sum;
}

// One vCPU's part of multi: churn on its own TLSF heap, a quarter of the
// allocations on the shared LockedHeap<SlabHeap>.
template <class Lock, class Env>
Result run_multi_vcpu(const Params& p, Env& env, MultiShared<Lock>& sh, Mappings<Env>& maps) {
    using Own = mm::Tlsf<>;
    Result r;
    ChurnSetup s;
    if (!setup_churn<Own>(p, maps, r, s)) return r;
    Own* own = ::new (s.alloc_slot) Own();
    if (!own->init(s.heap)) {
        ++r.invariant_failures;
        return r;
    }
    PageSet shared_pages(sh.page_words, sh.heap_base, sh.heap_bytes);
    Churn<Own, decltype(sh.heap)> churn(p, r, *own, &sh.heap, s.table, s.pages, shared_pages);
    churn.run(env);
    own->~Own();
    return r;
}

template <class Env>
Result run_multi(const Params& p, Env& env) {
    auto& sh = env.shared();
    // vCPU 0's (the shared heap's) are given back after it has aggregated; the others
    // give theirs back before they count themselves done, so that when vCPU 0 reports
    // (and exits), every other vCPU's heap is already unmapped.
    Mappings<Env> maps(env);
    Result setup;  // vCPU 0: the shared heap's mapping and init checks
    if (p.vcpu == 0) setup_shared(p, maps, sh, setup);
    while (atomic_load(sh.state) == kSharedPending) env.relax();
    Result mine;
    if (atomic_load(sh.state) == kSharedReady) mine = run_multi_vcpu(p, env, sh, maps);
    mine.heap_bytes += setup.heap_bytes;
    mine.invariant_failures += setup.invariant_failures;
    if (setup.map_failed) {
        mine.map_failed = true;
        mine.map_bytes = setup.map_bytes;
    }
    mine.heap_reinit_error = setup.heap_reinit_error;
    sh.results[p.vcpu] = mine;
    if (p.vcpu != 0) maps.release();
    __atomic_fetch_add(&sh.done, 1, __ATOMIC_ACQ_REL);
    if (p.vcpu != 0) return mine;
    while (atomic_load(sh.done) < p.vcpus) env.relax();
    return aggregate(sh, p.vcpus, setup.heap_reinit_error);
}

}  // namespace detail
}  // namespace pv::workload
