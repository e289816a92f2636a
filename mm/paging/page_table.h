// PageTable<M>: an x86-64 4-level page table (4 KiB, 2 MiB and 1 GiB pages) kept in
// guest-physical frames, reached through a TableMemory.
//
// What it is: a handle (TableMemory pointer + root frame). It owns the tables it
// allocated (destroy() frees them); after adopt() it walks and edits a table built
// elsewhere (e.g. the guest's CR3) and should not be destroyed.
//
// Invariants (check_invariants()):
//   - every table reachable from the root is inside table memory (M::table succeeds);
//   - no present entry has a reserved bit (PS in a PML4E, bits 13.. of a huge frame);
//   - no table points at itself or at an ancestor (no loops);
//   - no table except the root is empty (empty tables are freed on unmap and on
//     rollback of a failed map).
// Every walk reaches table memory only through M::table and descends at most four
// levels, so a corrupted table (garbage, self-loops, pointers outside memory) can make
// an operation fail with Corrupted but never makes it read outside or loop.
// Shared subtables (two entries pointing at the same table) are not detected (whole-tree
// walks are bounded by kMaxTableVisits, so a tree sharing them heavily is Corrupted); editing
// such a table through one path edits it for both, and destroy() would free it twice.
//
// Errors:
//   InvalidParam   misaligned va/pa/range, non-canonical va, range crossing the
//                  canonical hole (map_region), pa beyond 2^52, perm without Read or
//                  with unknown bits, invalid PageSize
//   AlreadyExists  map/map_region over something already mapped
//   NotFound       query/translate/clear_accessed of an unmapped address
//   NoMemory       M::alloc_table failed; the operation made no change
//   Corrupted      the walk met an entry pointing outside table memory, a reserved
//                  bit, or a loop. Range operations stop there: pages before it in
//                  address order may already have been changed.
//
// Concurrency: single writer, with one exception. Callers serialise every mutating call
// (and the TableMemory) with one lock, except install(): several threads may call
// install() at once (each through its own handle/TableMemory if M is not thread-safe)
// as long as no other mutating call runs meanwhile (a big-reader lock: installers share
// it, everything else takes it exclusively). install() only adds: it links a missing
// table or writes a missing leaf with one compare-and-swap on the entry, so two
// installers of the same entry cannot both win, the loser never overwrites the winner's
// entry, and a loser's table (never published) goes back to M::free_table.
// Hardware walkers (vCPUs) and lock-free readers may run concurrently with a writer:
// every table is fully initialised (zeroed by M, or filled on a split) before the
// release store that publishes it, and a split replaces the huge entry with one atomic
// exchange, so a walker sees either the huge page or the complete table with the same
// translations. A/D bits set by hardware are preserved (atomic RMW). Tables freed on
// unmap are handed to M::free_table at once: if vCPUs may still cache them
// (paging-structure caches), M must not reuse such a frame before the caller's TLB
// shootdown. No TLB maintenance happens here.
#pragma once

#include "mm/addr.h"
#include "mm/paging/pte.h"
#include "mm/paging/walk_detail.h"
#include "mm/result.h"
#include "mm/std.h"

namespace mm::x86 {

// How page-table code reaches table memory. Tables live in guest-physical frames.
template <class M>
concept TableMemory = requires(M& m, const M& cm, GuestFrame f) {
    // Pointer to the 512 entries of table frame f; OutOfRange if f is not inside the memory the VMM allows
    // for tables (bounds check: a corrupt entry pointing outside guest RAM must never be dereferenced).
    { cm.table(f) } -> std::same_as<Result<uint64_t*>>;
    { m.alloc_table() } -> std::same_as<Result<GuestFrame>>;  // a new, ZEROED table frame (NoMemory when out)
    { m.free_table(f) } -> std::same_as<void>;
};

// One mapped page, as seen by a walk.
struct Mapping {
    GuestVirtAddr base;  // start of the page containing the address
    GuestPhysAddr phys;  // physical address of that page's start
    PageSize size;       // 4K, 2M or 1G
    Perm perm;           // effective over the walk: Read always; Write if RW; Exec unless NX; User if US
    bool accessed;
    bool dirty;

    [[nodiscard]] constexpr GuestVirtRange range() const { return GuestVirtRange::from_start_size(base, bytes(size)); }
    constexpr bool operator==(const Mapping&) const = default;
};

template <TableMemory M>
class PageTable {
public:
    // Allocates a zeroed root (PML4). NoMemory if none is available.
    static Result<PageTable> try_create(M* mem) {
        MM_ASSERT(mem != nullptr);
        MM_TRY_ASSIGN(GuestFrame root, mem->alloc_table());
        if (!mem->table(root)) {
            mem->free_table(root);
            return err(Error::BadState);
        }
        return PageTable(mem, root);
    }
    // Walk/modify an existing table (e.g. the guest's CR3). A root outside table memory
    // makes every walk fail with Corrupted.
    static PageTable adopt(M* mem, GuestFrame root) {
        MM_ASSERT(mem != nullptr);
        return PageTable(mem, root);
    }

    [[nodiscard]] GuestFrame root() const { return m_root; }

    // Map one page. InvalidParam: va/pa not aligned to size, non-canonical va, perm without Read.
    // AlreadyExists: anything is mapped in [va, va+size) (also if a larger page covers it).
    Status map(GuestVirtAddr va, GuestPhysAddr pa, PageSize size, Perm perm) {
        if (!is_valid_page_size(size) || !is_canonical(va) || !va.is_aligned(bytes(size)) ||
            !pa.is_aligned(bytes(size)) || pa.value() >= kPhysAddrLimit || !is_valid_leaf_perm(perm))
            return err(Error::InvalidParam);
        return map_validated(to_linear(va), GuestFrame::containing(pa), size, perm_to_flags(perm));
    }

    // Map one page if nothing is mapped there, safe against concurrent install() calls
    // on the same table (see Concurrency above). AlreadyExists when a present entry
    // already covers va (another installer won the race, or it was mapped before): that
    // entry is never replaced. NoMemory, before any change, when the intermediate tables
    // the walk lacks cannot all be allocated up front. InvalidParam as for map(); Corrupted
    // when the walk meets a corrupted entry. Intermediate tables linked before a later
    // failure stay linked (another installer may already use them): they are empty only
    // if that failure was Corrupted. M::free_table receives only tables never linked.
    Status install(GuestVirtAddr va, GuestPhysAddr pa, PageSize size, Perm perm) {
        if (!is_valid_page_size(size) || !is_canonical(va) || !va.is_aligned(bytes(size)) ||
            !pa.is_aligned(bytes(size)) || pa.value() >= kPhysAddrLimit || !is_valid_leaf_perm(perm))
            return err(Error::InvalidParam);
        uint64_t lin = to_linear(va);
        Level target = level_of(size);
        MM_TRY_ASSIGN(size_t missing, missing_tables(lin, target));
        detail::TablePool<M> pool;
        MM_TRY(pool.fill(m_mem, missing));
        Status r = install_walk(lin, target, GuestFrame::containing(pa), perm_to_flags(perm) & ~pte::kPresent, pool);
        pool.release(m_mem);
        return r;
    }

    // Map a whole range linearly (va+i -> pa+i), using 2M/1G pages where va, pa and the
    // remaining length allow and allow_huge is true. All-or-nothing: on error nothing new
    // stays mapped. InvalidParam also if the range crosses the canonical hole.
    Status map_region(GuestVirtRange va, GuestPhysAddr pa, Perm perm, bool allow_huge) {
        return map_region(va, pa, perm, allow_huge ? PageSize::Size1G : PageSize::Size4K);
    }
    // The same with the largest page size to use (1G pages need the CPU's pdpe1gb feature).
    Status map_region(GuestVirtRange va, GuestPhysAddr pa, Perm perm, PageSize largest) {
        MM_TRY(validate_range(va));
        if (!pa.is_page_aligned() || !is_valid_leaf_perm(perm)) return err(Error::InvalidParam);
        if (va.is_empty()) return ok();
        if (pa.value() >= kPhysAddrLimit || va.size() > kPhysAddrLimit - pa.value()) return err(Error::InvalidParam);
        if (!same_half(va)) return err(Error::InvalidParam);
        bool any = false;
        MM_TRY(for_each_mapping(va, [&any](const Mapping&) { return !(any = true); }));
        if (any) return err(Error::AlreadyExists);
        return map_linear(to_linear(va.start()), va.size(), pa.value(), perm_to_flags(perm), bytes(largest));
    }

    // Unmap every page in the range (holes are fine). A huge page partly covered is split
    // and only the covered part removed. Tables that become empty are freed (never the
    // root). NoMemory (and no change) if a split needs a table and none is available.
    Status unmap_region(GuestVirtRange va) { return modify_region(va, Op::Unmap, 0); }

    // Change permissions of every mapped page in the range (holes skipped), splitting
    // partly covered huge pages. perm must include Read (x86 cannot express "none" in a
    // present entry: unmap instead). NoMemory (and no change) as for unmap_region.
    Status protect_region(GuestVirtRange va, Perm perm) {
        if (!is_valid_leaf_perm(perm)) return err(Error::InvalidParam);
        return modify_region(va, Op::Protect, perm_to_flags(perm));
    }

    // NotFound if unmapped; Corrupted if the walk meets an entry pointing outside table
    // memory, a reserved bit, a huge bit at level 4, or a loop. InvalidParam if non-canonical.
    Result<Mapping> query(GuestVirtAddr va) const {
        if (!is_canonical(va)) return err(Error::InvalidParam);
        MM_TRY_ASSIGN(detail::Leaf leaf, walk(to_linear(va)));
        return make_mapping(to_linear(va), leaf.raw, leaf.level, leaf.perm);
    }

    Result<GuestPhysAddr> translate(GuestVirtAddr va) const {
        MM_TRY_ASSIGN(Mapping m, query(va));
        return m.phys + (va - m.base);
    }

    // Clears the accessed and dirty bits of the leaf mapping va; returns the mapping as it
    // was (old A/D). Atomic with respect to hardware setting them concurrently.
    Result<Mapping> clear_accessed(GuestVirtAddr va) {
        if (!is_canonical(va)) return err(Error::InvalidParam);
        MM_TRY_ASSIGN(detail::Leaf leaf, walk(to_linear(va)));
        uint64_t old = slot_fetch_and(leaf.slot, ~pte::kAccessedDirty);
        return make_mapping(to_linear(va), old, leaf.level, leaf.perm);
    }

    // Visits every mapped leaf overlapping `range` in address order: fn(const Mapping&) -> bool
    // (false stops). The range needs canonical first and last bytes (it may span the hole;
    // the whole 64-bit space is fine). Corrupted if the walk meets a corrupted entry.
    template <class F>
    Status for_each_mapping(GuestVirtRange range, F&& fn) const {
        if (range.is_empty()) return ok();
        if (!is_canonical(range.start()) || !is_canonical(range.last())) return err(Error::InvalidParam);
        uint64_t budget = kMaxTableVisits;
        MM_TRY_ASSIGN(bool go_on, visit<Level::Pml4>(m_root, 0, to_linear(range.start()), to_linear(range.last()),
                                                     detail::WalkPerm{}, detail::TablePath{}, fn, budget));
        (void)go_on;
        return ok();
    }

    // Visits every table reachable from the root, the root first, then depth-first in
    // entry order: fn(GuestFrame) -> bool (false stops). A table linked from two entries
    // is visited twice (callers that own tables detect that as a corrupt tree). Corrupted
    // on a table outside table memory, reserved bits in a present entry, a loop, or more
    // than kMaxTableVisits tables.
    template <class F>
    Status for_each_table(F&& fn) const {
        uint64_t budget = kMaxTableVisits;
        MM_TRY_ASSIGN(bool go_on, visit_tables<Level::Pml4>(m_root, detail::TablePath{}, fn, budget));
        (void)go_on;
        return ok();
    }

    // Every reachable table inside table memory, no reserved bits, no loops, no empty
    // table below the root, at most kMaxTableVisits tables reached.
    [[nodiscard]] bool check_invariants() const {
        if (m_mem == nullptr) return false;
        uint64_t budget = kMaxTableVisits;
        return check_table<Level::Pml4>(m_root, detail::TablePath{}, budget);
    }

    // Whole-tree walks (for_each_mapping, check_invariants) enter at most this many
    // tables, counting a table once per path that reaches it: a corrupt tree whose
    // entries share subtables (T0 -> T1 -> T2 -> T3 through every entry) would
    // otherwise take 512^3 visits, so past the budget the walk fails with Corrupted.
    // 2^16 tables = 256 MiB of page tables, 128 GiB mapped with 4 KiB pages.
    static constexpr uint64_t kMaxTableVisits = uint64_t{1} << 16;

    // Frees every table including the root (skipping entries that point outside table
    // memory or into a loop). The handle is unusable afterwards. Not for adopted tables
    // whose frames M does not own.
    void destroy() {
        MM_ASSERT(m_mem != nullptr);
        destroy_table<Level::Pml4>(m_root, detail::TablePath{});
        m_mem = nullptr;
    }

private:
    enum class Op : uint8_t { Unmap, Protect };

    PageTable(M* mem, GuestFrame root) : m_mem(mem), m_root(root) {}

    static constexpr bool is_valid_leaf_perm(Perm p) {
        return has(p, Perm::Read) && (static_cast<uint8_t>(p) & ~static_cast<uint8_t>(kPermAll)) == 0;
    }
    static constexpr bool same_half(GuestVirtRange va) {
        return (va.start().value() >> 63) == (va.last().value() >> 63);
    }
    // 4K-aligned range with canonical first and last bytes (empty ranges pass).
    static Status validate_range(GuestVirtRange va) {
        if (!va.is_aligned(kPageSize)) return err(Error::InvalidParam);
        if (!va.is_empty() && (!is_canonical(va.start()) || !is_canonical(va.last()))) return err(Error::InvalidParam);
        return ok();
    }

    Result<uint64_t*> table_at(GuestFrame f) const {
        MM_ASSERT(m_mem != nullptr);
        auto t = m_mem->table(f);
        if (!t) return err(Error::Corrupted);
        return *t;
    }

    static Mapping make_mapping(uint64_t lin, uint64_t raw, Level level, detail::WalkPerm perm) {
        uint64_t span = level_span(level);
        uint64_t frame_addr = raw & raw_frame_mask(raw, level);
        return Mapping{from_linear(lin & ~(span - 1)), GuestPhysAddr(frame_addr), page_size_of(level), perm.perm(),
                       (raw & pte::kAccessed) != 0,    (raw & pte::kDirty) != 0};
    }

    // ---- single-address walk ---------------------------------------------------------

    Result<detail::Leaf> walk(uint64_t lin) const {
        GuestFrame table = m_root;
        detail::TablePath path;
        detail::WalkPerm perm;
        for (Level l = Level::Pml4;; l = lower(l)) {
            MM_TRY_ASSIGN(uint64_t * t, table_at(table));
            uint64_t* slot = t + table_index(lin, l);
            uint64_t raw = slot_load(slot);
            if (!raw_is_present(raw)) return err(Error::NotFound);
            if (raw_has_reserved_bits(raw, l)) return err(Error::Corrupted);
            perm.add(raw);
            if (raw_is_leaf(raw, l)) return detail::Leaf{slot, raw, l, perm};
            path.push(table);  // in place: copying the path per level costs store-forwarding stalls
            table = GuestFrame((raw & pte::kAddrMask) >> kPageShift);
            if (path.contains(table)) return err(Error::Corrupted);
        }
    }

    // ---- install (concurrent map of one page) -----------------------------------------

    // Tables missing on the way from the root to level `target` for lin. Tables are
    // only ever added while installers run, so this bounds what install_walk needs.
    Result<size_t> missing_tables(uint64_t lin, Level target) const {
        GuestFrame table = m_root;
        detail::TablePath path;
        for (Level l = Level::Pml4; l != target; l = lower(l)) {
            MM_TRY_ASSIGN(uint64_t * t, table_at(table));
            uint64_t raw = slot_load(t + table_index(lin, l));
            if (!raw_is_present(raw)) return static_cast<size_t>(level_index(l) - level_index(target));
            if (raw_has_reserved_bits(raw, l)) return err(Error::Corrupted);
            if (raw_is_leaf(raw, l)) return err(Error::AlreadyExists);
            path.push(table);
            table = GuestFrame((raw & pte::kAddrMask) >> kPageShift);
            if (path.contains(table)) return err(Error::Corrupted);
        }
        return size_t{0};
    }
    static constexpr unsigned level_index(Level l) { return static_cast<unsigned>(l); }

    Status install_walk(uint64_t lin, Level target, GuestFrame frame, uint64_t attrs, detail::TablePool<M>& pool) {
        GuestFrame table = m_root;
        detail::TablePath path;
        for (Level l = Level::Pml4;; l = lower(l)) {
            MM_TRY_ASSIGN(uint64_t * t, table_at(table));
            uint64_t* slot = t + table_index(lin, l);
            uint64_t raw = slot_load(slot);
            if (l == target) {
                if (raw_is_present(raw)) return err(Error::AlreadyExists);
                uint64_t leaf = raw_make_leaf(frame, attrs, l);
                return slot_compare_exchange(slot, raw, leaf) ? ok() : Status(err(Error::AlreadyExists));
            }
            if (!raw_is_present(raw)) {
                MM_TRY_ASSIGN(raw, link_or_adopt(slot, raw, pool));
            }
            if (raw_has_reserved_bits(raw, l)) return err(Error::Corrupted);
            if (raw_is_leaf(raw, l)) return err(Error::AlreadyExists);
            path.push(table);
            table = GuestFrame((raw & pte::kAddrMask) >> kPageShift);
            if (path.contains(table)) return err(Error::Corrupted);
        }
    }

    static uint64_t raw_make_leaf(GuestFrame frame, uint64_t attrs, Level l) {
        switch (l) {
            case Level::Pt: return Entry<Level::Pt>::make_leaf(frame, attrs).raw();
            case Level::Pd: return Entry<Level::Pd>::make_leaf(frame, attrs).raw();
            case Level::Pdpt: return Entry<Level::Pdpt>::make_leaf(frame, attrs).raw();
            case Level::Pml4: break;
        }
        panic();
    }

    // Links a zeroed table from the pool into the empty *slot (which held `seen`), or,
    // if another installer linked one first, keeps the pool's table and returns theirs.
    Result<uint64_t> link_or_adopt(uint64_t* slot, uint64_t seen, detail::TablePool<M>& pool) {
        MM_TRY_ASSIGN(GuestFrame child, pool.take(m_mem));
        uint64_t link = Entry<Level::Pd>::make_table(child).raw();  // table entries are alike at every level
        if (slot_compare_exchange(slot, seen, link)) return link;
        pool.put(child);  // still zeroed: never published
        return seen;
    }

    // ---- map ---------------------------------------------------------------------------

    // Newly linked tables of one map(), top-down, for rollback.
    struct Created {
        uint64_t* first_slot = nullptr;
        GuestFrame frames[3];
        size_t count = 0;
    };

    Status map_validated(uint64_t lin, GuestFrame frame, PageSize size, uint64_t flags) {
        Created created;
        Status r = ok();
        switch (size) {
            case PageSize::Size4K: r = map_at<Level::Pml4, Level::Pt>(m_root, lin, frame, flags, {}, created); break;
            case PageSize::Size2M: r = map_at<Level::Pml4, Level::Pd>(m_root, lin, frame, flags, {}, created); break;
            case PageSize::Size1G: r = map_at<Level::Pml4, Level::Pdpt>(m_root, lin, frame, flags, {}, created); break;
        }
        if (!r && created.count > 0) {  // unlink the new chain, then free it
            slot_store(created.first_slot, 0);
            for (size_t i = created.count; i > 0; --i) m_mem->free_table(created.frames[i - 1]);
        }
        return r;
    }

    template <Level L, Level Target>
    Status map_at(GuestFrame table, uint64_t lin, GuestFrame frame, uint64_t flags, detail::TablePath path,
                  Created& created) {
        MM_TRY_ASSIGN(uint64_t * t, table_at(table));
        uint64_t* slot = t + table_index(lin, L);
        auto e = Entry<L>::load(slot);
        if constexpr (L == Target) {
            if (e.is_present()) return err(Error::AlreadyExists);
            Entry<L>::make_leaf(frame, flags & ~pte::kPresent).store(slot);
            return ok();
        } else {
            if (!e.is_present()) {
                MM_TRY_ASSIGN(e, link_new_table<L>(slot, created));
            } else if (e.has_reserved_bits()) {
                return err(Error::Corrupted);
            } else if (e.is_leaf()) {
                return err(Error::AlreadyExists);
            }
            path = path.with(table);
            if (path.contains(e.frame())) return err(Error::Corrupted);
            return map_at<lower(L), Target>(e.frame(), lin, frame, flags, path, created);
        }
    }

    template <Level L>
    Result<Entry<L>> link_new_table(uint64_t* slot, Created& created) {
        MM_TRY_ASSIGN(GuestFrame child, m_mem->alloc_table());
        if (!m_mem->table(child)) {
            m_mem->free_table(child);
            return err(Error::BadState);
        }
        auto e = Entry<L>::make_table(child);
        e.store(slot);  // release: the zeroed table is visible before the link
        if (created.count == 0) created.first_slot = slot;
        created.frames[created.count++] = child;
        return e;
    }

    // Maps [lin, lin+size) -> pa linearly (the range is known to be unmapped); on failure
    // unmaps what it mapped, so nothing new stays.
    Status map_linear(uint64_t lin, uint64_t size, uint64_t pa, uint64_t flags, uint64_t max_leaf) {
        LinearMap job{pa - lin, flags & ~pte::kPresent, max_leaf, lin};  // pa of x is x + delta (mod 2^64)
        Status r = map_range<Level::Pml4>(m_root, 0, lin, lin + size - 1, job, {});
        if (!r && job.mapped_end > lin) {  // exactly our leaves: never splits, cannot fail
            (void)modify_region(GuestVirtRange::from_start_size(from_linear(lin), job.mapped_end - lin), Op::Unmap, 0);
        }
        return r;
    }

    struct LinearMap {
        uint64_t delta;
        uint64_t attrs;
        uint64_t max_leaf;    // largest leaf span: 4K, 2M or 1G
        uint64_t mapped_end;  // leaves are written in address order: [start, mapped_end) is mapped
    };

    template <Level L>
    Status map_range(GuestFrame table, uint64_t base, uint64_t lo, uint64_t hi, LinearMap& job,
                     detail::TablePath path) {
        MM_TRY_ASSIGN(uint64_t * t, table_at(table));
        constexpr uint64_t kSpan = level_span(L);
        path = path.with(table);
        for (size_t i = table_index(lo, L); i <= table_index(hi, L); ++i) {
            uint64_t ebase = base + i * kSpan;
            uint64_t sub_lo = lo > ebase ? lo : ebase;
            uint64_t sub_hi = hi < ebase + kSpan - 1 ? hi : ebase + kSpan - 1;
            if constexpr (can_be_leaf(L)) {
                bool whole = sub_lo == ebase && sub_hi == ebase + kSpan - 1;
                bool leaf_here = L == Level::Pt || (kSpan <= job.max_leaf && is_aligned(ebase + job.delta, kSpan));
                if (whole && leaf_here && !raw_is_present(slot_load(t + i))) {
                    Entry<L>::make_leaf(GuestFrame((ebase + job.delta) >> kPageShift), job.attrs).store(t + i);
                    job.mapped_end = sub_hi + 1;
                    continue;
                }
            }
            // A present entry here is a table (an empty one is descended into) or a conflict.
            if constexpr (L == Level::Pt)
                return err(Error::AlreadyExists);
            else
                MM_TRY(map_into_child<L>(t + i, ebase, sub_lo, sub_hi, job, path));
        }
        return ok();
    }

    // Descends into (creating if needed) the table under *slot; a table created here is
    // freed again if the descent fails before mapping anything into it.
    template <Level L>
    Status map_into_child(uint64_t* slot, uint64_t ebase, uint64_t lo, uint64_t hi, LinearMap& job,
                          const detail::TablePath& path) {
        auto e = Entry<L>::load(slot);
        bool created = false;
        if (!e.is_present()) {
            Created c;
            MM_TRY_ASSIGN(e, link_new_table<L>(slot, c));
            created = true;
        } else if (e.has_reserved_bits()) {
            return err(Error::Corrupted);
        } else if (e.is_leaf()) {
            return err(Error::AlreadyExists);
        }
        if (path.contains(e.frame())) return err(Error::Corrupted);
        Status r = map_range<lower(L)>(e.frame(), ebase, lo, hi, job, path);
        if (!r && created) (void)free_if_empty(slot, e.frame());
        return r;
    }

    // ---- unmap / protect ---------------------------------------------------------------

    Status modify_region(GuestVirtRange va, Op op, uint64_t flags) {
        MM_TRY(validate_range(va));
        if (va.is_empty()) return ok();
        uint64_t lo = to_linear(va.start());
        uint64_t hi = to_linear(va.last());
        MM_TRY_ASSIGN(size_t needed, count_splits(lo, hi));
        detail::TablePool<M> pool;
        MM_TRY(pool.fill(m_mem, needed));
        Status r = modify_table<Level::Pml4>(m_root, 0, lo, hi, op, flags, pool, {});
        pool.release(m_mem);
        return r;
    }

    // Number of tables the splits at the range's two boundaries need.
    Result<size_t> count_splits(uint64_t lo, uint64_t hi) const {
        detail::SplitSet splits;
        MM_TRY(note_split(lo, splits));
        if (hi + 1 < kLinearSize) MM_TRY(note_split(hi + 1, splits));
        return splits.count;
    }

    // A huge page containing boundary b (b not aligned to it) straddles the range edge.
    Status note_split(uint64_t b, detail::SplitSet& splits) const {
        auto leaf = walk(b);
        if (!leaf) return leaf.error() == Error::NotFound ? ok() : Status(err(leaf.error()));
        constexpr uint64_t k2M = bytes(PageSize::Size2M);
        constexpr uint64_t k1G = bytes(PageSize::Size1G);
        if (leaf->level == Level::Pdpt && !is_aligned(b, k1G)) {
            splits.add(Level::Pdpt, align_down(b, k1G));
            if (!is_aligned(b, k2M)) splits.add(Level::Pd, align_down(b, k2M));
        } else if (leaf->level == Level::Pd && !is_aligned(b, k2M)) {
            splits.add(Level::Pd, align_down(b, k2M));
        }
        return ok();
    }

    // Applies op to [lo, hi] (inclusive linear addresses, inside this table's span).
    template <Level L>
    Status modify_table(GuestFrame table, uint64_t base, uint64_t lo, uint64_t hi, Op op, uint64_t flags,
                        detail::TablePool<M>& pool, detail::TablePath path) {
        MM_TRY_ASSIGN(uint64_t * t, table_at(table));
        constexpr uint64_t kSpan = level_span(L);
        path = path.with(table);
        for (size_t i = table_index(lo, L); i <= table_index(hi, L); ++i) {
            uint64_t ebase = base + i * kSpan;
            uint64_t sub_lo = lo > ebase ? lo : ebase;
            uint64_t sub_hi = hi < ebase + kSpan - 1 ? hi : ebase + kSpan - 1;
            auto e = Entry<L>::load(t + i);
            if (!e.is_present()) continue;
            if (e.has_reserved_bits()) return err(Error::Corrupted);
            if (e.is_leaf()) {
                if (sub_lo == ebase && sub_hi == ebase + kSpan - 1) {
                    apply_leaf(t + i, op, flags);
                    continue;
                }
                if constexpr (L == Level::Pd || L == Level::Pdpt) {
                    MM_TRY_ASSIGN(e, split(t + i, e, pool));
                }
            }
            if constexpr (L != Level::Pt) {
                if (path.contains(e.frame())) return err(Error::Corrupted);
                MM_TRY(modify_table<lower(L)>(e.frame(), ebase, sub_lo, sub_hi, op, flags, pool, path));
                if (op == Op::Unmap) MM_TRY(free_if_empty(t + i, e.frame()));
            }
        }
        return ok();
    }

    static void apply_leaf(uint64_t* slot, Op op, uint64_t flags) {
        if (op == Op::Unmap)
            slot_store(slot, 0);
        else
            slot_set_perm(slot, flags);
    }

    // Replaces the huge leaf e in *slot by a table of 512 smaller leaves with the same
    // translations, permissions and attributes. The table is filled before one atomic
    // exchange publishes it; A/D bits set by hardware meanwhile are carried over.
    template <Level L>
    Result<Entry<L>> split(uint64_t* slot, Entry<L> e, detail::TablePool<M>& pool) {
        MM_TRY_ASSIGN(GuestFrame child, pool.take(m_mem));
        auto t = m_mem->table(child);
        if (!t) {
            m_mem->free_table(child);
            return err(Error::BadState);
        }
        uint64_t* entries = *t;
        for (size_t i = 0; i < kEntriesPerTable; ++i) entries[i] = e.split_child(i).raw();
        auto table_entry = Entry<L>::make_table(child);
        uint64_t prev = slot_exchange(slot, table_entry.raw());
        if (uint64_t ad = prev & pte::kAccessedDirty & ~e.raw())
            for (size_t i = 0; i < kEntriesPerTable; ++i) slot_fetch_or(entries + i, ad);
        return table_entry;
    }

    // Unlinks and frees the child table if it has no present entry.
    Status free_if_empty(uint64_t* slot, GuestFrame child) {
        MM_TRY_ASSIGN(uint64_t * t, table_at(child));
        for (size_t i = 0; i < kEntriesPerTable; ++i)
            if (raw_is_present(slot_load(t + i))) return ok();
        slot_store(slot, 0);
        m_mem->free_table(child);
        return ok();
    }

    // ---- range visit -------------------------------------------------------------------

    template <Level L, class F>
    Result<bool> visit(GuestFrame table, uint64_t base, uint64_t lo, uint64_t hi, detail::WalkPerm perm,
                       detail::TablePath path, F& fn, uint64_t& budget) const {
        if (budget == 0) return err(Error::Corrupted);
        --budget;
        MM_TRY_ASSIGN(uint64_t * t, table_at(table));
        constexpr uint64_t kSpan = level_span(L);
        path = path.with(table);
        for (size_t i = table_index(lo, L); i <= table_index(hi, L); ++i) {
            uint64_t ebase = base + i * kSpan;
            auto e = Entry<L>::load(t + i);
            if (!e.is_present()) continue;
            if (e.has_reserved_bits()) return err(Error::Corrupted);
            detail::WalkPerm p = perm;
            p.add(e.raw());
            if (e.is_leaf()) {
                if (!fn(static_cast<const Mapping&>(make_mapping(ebase, e.raw(), L, p)))) return false;
                continue;
            }
            if constexpr (L != Level::Pt) {
                if (path.contains(e.frame())) return err(Error::Corrupted);
                uint64_t sub_lo = lo > ebase ? lo : ebase;
                uint64_t sub_hi = hi < ebase + kSpan - 1 ? hi : ebase + kSpan - 1;
                MM_TRY_ASSIGN(bool go_on, visit<lower(L)>(e.frame(), ebase, sub_lo, sub_hi, p, path, fn, budget));
                if (!go_on) return false;
            }
        }
        return true;
    }

    // ---- invariants and teardown -------------------------------------------------------

    template <Level L>
    bool check_table(GuestFrame table, detail::TablePath path, uint64_t& budget) const {
        if (budget == 0) return false;
        --budget;
        auto t = m_mem->table(table);
        if (!t) return false;
        const uint64_t* entries = *t;
        path = path.with(table);
        size_t present = 0;
        for (size_t i = 0; i < kEntriesPerTable; ++i) {
            uint64_t raw = slot_load(entries + i);
            if (!raw_is_present(raw)) continue;
            ++present;
            if (raw_has_reserved_bits(raw, L)) return false;
            if constexpr (L != Level::Pt) {
                if (raw_is_leaf(raw, L)) continue;
                auto child = Entry<L>::from_raw(raw).frame();
                if (path.contains(child) || !check_table<lower(L)>(child, path, budget)) return false;
            }
        }
        return L == Level::Pml4 || present > 0;
    }

    template <Level L, class F>
    Result<bool> visit_tables(GuestFrame table, detail::TablePath path, F& fn, uint64_t& budget) const {
        if (budget == 0) return err(Error::Corrupted);
        --budget;
        MM_TRY_ASSIGN(uint64_t * entries, table_at(table));
        if (!fn(table)) return false;
        if constexpr (L != Level::Pt) {
            path = path.with(table);
            for (size_t i = 0; i < kEntriesPerTable; ++i) {
                uint64_t raw = slot_load(entries + i);
                if (!raw_is_present(raw)) continue;
                if (raw_has_reserved_bits(raw, L)) return err(Error::Corrupted);
                if (raw_is_leaf(raw, L)) continue;
                auto child = Entry<L>::from_raw(raw).frame();
                if (path.contains(child)) return err(Error::Corrupted);
                MM_TRY_ASSIGN(bool go_on, visit_tables<lower(L)>(child, path, fn, budget));
                if (!go_on) return false;
            }
        }
        return true;
    }

    template <Level L>
    void destroy_table(GuestFrame table, detail::TablePath path) {
        auto t = m_mem->table(table);
        if (!t) return;
        uint64_t* entries = *t;
        path = path.with(table);
        if constexpr (L != Level::Pt) {
            for (size_t i = 0; i < kEntriesPerTable; ++i) {
                auto e = Entry<L>::load(entries + i);
                if (!e.is_table() || e.has_reserved_bits() || path.contains(e.frame())) continue;
                destroy_table<lower(L)>(e.frame(), path);
            }
        }
        m_mem->free_table(table);
    }

    M* m_mem;
    GuestFrame m_root;
};

}  // namespace mm::x86
