// The pieces every workload of guest/workload/workload.h shares: parameters and
// results, the random generator, the block pattern, the live-block table, the
// touched-page bitmap and the metadata arena. Freestanding (mm/std.h only).
#pragma once

#include "mm/std.h"
#include "vmm/abi/hypercall.h"

namespace pv::workload {

using mm::size_t;
using mm::uint32_t;
using mm::uint64_t;
using mm::uint8_t;
using mm::uintptr_t;

inline constexpr uint64_t kPage = 4096;
inline constexpr size_t kMaxNameLen = 32;  // sizeof(abi::BootInfo::workload)

enum class Kind : uint8_t { SlabChurn, BuddyChurn, TlsfChurn, Frames, Ids, Frag, Sparse, Multi };
inline constexpr Kind kKinds[] = {Kind::SlabChurn, Kind::BuddyChurn, Kind::TlsfChurn, Kind::Frames,
                                  Kind::Ids,       Kind::Frag,       Kind::Sparse,    Kind::Multi};

// Zero fields take the kind's defaults (resolve()). flags: abi::kWorkload* bits.
// vcpu/vcpus: who runs this instance (Multi: every vCPU; others: vCPU 0 of 1).
struct Params {
    uint64_t ops = 0;
    uint64_t heap_bytes = 0;
    uint64_t max_block = 0;
    uint64_t check_every = 0;
    uint64_t flags = 0;
    uint64_t seed = 0;
    uint32_t vcpu = 0;
    uint32_t vcpus = 1;
};

// An allocator statistic reported as "wl.stat.<name>" (name <= 15 bytes).
struct Stat {
    const char* name;
    uint64_t value;
};
inline constexpr size_t kMaxStats = 8;

struct Result {
    uint64_t ops = 0;            // loop operations done (== Params::ops unless the heap could not be mapped)
    uint64_t allocs = 0;         // successful allocations (blocks, page runs, ID runs, first page touches)
    uint64_t frees = 0;          // frees, including the final drain
    uint64_t failures = 0;       // requests the allocator refused with NoMemory (not an error)
    uint64_t verify_errors = 0;  // blocks (pages, IDs) whose pattern did not verify
    uint64_t invariant_checks = 0;
    uint64_t invariant_failures = 0;  // check_invariants() false, or an unexpected allocator error
    uint64_t bytes_peak = 0;          // peak live bytes requested (frames: pages*4096, ids: IDs)
    uint64_t live_peak = 0;           // peak live blocks
    uint64_t heap_bytes = 0;          // bytes of heap mapped (every heap of this vCPU; Multi: + the shared one)
    uint64_t pages_touched = 0;       // distinct 4 KiB heap pages the workload's blocks covered
    uint64_t cycles = 0;              // Env::now() ticks of the op loop
    bool map_failed = false;          // Env::map refused the heap or the metadata (exit 4)
    uint64_t map_bytes = 0;           // ... of this many bytes
    uint64_t digest = 0;              // hash of the allocation sequence (offsets in the heap, sizes): equal
                                      // for equal seeds and parameters (single-vCPU kinds, same heap alignment)
    int64_t heap_reinit_error = -1;   // Multi, vCPU 0: 1 if a second LockedHeap::init was AlreadyInitialized
    Stat stats[kMaxStats] = {};
    uint32_t stat_count = 0;

    void add_stat(const char* name, uint64_t v) {
        if (stat_count < kMaxStats) stats[stat_count++] = Stat{name, v};
    }
};

namespace detail {

constexpr uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

// splitmix64: tiny state, good enough streams for op mixes; seeded per vCPU.
class Rng {
public:
    constexpr explicit Rng(uint64_t seed) : m_state(seed) {}
    uint64_t next() { return mix64(m_state += 0x9E3779B97F4A7C15ULL); }
    // Uniform-ish in [0, n) (modulo bias is irrelevant here); n >= 1.
    uint64_t below(uint64_t n) { return next() % n; }
    bool one_in(uint64_t n) { return below(n) == 0; }

private:
    uint64_t m_state;
};

// The block pattern: the 8-byte word at aligned address w holds
// key ^ (w * C); a byte at address a is byte (a & 7) of its word's value, so a
// block of any start and size is covered and two overlapping live blocks (or a
// stray write) cannot both verify. key mixes the block's start, size and seed.
constexpr uint64_t pattern_key(uint64_t addr, uint64_t size, uint64_t seed) {
    return mix64(seed ^ mix64(addr ^ (size << 1)));
}
constexpr uint64_t pattern_word(uint64_t key, uint64_t word_addr) { return key ^ (word_addr * 0xD6E8FEB86659FD93ULL); }
constexpr uint8_t pattern_byte(uint64_t key, uint64_t addr) {
    return static_cast<uint8_t>(pattern_word(key, addr & ~uint64_t(7)) >> (8 * (addr & 7)));
}

inline void fill_pattern(uint64_t addr, uint64_t size, uint64_t key) {
    auto* b = reinterpret_cast<volatile uint8_t*>(addr);
    uint64_t i = 0;
    for (; i < size && ((addr + i) & 7) != 0; ++i) b[i] = pattern_byte(key, addr + i);
    for (; i + 8 <= size; i += 8) *reinterpret_cast<volatile uint64_t*>(addr + i) = pattern_word(key, addr + i);
    for (; i < size; ++i) b[i] = pattern_byte(key, addr + i);
}

inline bool check_pattern(uint64_t addr, uint64_t size, uint64_t key) {
    const auto* b = reinterpret_cast<const volatile uint8_t*>(addr);
    uint64_t bad = 0;
    uint64_t i = 0;
    for (; i < size && ((addr + i) & 7) != 0; ++i) bad |= b[i] ^ pattern_byte(key, addr + i);
    for (; i + 8 <= size; i += 8)
        bad |= *reinterpret_cast<const volatile uint64_t*>(addr + i) ^ pattern_word(key, addr + i);
    for (; i < size; ++i) bad |= b[i] ^ pattern_byte(key, addr + i);
    return bad == 0;
}

// Changes one byte of [addr, addr + size) (size >= 1) behind everyone's back.
inline void corrupt_byte(uint64_t addr, uint64_t size, Rng& rng) {
    auto* b = reinterpret_cast<volatile uint8_t*>(addr + rng.below(size));
    *b = static_cast<uint8_t>(*b ^ 0xA5);
}

// Bump allocator over one mapping of the engine's own metadata.
class Arena {
public:
    Arena() = default;
    Arena(void* base, uint64_t bytes) : m_base(reinterpret_cast<uintptr_t>(base)), m_size(bytes) {}
    // bytes aligned to 64; nullptr when exhausted (a sizing bug: reported as a map failure).
    void* take(uint64_t bytes) {
        uint64_t start = (m_used + 63) & ~uint64_t(63);
        if (start > m_size || bytes > m_size - start) return nullptr;
        m_used = start + bytes;
        return reinterpret_cast<void*>(m_base + start);
    }
    static constexpr uint64_t need(uint64_t bytes) { return bytes + 64; }

private:
    uintptr_t m_base = 0;
    uint64_t m_size = 0;
    uint64_t m_used = 0;
};

inline constexpr uint64_t round_up_pages(uint64_t bytes) { return (bytes + kPage - 1) & ~(kPage - 1); }

// Which 4 KiB pages of [base, base + bytes) were written (one bit per page).
class PageSet {
public:
    static constexpr uint64_t words_for(uint64_t bytes) { return (bytes / kPage + 63) / 64; }
    PageSet() = default;
    PageSet(uint64_t* words, uint64_t base, uint64_t bytes) : m_words(words), m_base(base), m_bytes(bytes) {}

    // Marks the pages [addr, addr + size) overlaps (clipped to the set).
    void mark(uint64_t addr, uint64_t size) {
        if (size == 0 || addr >= m_base + m_bytes || addr + size <= m_base) return;
        uint64_t first = (addr < m_base ? 0 : addr - m_base) / kPage;
        uint64_t end = addr + size - m_base;
        uint64_t last = (end > m_bytes ? m_bytes - 1 : end - 1) / kPage;
        for (uint64_t pg = first; pg <= last; ++pg) {
            // Atomic: multi's vCPUs share the set of the shared heap; the one
            // whose OR sets the bit counts the page, so the counts add up.
            const uint64_t bit = uint64_t(1) << (pg % 64);
            uint64_t& w = m_words[pg / 64];
            if ((__atomic_load_n(&w, __ATOMIC_RELAXED) & bit) == 0 &&
                (__atomic_fetch_or(&w, bit, __ATOMIC_RELAXED) & bit) == 0)
                ++m_count;
        }
    }
    [[nodiscard]] bool contains_page(uint64_t pg) const {
        return ((__atomic_load_n(&m_words[pg / 64], __ATOMIC_RELAXED) >> (pg % 64)) & 1) != 0;
    }
    [[nodiscard]] uint64_t count() const { return m_count; }
    [[nodiscard]] uint64_t base() const { return m_base; }

private:
    uint64_t* m_words = nullptr;
    uint64_t m_base = 0;
    uint64_t m_bytes = 0;
    uint64_t m_count = 0;
};

// A live block (byte block, page run or ID run).
struct Block {
    uint64_t addr;   // pointer, page address or first ID
    uint64_t size;   // bytes, pages or IDs
    uint32_t align;  // log2 of the requested alignment
    uint32_t heap;   // which heap it came from (Multi: 0 own, 1 shared)
};

// Unordered table of live blocks; remove() moves the last one into the hole.
class BlockTable {
public:
    BlockTable() = default;
    BlockTable(Block* slots, uint64_t capacity) : m_slots(slots), m_capacity(capacity) {}
    [[nodiscard]] uint64_t size() const { return m_size; }
    [[nodiscard]] bool full() const { return m_size == m_capacity; }
    [[nodiscard]] bool empty() const { return m_size == 0; }
    Block& operator[](uint64_t i) { return m_slots[i]; }
    void push(const Block& b) { m_slots[m_size++] = b; }
    Block take(uint64_t i) {
        Block b = m_slots[i];
        m_slots[i] = m_slots[--m_size];
        return b;
    }

private:
    Block* m_slots = nullptr;
    uint64_t m_capacity = 0;
    uint64_t m_size = 0;
};

// Live-size bookkeeping shared by the workloads.
struct Tally {
    uint64_t live_bytes = 0;
    uint64_t live_blocks = 0;
    // where: the block's offset in its heap (or its first ID / page index),
    // folded into Result::digest with the size.
    void add(Result& r, uint64_t bytes, uint64_t where) {
        r.digest = mix64(r.digest ^ (where * 0x9E3779B97F4A7C15ULL) ^ bytes);
        live_bytes += bytes;
        ++live_blocks;
        ++r.allocs;
        if (live_bytes > r.bytes_peak) r.bytes_peak = live_bytes;
        if (live_blocks > r.live_peak) r.live_peak = live_blocks;
    }
    void remove(Result& r, uint64_t bytes) {
        live_bytes -= bytes;
        --live_blocks;
        ++r.frees;
    }
};

// When kWorkloadCorrupt asks for it: the op at which one live block is corrupted.
constexpr uint64_t corrupt_op(const Params& p) {
    if ((p.flags & abi::kWorkloadCorrupt) == 0) return UINT64_MAX;
    return p.ops / 2 < 2000 ? p.ops / 2 : 2000;
}

constexpr bool is_check_op(const Params& p, uint64_t op) { return (op + 1) % p.check_every == 0; }

// The timed loop every workload runs: ops calls of step(op), the corruption
// at corrupt_op (corrupt() returns false while it has nothing to corrupt, and
// is retried each op, then once more after the loop), check() every
// check_every ops. Fills r.ops and r.cycles.
template <class Env, class Step, class Corrupt, class Check>
void op_loop(const Params& p, Env& env, Result& r, Step&& step, Corrupt&& corrupt, Check&& check) {
    const uint64_t corrupt_at = corrupt_op(p);
    bool corrupted = false;
    const uint64_t t0 = env.now();
    for (uint64_t op = 0; op < p.ops; ++op) {
        step(op);
        if (op >= corrupt_at && !corrupted) corrupted = corrupt();
        if (is_check_op(p, op)) check();
    }
    r.cycles = env.now() - t0;
    r.ops = p.ops;
    if (corrupt_at != UINT64_MAX && !corrupted) (void)corrupt();
}

// Env-side resources of one run: the metadata mapping and the heap mapping,
// given back when the run ends.
template <class Env>
class Mappings {
public:
    explicit Mappings(Env& env) : m_env(env) {}
    ~Mappings() { release(); }
    // Gives every mapping back now (the destructor then has nothing left to do).
    void release() {
        for (uint32_t i = 0; i < m_count; ++i) m_env.unmap(m_ptr[i], m_len[i]);
        m_count = 0;
    }
    Mappings(const Mappings&) = delete;
    Mappings& operator=(const Mappings&) = delete;

    // Maps bytes (rounded up to pages); on failure records it in r and returns nullptr.
    void* map(uint64_t bytes, bool populate, Result& r) {
        bytes = round_up_pages(bytes);
        void* p = m_count < kMax ? m_env.map(bytes, populate) : nullptr;
        if (p == nullptr) {
            r.map_failed = true;
            r.map_bytes = bytes;
            return nullptr;
        }
        m_ptr[m_count] = p;
        m_len[m_count++] = bytes;
        return p;
    }
    // The heap: populate per kWorkloadPopulate; counted in r.heap_bytes.
    void* map_heap(const Params& p, uint64_t bytes, Result& r) {
        void* h = map(bytes, (p.flags & abi::kWorkloadPopulate) != 0, r);
        if (h != nullptr) r.heap_bytes += round_up_pages(bytes);
        return h;
    }

private:
    static constexpr uint32_t kMax = 4;
    Env& m_env;
    void* m_ptr[kMax] = {};
    uint64_t m_len[kMax] = {};
    uint32_t m_count = 0;
};

}  // namespace detail
}  // namespace pv::workload
