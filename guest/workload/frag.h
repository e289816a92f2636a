// frag: fragmentation of a TLSF heap. Rounds of four phases, one op per
// allocation attempt or free:
//   fill   small blocks (16 .. small_max bytes) until the heap refuses one (or
//          the block table is nearly full)
//   punch  free a pattern of them, leaving holes: every other block (round 0,
//          4, ...), a random half (1, 5, ...), three of every four (2, 6, ...),
//          the first half in allocation order, one big hole (3, 7, ...)
//   large  kLargeTries requests of max_block/2 .. max_block bytes: counted in
//          wl.stat.large_ok / wl.stat.large_fail (failures are expected)
//   drain  free everything, then the next round
// small_max = clamp(16 * heap / kMaxLiveBlocks, 64, 4096) so that a fill
// reaches the end of the heap before the block table is full. See workload.h for the common rules.
#pragma once

#include "guest/workload/byte_churn.h"
#include "guest/workload/common.h"
#include "mm/alloc/tlsf.h"
#include "mm/std.h"

namespace pv::workload {
namespace detail {

template <class Env>
class FragRun {
public:
    using Heap = mm::Tlsf<>;
    static constexpr uint64_t kLargeTries = 32;
    enum class Phase : uint8_t { Fill, Punch, Large, Drain };

    FragRun(const Params& p, Env& env, Result& r) : m_p(p), m_env(env), m_r(r), m_rng(mix64(p.seed ^ 0xF2A6)) {
        uint64_t small = 16 * p.heap_bytes / kMaxLiveBlocks;
        m_small_max = small < 64 ? 64 : (small > 4096 ? 4096 : small);
    }

    void run() {
        Mappings<Env> maps(m_env);
        ChurnSetup s;
        if (!setup_churn<Heap>(m_p, maps, m_r, s)) return;
        m_heap = ::new (s.alloc_slot) Heap();
        if (!m_heap->init(s.heap)) {
            ++m_r.invariant_failures;
            return;
        }
        m_table = s.table;
        m_pages = s.pages;
        op_loop(
            m_p, m_env, m_r, [&](uint64_t) { step(); }, [&] { return corrupt(); }, [&] { check(); });
        while (!m_table.empty()) free_at(m_table.size() - 1);
        check();
        if (m_heap->used_bytes() != 0) ++m_r.invariant_failures;
        m_r.pages_touched = m_pages.count();
        m_r.add_stat("large_ok", m_large_ok);
        m_r.add_stat("large_fail", m_large_fail);
        m_r.add_stat("rounds", m_round);
        m_heap->~Heap();
    }

private:
    void step() {
        switch (m_phase) {
            case Phase::Fill: return fill();
            case Phase::Punch: return punch();
            case Phase::Large: return large();
            case Phase::Drain: return drain();
        }
    }

    void fill() {
        const uint64_t size = 16 + m_rng.below(m_small_max - 15);
        if (m_table.size() + kLargeTries >= kMaxLiveBlocks || !try_alloc(size, 16)) {
            m_phase = Phase::Punch;
            m_cursor = m_table.size();
            m_punch_end = m_cursor;
        }
    }

    // From the end down, so take() only moves blocks already passed (kept).
    void punch() {
        while (m_cursor > 0) {
            const uint64_t i = --m_cursor;
            if (!punched(i)) continue;
            free_at(i);
            return;
        }
        m_phase = Phase::Large;
        m_tries = 0;
        large();
    }

    bool punched(uint64_t i) {
        switch (m_round % 4) {
            case 0: return i % 2 == 1;
            case 1: return m_rng.one_in(2);
            case 2: return i % 4 != 0;
            default: return i < m_punch_end / 2;  // one contiguous hole: large requests fit
        }
    }

    void large() {
        const uint64_t size = m_p.max_block / 2 + m_rng.below(m_p.max_block / 2 + 1);
        if (try_alloc(size == 0 ? 1 : size, 16))
            ++m_large_ok;
        else
            ++m_large_fail;
        if (++m_tries == kLargeTries) m_phase = Phase::Drain;
    }

    void drain() {
        if (!m_table.empty()) {
            free_at(m_table.size() - 1);
            if (!m_table.empty()) return;
        }
        m_phase = Phase::Fill;
        ++m_round;
    }

    bool try_alloc(uint64_t size, uint64_t align) {
        mm::Result<void*> r = m_heap->alloc(size, align);
        if (!r) {
            if (r.error() == mm::Error::NoMemory)
                ++m_r.failures;
            else
                ++m_r.invariant_failures;
            return false;
        }
        const uint64_t a = reinterpret_cast<uintptr_t>(*r);
        fill_pattern(a, size, pattern_key(a, size, m_p.seed));
        m_pages.mark(a, size);
        m_table.push(Block{a, size, log2_floor(align), 0});
        m_tally.add(m_r, size, a - m_pages.base());
        return true;
    }

    void free_at(uint64_t i) {
        const Block b = m_table.take(i);
        if (!check_pattern(b.addr, b.size, pattern_key(b.addr, b.size, m_p.seed))) ++m_r.verify_errors;
        if (!m_heap->dealloc(reinterpret_cast<void*>(b.addr), b.size, size_t(1) << b.align)) ++m_r.invariant_failures;
        m_tally.remove(m_r, b.size);
    }

    bool corrupt() {
        if (m_table.empty()) return false;
        const Block& b = m_table[m_rng.below(m_table.size())];
        corrupt_byte(b.addr, b.size, m_rng);
        return true;
    }

    void check() {
        ++m_r.invariant_checks;
        if (!m_heap->check_invariants()) ++m_r.invariant_failures;
    }

    const Params& m_p;
    Env& m_env;
    Result& m_r;
    Rng m_rng;
    Heap* m_heap = nullptr;
    BlockTable m_table;
    PageSet m_pages;
    Tally m_tally;
    Phase m_phase = Phase::Fill;
    uint64_t m_small_max = 64;
    uint64_t m_cursor = 0;
    uint64_t m_punch_end = 0;
    uint64_t m_tries = 0;
    uint64_t m_round = 0;
    uint64_t m_large_ok = 0;
    uint64_t m_large_fail = 0;
};

template <class Env>
Result run_frag(const Params& p, Env& env) {
    Result r;
    FragRun<Env>(p, env, r).run();
    return r;
}

}  // namespace detail
}  // namespace pv::workload
