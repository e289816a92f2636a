// MemorySet<Backend>: the set of mapped areas of one address space (guest-physical
// or guest-virtual), each mapped into a page table by its own backend. A port of
// the ArceOS `memory_set` crate (MemorySet / MemoryArea / MappingBackend) with its
// defects fixed: backend failures are reported precisely, bad sizes/alignments
// are errors, find_free_area is O(log n), and areas may end exactly at 2^64.
// See docs/memory_set.md for the full contract.
#pragma once

#include "mm/addr.h"
#include "mm/memory_set_tree.h"
#include "mm/result.h"
#include "mm/std.h"

namespace mm {

// How a backend maps, unmaps and re-protects the pages of its areas.
//
// A backend is a copyable VALUE describing one area [start, start + size): all
// per-area state (a linear backend's physical offset, a file backend's file
// position, a NUMA node) lives in it, and the set copies it when it cuts areas.
//   B::Addr       an mm::Addr<Tag>: the address space of the set
//   B::Flags      copyable, ==-comparable permission/attribute value
//   B::PageTable  what map/unmap/protect modify (passed by reference)
//   map(start, size, flags, pt)        map [start, start+size) with flags
//   unmap(start, size, pt)             unmap it
//   protect(start, size, flags, pt)    change the flags of a mapped range
//       Each is called on the backend value of exactly the piece [start, start+size)
//       it is given and must be ALL-OR-NOTHING: on an error return the range is
//       exactly as before the call. The error is returned to the set's caller
//       unchanged (by convention BadState for a page-table refusal).
//   split_at(offset) -> B              (non-const, never fails)
//       The area is being cut at `offset` bytes from its start (0 < offset < size):
//       returns the backend of the right-hand piece [start+offset, end) and leaves
//       *this as the backend of the left-hand piece [start, start+offset). A
//       backend whose state depends on the start (a linear offset) adjusts the
//       returned value; one whose state depends on the size adjusts *this.
//       Dropping a front part of an area is a split that keeps the right piece;
//       dropping a back part keeps the left piece. Called on copies only, so a
//       failed backend call leaves the stored value unchanged.
//   can_merge_with(right, left_size) -> bool   (const)
//       Whether this backend, of an area of left_size bytes, also describes the
//       area that follows it directly and has backend `right`, so that the two
//       can become one area of left_size + right.size bytes keeping *this.
template <class B>
concept MappingBackend = std::copy_constructible<B> && std::is_copy_assignable_v<B> && requires {
    typename B::Addr;
    typename B::Flags;
    typename B::PageTable;
} && AddressType<typename B::Addr> && std::copyable<typename B::Flags> && std::equality_comparable<typename B::Flags> &&
    requires(B b, const B& cb, typename B::Addr a, uint64_t n, typename B::Flags f, typename B::PageTable& pt) {
    { cb.map(a, n, f, pt) } -> std::same_as<Status>;
    { cb.unmap(a, n, pt) } -> std::same_as<Status>;
    { cb.protect(a, n, f, pt) } -> std::same_as<Status>;
    { b.split_at(n) } -> std::same_as<B>;
    { cb.can_merge_with(cb, n) } -> std::same_as<bool>;
};

template <MappingBackend B>
class MemorySet;

// What a protect() update function returns: "leave this area alone" or new flags.
// Any type with explicit operator bool and operator* works too (std::optional).
template <class Flags>
struct FlagsUpdate {
    static constexpr FlagsUpdate keep() { return {}; }
    static constexpr FlagsUpdate to(Flags f) { return {true, f}; }
    constexpr explicit operator bool() const { return m_change; }
    constexpr const Flags& operator*() const { return m_flags; }

    bool m_change = false;
    Flags m_flags{};
};

// One mapped area: a non-wrapping range (it may end exactly at 2^64), its flags
// and its backend. An area in a MemorySet is never empty; a set is the only
// thing that changes an area after construction.
template <MappingBackend B>
class MemoryArea {
public:
    using Addr = typename B::Addr;
    using Flags = typename B::Flags;
    using AddrRange = Range<typename Addr::tag_type>;

    MemoryArea(AddrRange range, Flags flags, B backend)
        : m_range(range), m_flags(flags), m_backend(static_cast<B&&>(backend)) {}
    // For trusted values: traps if [start, start+size) wraps past 2^64.
    MemoryArea(Addr start, uint64_t size, Flags flags, B backend)
        : MemoryArea(AddrRange::from_start_size(start, size), flags, static_cast<B&&>(backend)) {}
    // Overflow if [start, start+size) wraps past 2^64.
    static Result<MemoryArea> try_create(Addr start, uint64_t size, Flags flags, B backend) {
        MM_TRY_ASSIGN(AddrRange r, AddrRange::try_create(start, size));
        return MemoryArea(r, flags, static_cast<B&&>(backend));
    }

    [[nodiscard]] Addr start() const { return m_range.start(); }
    [[nodiscard]] uint64_t size() const { return m_range.size(); }
    [[nodiscard]] Addr last() const { return m_range.last(); }  // inclusive; area not empty
    [[nodiscard]] AddrRange range() const { return m_range; }
    [[nodiscard]] const Flags& flags() const { return m_flags; }
    [[nodiscard]] const B& backend() const { return m_backend; }
    [[nodiscard]] bool contains(Addr a) const { return m_range.contains(a); }

private:
    friend class MemorySet<B>;
    void assign(AddrRange r, Flags f, B b) {
        m_range = r;
        m_flags = f;
        m_backend = static_cast<B&&>(b);
    }

    AddrRange m_range;
    Flags m_flags;
    B m_backend;
};

// The areas of one address space, ordered and non-overlapping, indexed by a
// gap-augmented AVL tree (mm/memory_set_tree.h) whose nodes come from storage
// handed to try_create(): capacity = storage / node_bytes() areas.
//
// Invariant: after every call, successful or not, the set describes exactly
// what its backends have mapped: every byte in an area is mapped with the
// area's flags by that area's backend, every byte outside is left alone.
//
// Errors:
//   InvalidParam   size 0, alignment not a power of two, empty limit/storage
//   Overflow       [start, start+size) wraps past 2^64
//   AlreadyExists  map() over an existing area without unmap_overlap
//   NoMemory       node pool exhausted (nothing changed), or no free range fits
//   other          a backend's error, returned unchanged (see failure rules)
// Failure rules for unmap/protect/clear (and map's unmap_overlap step): areas are
// processed in ascending address order, one backend call per area piece. When a
// backend call fails, the pieces before it are done (and the set updated), the
// failing area and all after it are unchanged, and the error is returned. Nodes
// needed for splits are reserved before the first backend call, so NoMemory
// means nothing happened. map(): the new area is inserted only if its backend
// map succeeded. Destroying a set does not unmap anything (call clear()).
// Not thread-safe: the owner locks.
template <MappingBackend B>
class MemorySet {
public:
    using Area = MemoryArea<B>;
    using Addr = typename B::Addr;
    using Flags = typename B::Flags;
    using PageTable = typename B::PageTable;
    using AddrRange = Range<typename Addr::tag_type>;
    using Node = GapTreeNode<Area>;

    // Storage size per area; storage aligned to node_align() wastes nothing.
    static constexpr size_t node_bytes() { return sizeof(Node); }
    static constexpr size_t node_align() { return alignof(Node); }

    // InvalidParam if the storage cannot hold a single node. The storage must
    // outlive the set.
    static Result<MemorySet> try_create(std::span<std::byte> node_storage) {
        MemorySet set;
        set.m_pool = NodePool<Node>(node_storage);
        if (set.m_pool.capacity() == 0) return err(Error::InvalidParam);
        return set;
    }

    MemorySet(const MemorySet&) = delete;
    MemorySet& operator=(const MemorySet&) = delete;
    MemorySet(MemorySet&& o) noexcept : m_tree(static_cast<GapTree<Area>&&>(o.m_tree)), m_pool(o.m_pool) {
        o.m_pool = NodePool<Node>();
    }
    MemorySet& operator=(MemorySet&& o) noexcept {
        if (this == &o) return *this;
        destroy_all();
        m_tree = static_cast<GapTree<Area>&&>(o.m_tree);
        m_pool = o.m_pool;
        o.m_pool = NodePool<Node>();
        return *this;
    }
    ~MemorySet() { destroy_all(); }

    [[nodiscard]] size_t size() const { return m_tree.size(); }
    [[nodiscard]] bool is_empty() const { return m_tree.size() == 0; }
    [[nodiscard]] size_t capacity() const { return m_pool.capacity(); }
    [[nodiscard]] size_t free_nodes() const { return m_pool.available(); }

    // Maps `area` with its backend and adds it. InvalidParam if empty;
    // AlreadyExists if it overlaps an area, unless unmap_overlap, in which case
    // the overlapped parts are unmapped first (unmap rules). Never merges: call
    // merge_adjacent(area.range()) afterwards to coalesce with compatible neighbours.
    Status map(Area area, PageTable& pt, bool unmap_overlap) {
        if (area.size() == 0) return err(Error::InvalidParam);
        AddrRange r = area.range();
        Node* n = first_overlapping(r);
        if (n != nullptr && !unmap_overlap) return err(Error::AlreadyExists);
        MM_TRY(reserve(map_nodes_needed(n, r)));
        if (n != nullptr) MM_TRY(unmap_range(r, pt));
        MM_TRY(area.backend().map(area.start(), area.size(), area.flags(), pt));
        m_tree.insert(m_pool.create(area));
        return ok();
    }

    // Unmaps [start, start+size): areas inside are removed, areas crossing a
    // boundary shrink, an area containing the range splits in two. A range with
    // no area in it is fine. InvalidParam for size 0, Overflow on wrap.
    Status unmap(Addr start, uint64_t size, PageTable& pt) {
        MM_TRY_ASSIGN(AddrRange r, checked_range(start, size));
        return unmap_range(r, pt);
    }

    // For each area overlapping [start, start+size), update(old_flags) says
    // whether to change it (FlagsUpdate::keep()) or to what (FlagsUpdate::to(f));
    // the changed part is re-protected by the backend and split off at the range
    // boundaries. `update` must be a pure function: it may be called more than
    // once per area. InvalidParam for size 0, Overflow on wrap.
    template <class Fn>
    Status protect(Addr start, uint64_t size, Fn&& update, PageTable& pt) {
        MM_TRY_ASSIGN(AddrRange r, checked_range(start, size));
        Node* n = first_overlapping(r);
        MM_TRY(reserve(protect_nodes_needed(n, r, update)));
        for (; n != nullptr && n->area.start() <= r.last();) {
            Node* next = n->next;
            auto u = update(n->area.flags());
            if (u) MM_TRY(protect_piece(n, r, Flags(*u), pt));
            n = next;
        }
        return ok();
    }

    // Unmaps and removes every area (failure rules as unmap).
    Status clear(PageTable& pt) {
        while (Node* n = m_tree.first()) {
            const Area& a = n->area;
            MM_TRY(a.backend().unmap(a.start(), a.size(), pt));
            remove(n);
        }
        return ok();
    }

    // Joins each pair of directly adjacent areas whose boundary lies in
    // [r.start, r.start + r.size] (both ends included) when their flags are equal
    // and left.backend().can_merge_with(right.backend(), left.size()); the merged
    // area keeps the left backend. Metadata only: never calls map/unmap, never
    // fails. Returns the number of joins. O((1 + m) log n) for m boundaries.
    size_t merge_adjacent(AddrRange r) {
        size_t joins = 0;
        if (r.is_empty()) return 0;
        for (Node* b = m_tree.find_ge(r.start().value()); b != nullptr && b->area.start() - r.start() <= r.size();) {
            Node* next = b->next;
            if (try_join(b)) ++joins;
            b = next;
        }
        return joins;
    }
    size_t merge_adjacent() { return merge_adjacent(AddrRange::from_start_size(Addr(0), UINT64_MAX)); }

    // The area containing `a`, or null. O(log n).
    [[nodiscard]] const Area* find(Addr a) const {
        Node* n = m_tree.find_le(a.value());
        return n != nullptr && n->area.contains(a) ? &n->area : nullptr;
    }
    // Whether any area overlaps r (false for an empty r). O(log n).
    [[nodiscard]] bool overlaps(AddrRange r) const { return !r.is_empty() && first_overlapping(r) != nullptr; }

    // The lowest address x >= hint, aligned to `align`, such that
    // [x, x+size) is free and inside `limit`; if none, the lowest such x >=
    // limit.start() (the search wraps below the hint). A hint below the limit
    // starts at limit.start(); one above it searches from limit.start().
    // InvalidParam: size 0, align not a power of two, empty limit. NoMemory:
    // nothing fits. Cost: O((1 + k) log n), k = free gaps of at least `size`
    // bytes in the searched window that cannot hold an aligned block and lie
    // before the answer (each is shorter than size + align - 1).
    [[nodiscard]] Result<Addr> find_free_area(Addr hint, uint64_t size, AddrRange limit, uint64_t align) const {
        if (size == 0 || !is_power_of_two(align) || limit.is_empty()) return err(Error::InvalidParam);
        if (size > limit.size()) return err(Error::NoMemory);
        uint64_t lo = limit.start().value();
        uint64_t hi = limit.last().value();
        if (hint.value() > lo && hint.value() <= hi) {
            if (auto x = lowest_fit(hint.value(), hi, size, align)) return Addr(*x);
        }
        if (auto x = lowest_fit(lo, hi, size, align)) return Addr(*x);
        return err(Error::NoMemory);
    }

    class Iterator {
    public:
        explicit Iterator(const Node* n) : m_node(n) {}
        const Area& operator*() const { return m_node->area; }
        const Area* operator->() const { return &m_node->area; }
        Iterator& operator++() {
            m_node = m_node->next;
            return *this;
        }
        bool operator==(const Iterator&) const = default;

    private:
        const Node* m_node;
    };
    // Areas in ascending address order.
    [[nodiscard]] Iterator begin() const { return Iterator(m_tree.first()); }
    [[nodiscard]] Iterator end() const { return Iterator(nullptr); }

    [[nodiscard]] bool check_invariants() const {
        if (!m_tree.check_invariants() || m_pool.in_use() != m_tree.size()) return false;
        for (const Node* n = m_tree.first(); n != nullptr; n = n->next)
            if (n->area.size() == 0) return false;
        return true;
    }

private:
    MemorySet() = default;

    // The backends of the parts of an area left of, inside, and right of a piece.
    struct Cut {
        B left;
        B mid;
        B right;
        uint64_t front;  // bytes of the area before the piece
        uint64_t back;   // bytes after it
    };
    static Cut cut(const Area& a, AddrRange piece) {
        uint64_t front = piece.start() - a.start();
        uint64_t back = a.last() - piece.last();
        B left = a.backend();
        B mid = front != 0 ? left.split_at(front) : left;
        B right = back != 0 ? mid.split_at(piece.size()) : mid;
        return Cut{static_cast<B&&>(left), static_cast<B&&>(mid), static_cast<B&&>(right), front, back};
    }

    static Result<AddrRange> checked_range(Addr start, uint64_t size) {
        if (size == 0) return err(Error::InvalidParam);
        return AddrRange::try_create(start, size);
    }
    Status reserve(size_t nodes) const {
        if (m_pool.available() < nodes) return err(Error::NoMemory);
        return ok();
    }
    static bool strictly_inside(AddrRange r, const Node* n) {
        return n->area.start() < r.start() && r.last() < n->area.last();
    }
    // The lowest area overlapping r (r not empty), or null.
    Node* first_overlapping(AddrRange r) const {
        Node* n = m_tree.find_le(r.start().value());
        if (n != nullptr && n->area.last() >= r.start()) return n;
        n = n != nullptr ? n->next : m_tree.first();
        return n != nullptr && n->area.start() <= r.last() ? n : nullptr;
    }

    // One node for the new area, one more if it splits an area, minus the nodes
    // of the areas it replaces entirely (freed by the unmap before the insert).
    size_t map_nodes_needed(const Node* n, AddrRange r) const {
        if (n == nullptr) return 1;
        if (strictly_inside(r, n)) return 2;
        for (; n != nullptr && n->area.start() <= r.last(); n = n->next)
            if (r.contains(n->area.range())) return 0;
        return 1;
    }

    Status unmap_range(AddrRange r, PageTable& pt) {
        Node* n = first_overlapping(r);
        MM_TRY(reserve(n != nullptr && strictly_inside(r, n) ? 1 : 0));
        while (n != nullptr && n->area.start() <= r.last()) {
            Node* next = n->next;
            MM_TRY(unmap_piece(n, r, pt));
            n = next;
        }
        return ok();
    }
    Status unmap_piece(Node* n, AddrRange r, PageTable& pt) {
        AddrRange piece = n->area.range().intersect(r);
        Cut c = cut(n->area, piece);
        MM_TRY(c.mid.unmap(piece.start(), piece.size(), pt));
        Addr a_start = n->area.start();
        Flags flags = n->area.flags();
        if (c.front == 0 && c.back == 0) {
            remove(n);
        } else if (c.front == 0) {
            reshape(n, AddrRange::from_start_size(piece.last() + 1, c.back), flags, c.right);
        } else {
            reshape(n, AddrRange::from_start_size(a_start, c.front), flags, c.left);
            if (c.back != 0) add(AddrRange::from_start_size(piece.last() + 1, c.back), flags, c.right);
        }
        return ok();
    }

    template <class Fn>
    size_t protect_nodes_needed(Node* first, AddrRange r, Fn& update) const {
        if (first == nullptr) return 0;
        size_t needed = 0;
        if (update(first->area.flags()))
            needed += (first->area.start() < r.start() ? 1 : 0) + (first->area.last() > r.last() ? 1 : 0);
        Node* last = m_tree.find_le(r.last().value());
        if (last != nullptr && last != first && update(last->area.flags()))
            needed += last->area.last() > r.last() ? 1 : 0;
        return needed;
    }
    Status protect_piece(Node* n, AddrRange r, Flags new_flags, PageTable& pt) {
        AddrRange piece = n->area.range().intersect(r);
        Cut c = cut(n->area, piece);
        MM_TRY(c.mid.protect(piece.start(), piece.size(), new_flags, pt));
        Addr a_start = n->area.start();
        Flags old_flags = n->area.flags();
        if (c.front == 0) {
            reshape(n, piece, new_flags, c.mid);
        } else {
            reshape(n, AddrRange::from_start_size(a_start, c.front), old_flags, c.left);
            add(piece, new_flags, c.mid);
        }
        if (c.back != 0) add(AddrRange::from_start_size(piece.last() + 1, c.back), old_flags, c.right);
        return ok();
    }

    // Joins b into its predecessor when adjacent and compatible.
    bool try_join(Node* b) {
        Node* a = b->prev;
        if (a == nullptr || a->area.last() + 1 != b->area.start()) return false;
        if (!(a->area.flags() == b->area.flags())) return false;
        if (!a->area.backend().can_merge_with(b->area.backend(), a->area.size())) return false;
        uint64_t joined = a->area.size() + b->area.size();
        remove(b);
        a->area.m_range = AddrRange::from_start_size(a->area.start(), joined);
        m_tree.refresh(a);
        return true;
    }

    // The new range of n lies within its old one, so the tree order holds.
    void reshape(Node* n, AddrRange r, const Flags& f, const B& b) {
        n->area.assign(r, f, b);
        m_tree.refresh(n);
    }
    void add(AddrRange r, const Flags& f, const B& b) { m_tree.insert(m_pool.create(Area(r, f, b))); }
    void remove(Node* n) {
        m_tree.erase(n);
        m_pool.destroy(n);
    }
    // The lowest aligned x in [lo, hi] with [x, x+size) free and x+size-1 <= hi.
    struct Found {
        bool has = false;
        uint64_t at = 0;
        explicit operator bool() const { return has; }
        uint64_t operator*() const { return at; }
    };
    Found lowest_fit(uint64_t lo, uint64_t hi, uint64_t size, uint64_t align) const {
        Found found;
        m_tree.for_each_gap(lo, hi, size, [&](uint64_t gs, uint64_t gl) {
            uint64_t s = gs > lo ? gs : lo;
            uint64_t l = gl < hi ? gl : hi;
            if (s > l) return false;
            auto x = align_up(s, align);
            if (!x || *x > l || l - *x < size - 1) return false;
            found = Found{true, *x};
            return true;
        });
        return found;
    }
    void destroy_all() {
        m_tree.drain([this](Node* n) { m_pool.destroy(n); });
    }

    GapTree<Area> m_tree;
    NodePool<Node> m_pool;
};

}  // namespace mm
