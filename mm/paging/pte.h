// x86-64 4-level paging: levels, canonical addresses and the typed page-table entry.
//
// Entry<L> is the one entry template for every level (PML4E, PDPTE, PDE, PTE). It
// holds the raw 64-bit value privately; the frame it points at leaves it only as a
// typed GuestFrame / GuestPhysAddr, never as a raw integer.
//
// Encoding assumed (what pagevisor programs into the vCPU): IA-32e paging with
// CR4.PAE, EFER.LME and EFER.NXE set, CR0.WP set, MAXPHYADDR taken as 52 (the
// architectural maximum; a smaller CPU limit only makes more bits reserved, which
// hardware then reports as a reserved-bit #PF). Reserved bits checked here:
//   PML4E          bit 7 (PS)
//   PDPTE, PS=1    bits 29:13 (a 1 GiB frame is 1 GiB aligned; bit 12 is PAT)
//   PDE,   PS=1    bits 20:13 (a 2 MiB frame is 2 MiB aligned; bit 12 is PAT)
// Bits 11:9 and 62:52 are ignored by hardware and preserved across splits.
//
// Perm <-> flags: Read is implied by Present; Write -> RW; User -> US; no Exec -> NX.
// Intermediate (non-leaf) entries are created P|RW|US: permissions are enforced at
// the leaf, so the effective permission of a page is its leaf's (x86 ANDs RW and US
// and ORs NX over the walk, which query() reproduces for tables built elsewhere).
//
// Slot access: entries live in memory that hardware page walkers (other vCPUs) may
// read, and set A/D bits in, concurrently. Loads are acquire, stores release, and
// read-modify-writes are atomic (lock-prefixed), so a newly published table is seen
// fully initialised and a concurrently set A/D bit is never lost.
#pragma once

#include "mm/addr.h"
#include "mm/result.h"
#include "mm/std.h"

// The tiny helpers below sit on every walk; force them inline so that Debug builds
// (tests under sanitizers, the guest) do not pay a call per entry.
#define MM_PTE_INLINE [[gnu::always_inline]] inline

namespace mm::x86 {

// Level 1 is the page table (4 KiB leaves), 4 the PML4 (root, never a leaf).
enum class Level : uint8_t { Pt = 1, Pd = 2, Pdpt = 3, Pml4 = 4 };

inline constexpr size_t kEntriesPerTable = 512;
inline constexpr unsigned kVirtAddrBits = 48;
inline constexpr unsigned kPhysAddrBits = 52;
inline constexpr uint64_t kPhysAddrLimit = 1ULL << kPhysAddrBits;  // first GPA no entry can hold
inline constexpr uint64_t kLinearSize = 1ULL << kVirtAddrBits;     // size of the 48-bit linear space

MM_PTE_INLINE constexpr unsigned level_shift(Level l) { return 12U + 9U * (static_cast<unsigned>(l) - 1U); }
// Bytes mapped by one entry of a table at level l.
constexpr uint64_t level_span(Level l) { return 1ULL << level_shift(l); }
constexpr Level lower(Level l) { return static_cast<Level>(static_cast<uint8_t>(l) - 1U); }
constexpr bool can_be_leaf(Level l) { return l != Level::Pml4; }

constexpr Level level_of(PageSize s) {
    switch (s) {
        case PageSize::Size4K: return Level::Pt;
        case PageSize::Size2M: return Level::Pd;
        case PageSize::Size1G: return Level::Pdpt;
    }
    panic();
}
constexpr PageSize page_size_of(Level l) {
    switch (l) {
        case Level::Pt: return PageSize::Size4K;
        case Level::Pd: return PageSize::Size2M;
        case Level::Pdpt: return PageSize::Size1G;
        case Level::Pml4: break;
    }
    panic();
}
constexpr bool is_valid_page_size(PageSize s) {
    return s == PageSize::Size4K || s == PageSize::Size2M || s == PageSize::Size1G;
}

// Canonical: bits 63..47 are all equal.
constexpr bool is_canonical(GuestVirtAddr va) {
    uint64_t top = va.value() >> (kVirtAddrBits - 1);
    return top == 0 || top == (UINT64_MAX >> (kVirtAddrBits - 1));
}
// The 48-bit linear index of a canonical address: its low 48 bits. The
// non-canonical hole disappears, so a range with canonical first and last bytes
// is the contiguous linear range [to_linear(first), to_linear(last)].
constexpr uint64_t to_linear(GuestVirtAddr va) { return va.value() & (kLinearSize - 1); }
constexpr GuestVirtAddr from_linear(uint64_t lin) {
    MM_ASSERT(lin < kLinearSize);
    bool upper = (lin >> (kVirtAddrBits - 1)) != 0;
    return GuestVirtAddr(upper ? (lin | ~(kLinearSize - 1)) : lin);
}
MM_PTE_INLINE constexpr size_t table_index(uint64_t lin, Level l) {
    return (lin >> level_shift(l)) & (kEntriesPerTable - 1);
}

namespace pte {
inline constexpr uint64_t kPresent = 1ULL << 0;
inline constexpr uint64_t kWrite = 1ULL << 1;
inline constexpr uint64_t kUser = 1ULL << 2;
inline constexpr uint64_t kPwt = 1ULL << 3;
inline constexpr uint64_t kPcd = 1ULL << 4;
inline constexpr uint64_t kAccessed = 1ULL << 5;
inline constexpr uint64_t kDirty = 1ULL << 6;
inline constexpr uint64_t kHuge = 1ULL << 7;    // PS in PDPTE/PDE; reserved in PML4E
inline constexpr uint64_t kPat4K = 1ULL << 7;   // PAT in a PTE (same bit as PS)
inline constexpr uint64_t kGlobal = 1ULL << 8;  // leaves only
inline constexpr uint64_t kPatHuge = 1ULL << 12;
inline constexpr uint64_t kNoExec = 1ULL << 63;
inline constexpr uint64_t kAddrMask = (kPhysAddrLimit - 1) & ~(kPageSize - 1);  // bits 51:12
inline constexpr uint64_t kPermBits = kWrite | kUser | kNoExec;
inline constexpr uint64_t kAccessedDirty = kAccessed | kDirty;
inline constexpr uint64_t kIntermediate = kPresent | kWrite | kUser;
}  // namespace pte

// Leaf permission flags for perm (Read is implied by Present and not encoded).
constexpr uint64_t perm_to_flags(Perm p) {
    uint64_t f = pte::kPresent;
    if (has(p, Perm::Write)) f |= pte::kWrite;
    if (has(p, Perm::User)) f |= pte::kUser;
    if (!has(p, Perm::Exec)) f |= pte::kNoExec;
    return f;
}
// The permissions one entry grants on its own (Read always).
constexpr Perm flags_to_perm(uint64_t raw) {
    Perm p = Perm::Read;
    if (raw & pte::kWrite) p |= Perm::Write;
    if (raw & pte::kUser) p |= Perm::User;
    if (!(raw & pte::kNoExec)) p |= Perm::Exec;
    return p;
}

// ---- raw helpers with a run-time level (used by the loop-shaped walks) ----------

MM_PTE_INLINE constexpr bool raw_is_present(uint64_t raw) { return (raw & pte::kPresent) != 0; }
// A present entry maps a page (rather than pointing at a table).
MM_PTE_INLINE constexpr bool raw_is_leaf(uint64_t raw, Level l) {
    return l == Level::Pt || (l != Level::Pml4 && (raw & pte::kHuge) != 0);
}
// Address bits holding the frame of this entry (table pointer or leaf page).
MM_PTE_INLINE constexpr uint64_t raw_frame_mask(uint64_t raw, Level l) {
    if (l != Level::Pt && raw_is_leaf(raw, l)) return pte::kAddrMask & ~(level_span(l) - 1);
    return pte::kAddrMask;
}
MM_PTE_INLINE constexpr bool raw_has_reserved_bits(uint64_t raw, Level l) {
    if (l == Level::Pml4) return (raw & pte::kHuge) != 0;
    if (l == Level::Pt || !raw_is_leaf(raw, l)) return false;
    uint64_t reserved = (level_span(l) - 1) & ~((pte::kPatHuge << 1) - 1);  // bits shift-1 .. 13
    return (raw & reserved) != 0;
}

// ---- atomic slot access ----------------------------------------------------------

MM_PTE_INLINE uint64_t slot_load(const uint64_t* slot) { return __atomic_load_n(slot, __ATOMIC_ACQUIRE); }
MM_PTE_INLINE void slot_store(uint64_t* slot, uint64_t v) { __atomic_store_n(slot, v, __ATOMIC_RELEASE); }
MM_PTE_INLINE uint64_t slot_exchange(uint64_t* slot, uint64_t v) {
    return __atomic_exchange_n(slot, v, __ATOMIC_ACQ_REL);
}
// Writes `desired` only if the slot still holds `expected`; otherwise `expected`
// receives what the slot holds. The one primitive of concurrent installers.
MM_PTE_INLINE bool slot_compare_exchange(uint64_t* slot, uint64_t& expected, uint64_t desired) {
    return __atomic_compare_exchange_n(slot, &expected, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
MM_PTE_INLINE uint64_t slot_fetch_and(uint64_t* slot, uint64_t v) {
    return __atomic_fetch_and(slot, v, __ATOMIC_ACQ_REL);
}
MM_PTE_INLINE uint64_t slot_fetch_or(uint64_t* slot, uint64_t v) {
    return __atomic_fetch_or(slot, v, __ATOMIC_ACQ_REL);
}

// Sets the permission bits of a live leaf to those of `flags` without ever
// granting more than the old or new value at any instant (first restrict, then
// grant) and without losing A/D bits set concurrently by a hardware walker.
inline void slot_set_perm(uint64_t* slot, uint64_t flags) {
    uint64_t grant_keep = ~((pte::kWrite | pte::kUser) & ~flags);
    if (grant_keep != UINT64_MAX) slot_fetch_and(slot, grant_keep);
    if (flags & pte::kNoExec) slot_fetch_or(slot, pte::kNoExec);
    if (uint64_t grant = flags & (pte::kWrite | pte::kUser)) slot_fetch_or(slot, grant);
    if (!(flags & pte::kNoExec)) slot_fetch_and(slot, ~pte::kNoExec);
}

// ---- the typed entry ---------------------------------------------------------------

// One page-table entry of a table at level L. A value type: it is read from a
// slot with load() and written back with store(); it never refers to its slot.
// A zero entry is not present. Invariant kept by the factories: a leaf's frame is
// aligned to its page size and below 2^52; no reserved bit is ever produced.
template <Level L>
class Entry {
public:
    static constexpr Level kLevel = L;
    static constexpr bool kCanBeLeaf = can_be_leaf(L);

    constexpr Entry() = default;
    static constexpr Entry from_raw(uint64_t raw) { return Entry(raw); }
    static Entry load(const uint64_t* slot) { return Entry(slot_load(slot)); }
    void store(uint64_t* slot) const { slot_store(slot, m_raw); }

    // A present entry pointing at the table in frame `child` (P|RW|US).
    static constexpr Entry make_table(GuestFrame child) requires(L != Level::Pt) {
        MM_ASSERT(child.number() < (kPhysAddrLimit >> kPageShift));
        return Entry((child.number() << kPageShift) | pte::kIntermediate);
    }
    // A present leaf mapping the page starting at `frame`. `attrs` are flag bits only
    // (no address bits except PAT at bit 12 for huge leaves); PS is added here.
    static constexpr Entry make_leaf(GuestFrame frame, uint64_t attrs) requires(kCanBeLeaf) {
        MM_ASSERT(frame.number() < (kPhysAddrLimit >> kPageShift));
        uint64_t addr = frame.number() << kPageShift;
        MM_ASSERT(is_aligned(addr, level_span(L)));
        uint64_t frame_mask = L == Level::Pt ? pte::kAddrMask : pte::kAddrMask & ~(level_span(L) - 1);
        MM_ASSERT((attrs & frame_mask) == 0);
        if constexpr (L != Level::Pt) attrs |= pte::kHuge;
        Entry e(addr | attrs | pte::kPresent);
        MM_DEBUG_ASSERT(!e.has_reserved_bits());
        return e;
    }
    static constexpr Entry make_leaf(GuestPhysAddr pa, Perm perm) requires(kCanBeLeaf) {
        return make_leaf(GuestFrame::containing(pa), perm_to_flags(perm));
    }

    [[nodiscard]] constexpr uint64_t raw() const { return m_raw; }
    [[nodiscard]] constexpr bool is_present() const { return raw_is_present(m_raw); }
    [[nodiscard]] constexpr bool is_leaf() const { return is_present() && raw_is_leaf(m_raw, L); }
    [[nodiscard]] constexpr bool is_table() const { return is_present() && !raw_is_leaf(m_raw, L); }
    [[nodiscard]] constexpr bool has_reserved_bits() const { return is_present() && raw_has_reserved_bits(m_raw, L); }
    // The child table (is_table()) or the first frame of the page (is_leaf()).
    [[nodiscard]] constexpr GuestFrame frame() const {
        return GuestFrame((m_raw & raw_frame_mask(m_raw, L)) >> kPageShift);
    }
    [[nodiscard]] constexpr GuestPhysAddr phys() const { return frame().start_address(); }
    // Every bit except the frame address (flags, PAT, ignored bits).
    [[nodiscard]] constexpr uint64_t attrs() const { return m_raw & ~raw_frame_mask(m_raw, L); }
    [[nodiscard]] constexpr Perm perm() const { return flags_to_perm(m_raw); }
    [[nodiscard]] constexpr bool writable() const { return (m_raw & pte::kWrite) != 0; }
    [[nodiscard]] constexpr bool user() const { return (m_raw & pte::kUser) != 0; }
    [[nodiscard]] constexpr bool no_exec() const { return (m_raw & pte::kNoExec) != 0; }
    [[nodiscard]] constexpr bool accessed() const { return (m_raw & pte::kAccessed) != 0; }
    [[nodiscard]] constexpr bool dirty() const { return (m_raw & pte::kDirty) != 0; }
    [[nodiscard]] constexpr bool global() const { return is_leaf() && (m_raw & pte::kGlobal) != 0; }
    [[nodiscard]] constexpr PageSize page_size() const requires(kCanBeLeaf) { return page_size_of(L); }

    // The same entry with its permission bits replaced by those of `perm`.
    [[nodiscard]] constexpr Entry with_perm(Perm perm) const {
        return Entry((m_raw & ~pte::kPermBits) | (perm_to_flags(perm) & pte::kPermBits));
    }
    [[nodiscard]] constexpr Entry with_cleared(uint64_t bits) const { return Entry(m_raw & ~bits); }

    // Entry i of the table that replaces this huge leaf: a leaf one level down with the
    // same permissions and attributes, mapping the i-th piece of this page.
    [[nodiscard]] constexpr Entry<lower(L)> split_child(size_t i) const requires(L == Level::Pd || L == Level::Pdpt) {
        MM_ASSERT(is_leaf() && i < kEntriesPerTable);
        uint64_t attrs_lower = attrs() & ~(pte::kHuge | pte::kPresent);
        if constexpr (L == Level::Pd) {  // PAT moves from bit 12 to bit 7 in a PTE
            if (attrs_lower & pte::kPatHuge) attrs_lower = (attrs_lower & ~pte::kPatHuge) | pte::kPat4K;
        }
        GuestFrame f = frame() + i * (level_span(lower(L)) >> kPageShift);
        return Entry<lower(L)>::make_leaf(f, attrs_lower);
    }

    constexpr bool operator==(const Entry&) const = default;

private:
    constexpr explicit Entry(uint64_t raw) : m_raw(raw) {}
    uint64_t m_raw = 0;
};

using Pml4Entry = Entry<Level::Pml4>;
using PdptEntry = Entry<Level::Pdpt>;
using PdEntry = Entry<Level::Pd>;
using PtEntry = Entry<Level::Pt>;

}  // namespace mm::x86

#undef MM_PTE_INLINE
