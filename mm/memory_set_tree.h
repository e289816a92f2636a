// GapTree: the index behind MemorySet. An intrusive AVL tree of non-overlapping
// areas keyed by start address, threaded by an in-order doubly-linked list, and
// augmented so that the lowest free gap of a given size is found in O(log n).
//
// Each node stores, for its subtree:
//   sub_first  start of the leftmost area
//   sub_last   last byte (inclusive) of the rightmost area
//   max_gap    the largest free gap between two consecutive areas of the subtree
// These are functions of the subtree's contents only (not of neighbours outside
// it), so they survive rotations and are recomputed bottom-up by update().
//
// Invariants (check_invariants()): in-order = list order = ascending start;
// consecutive areas do not overlap (prev.last < next.start); every area is
// non-empty; |height(left) - height(right)| <= 1; stored heights and
// augmentation equal their recomputed values; node count == size().
//
// Ownership: the tree links nodes it does not own; NodePool hands them out from
// caller-provided storage (the owner, MemorySet, pairs the two). No function
// here fails: capacity is checked by the owner before a node is created.
// `Area` needs `start()` and `last()` returning an mm::Addr and `size()`.
#pragma once

#include "mm/std.h"

namespace mm {

template <class Area>
struct GapTreeNode {
    explicit GapTreeNode(const Area& a) : area(a) {}

    Area area;
    GapTreeNode* left = nullptr;
    GapTreeNode* right = nullptr;
    GapTreeNode* prev = nullptr;  // in-order neighbours
    GapTreeNode* next = nullptr;
    uint64_t sub_first = 0;
    uint64_t sub_last = 0;
    uint64_t max_gap = 0;
    int32_t height = 1;
};

// Fixed-capacity pool of Node slots carved from caller storage: a bump pointer
// plus a free list, so creation is O(1) and no slot is touched before first use.
// The storage must outlive the pool; unaligned storage loses its first bytes.
template <class Node>
class NodePool {
public:
    NodePool() = default;
    explicit NodePool(std::span<std::byte> storage) {
        auto raw = reinterpret_cast<uintptr_t>(storage.data());
        uintptr_t aligned = (raw + alignof(Node) - 1) & ~uintptr_t(alignof(Node) - 1);
        size_t pad = aligned - raw;
        if (pad > storage.size()) return;
        m_base = storage.data() + pad;
        m_capacity = (storage.size() - pad) / sizeof(Node);
    }

    [[nodiscard]] size_t capacity() const { return m_capacity; }
    [[nodiscard]] size_t in_use() const { return m_in_use; }
    [[nodiscard]] size_t available() const { return m_capacity - m_in_use; }

    // The caller has checked available() > 0.
    template <class... Args>
    Node* create(Args&&... args) {
        MM_ASSERT(available() > 0);
        void* slot = nullptr;
        if (m_free != nullptr) {
            slot = m_free;
            m_free = m_free->next;
        } else {
            slot = m_base + m_bumped * sizeof(Node);
            ++m_bumped;
        }
        ++m_in_use;
        return ::new (slot) Node(std::forward<Args>(args)...);
    }
    void destroy(Node* n) {
        MM_DEBUG_ASSERT(m_in_use > 0);
        n->~Node();
        m_free = ::new (static_cast<void*>(n)) FreeSlot{m_free};
        --m_in_use;
    }

private:
    struct FreeSlot {
        FreeSlot* next;
    };
    static_assert(sizeof(Node) >= sizeof(FreeSlot) && alignof(Node) >= alignof(FreeSlot));

    std::byte* m_base = nullptr;
    size_t m_capacity = 0;
    size_t m_bumped = 0;
    size_t m_in_use = 0;
    FreeSlot* m_free = nullptr;
};

template <class Area>
class GapTree {
public:
    using Node = GapTreeNode<Area>;

    GapTree() = default;
    GapTree(const GapTree&) = delete;
    GapTree& operator=(const GapTree&) = delete;
    GapTree(GapTree&& o) noexcept { take(o); }
    GapTree& operator=(GapTree&& o) noexcept {
        if (this != &o) take(o);
        return *this;
    }

    [[nodiscard]] size_t size() const { return m_size; }
    [[nodiscard]] Node* first() const { return m_head; }
    [[nodiscard]] Node* last() const { return m_tail; }

    // The area with the greatest start <= key, or null. O(log n).
    [[nodiscard]] Node* find_le(uint64_t key) const {
        Node* best = nullptr;
        for (Node* t = m_root; t != nullptr;) {
            if (start(t) <= key) {
                best = t;
                t = t->right;
            } else {
                t = t->left;
            }
        }
        return best;
    }
    // The area with the lowest start >= key, or null. O(log n).
    [[nodiscard]] Node* find_ge(uint64_t key) const {
        Node* n = find_le(key);
        if (n == nullptr) return m_head;
        return start(n) == key ? n : n->next;
    }

    // Links a fresh node; its area must not overlap any linked area.
    void insert(Node* n) {
        Node* pred = find_le(start(n));
        n->left = n->right = nullptr;
        n->prev = pred;
        n->next = pred != nullptr ? pred->next : m_head;
        (n->prev != nullptr ? n->prev->next : m_head) = n;
        (n->next != nullptr ? n->next->prev : m_tail) = n;
        update(n);
        m_root = insert_at(m_root, n);
        ++m_size;
    }
    // Unlinks a node of this tree (the caller then destroys it).
    void erase(Node* n) {
        m_root = erase_at(m_root, n);
        (n->prev != nullptr ? n->prev->next : m_head) = n->next;
        (n->next != nullptr ? n->next->prev : m_tail) = n->prev;
        n->left = n->right = n->prev = n->next = nullptr;
        --m_size;
    }
    // After n's area shrank or grew in place without crossing a neighbour:
    // recomputes the augmentation on the root-to-n path. O(log n).
    void refresh(Node* n) { refresh_at(m_root, n); }

    // Calls fn(gap_first, gap_last) for the free gaps (maximal unoccupied
    // inclusive ranges of the whole 2^64 space) that intersect [lo, hi] and are
    // at least `need` bytes, in ascending order, until fn returns true.
    // Returns whether fn returned true. Cost: O((1 + k) log n) for k calls.
    template <class Fn>
    bool for_each_gap(uint64_t lo, uint64_t hi, uint64_t need, Fn&& fn) const {
        if (m_head == nullptr) return fn(uint64_t{0}, UINT64_MAX);
        uint64_t first_start = start(m_head);
        if (first_start >= need && lo < first_start && fn(uint64_t{0}, first_start - 1)) return true;
        if (visit_gaps(m_root, lo, hi, need, fn)) return true;
        uint64_t tail_last = last(m_tail);
        return UINT64_MAX - tail_last >= need && hi > tail_last && fn(tail_last + 1, UINT64_MAX);
    }

    // Removes every node, calling dispose(node) on each (in address order).
    template <class Fn>
    void drain(Fn&& dispose) {
        for (Node* n = m_head; n != nullptr;) {
            Node* next = n->next;
            dispose(n);
            n = next;
        }
        m_root = m_head = m_tail = nullptr;
        m_size = 0;
    }

    [[nodiscard]] bool check_invariants() const {
        const Node* cursor = m_head;
        size_t count = 0;
        if (m_root == nullptr) return m_head == nullptr && m_tail == nullptr && m_size == 0;
        if (m_head->prev != nullptr || m_tail->next != nullptr) return false;
        if (check_subtree(m_root, cursor, count) < 0) return false;
        return cursor == nullptr && count == m_size;
    }

private:
    static uint64_t start(const Node* n) { return n->area.start().value(); }
    static uint64_t last(const Node* n) { return n->area.last().value(); }
    static int32_t height(const Node* n) { return n != nullptr ? n->height : 0; }
    static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

    // Free bytes between the left subtree and n, and between n and the right subtree.
    static uint64_t gap_before(const Node* n) { return start(n) - n->left->sub_last - 1; }
    static uint64_t gap_after(const Node* n) { return n->right->sub_first - last(n) - 1; }

    static void update(Node* n) {
        n->height = 1 + (height(n->left) > height(n->right) ? height(n->left) : height(n->right));
        n->sub_first = n->left != nullptr ? n->left->sub_first : start(n);
        n->sub_last = n->right != nullptr ? n->right->sub_last : last(n);
        uint64_t g = 0;
        if (n->left != nullptr) g = max_u64(n->left->max_gap, gap_before(n));
        if (n->right != nullptr) g = max_u64(g, max_u64(n->right->max_gap, gap_after(n)));
        n->max_gap = g;
    }
    static Node* rotate_right(Node* y) {
        Node* x = y->left;
        y->left = x->right;
        x->right = y;
        update(y);
        update(x);
        return x;
    }
    static Node* rotate_left(Node* x) {
        Node* y = x->right;
        x->right = y->left;
        y->left = x;
        update(x);
        update(y);
        return y;
    }
    static Node* rebalance(Node* t) {
        update(t);
        int32_t balance = height(t->left) - height(t->right);
        if (balance > 1) {
            if (height(t->left->left) < height(t->left->right)) t->left = rotate_left(t->left);
            return rotate_right(t);
        }
        if (balance < -1) {
            if (height(t->right->right) < height(t->right->left)) t->right = rotate_right(t->right);
            return rotate_left(t);
        }
        return t;
    }
    static Node* insert_at(Node* t, Node* n) {
        if (t == nullptr) return n;
        if (start(n) < start(t))
            t->left = insert_at(t->left, n);
        else
            t->right = insert_at(t->right, n);
        return rebalance(t);
    }
    static Node* detach_min(Node* t, Node*& min) {
        if (t->left == nullptr) {
            min = t;
            return t->right;
        }
        t->left = detach_min(t->left, min);
        return rebalance(t);
    }
    static Node* erase_at(Node* t, Node* n) {
        MM_ASSERT(t != nullptr);
        if (start(n) < start(t)) {
            t->left = erase_at(t->left, n);
        } else if (start(t) < start(n)) {
            t->right = erase_at(t->right, n);
        } else {
            MM_ASSERT(t == n);
            if (t->left == nullptr) return t->right;
            if (t->right == nullptr) return t->left;
            Node* min = nullptr;
            Node* right = detach_min(t->right, min);
            min->left = t->left;
            min->right = right;
            return rebalance(min);
        }
        return rebalance(t);
    }
    static void refresh_at(Node* t, Node* n) {
        MM_ASSERT(t != nullptr);
        if (t != n) refresh_at(start(n) < start(t) ? t->left : t->right, n);
        update(t);
    }

    // In-order walk of the internal gaps of t's subtree, pruned by max_gap and by
    // the window: a pruned-in subtree lying inside [lo, hi] surely holds a gap
    // >= need, so only the two boundary paths are walked without reporting.
    template <class Fn>
    static bool visit_gaps(const Node* t, uint64_t lo, uint64_t hi, uint64_t need, Fn& fn) {
        if (t == nullptr || t->max_gap < need || t->sub_last < lo || t->sub_first > hi) return false;
        if (visit_gaps(t->left, lo, hi, need, fn)) return true;
        if (t->left != nullptr && gap_before(t) >= need) {
            uint64_t gs = t->left->sub_last + 1;
            uint64_t gl = start(t) - 1;
            if (gs > hi) return false;
            if (gl >= lo && fn(gs, gl)) return true;
        }
        if (t->right != nullptr && gap_after(t) >= need) {
            uint64_t gs = last(t) + 1;
            uint64_t gl = t->right->sub_first - 1;
            if (gs > hi) return false;
            if (gl >= lo && fn(gs, gl)) return true;
        }
        return visit_gaps(t->right, lo, hi, need, fn);
    }

    // Returns the subtree height, or -1 on any violation; advances `cursor`
    // along the list in step with the in-order walk.
    static int32_t check_subtree(const Node* t, const Node*& cursor, size_t& count) {
        if (t == nullptr) return 0;
        int32_t hl = check_subtree(t->left, cursor, count);
        if (hl < 0 || cursor != t) return -1;
        if (t->area.size() == 0) return -1;
        if (t->prev != nullptr && (t->prev->next != t || last(t->prev) >= start(t))) return -1;
        cursor = t->next;
        ++count;
        int32_t hr = check_subtree(t->right, cursor, count);
        if (hr < 0) return -1;
        if (hl - hr > 1 || hr - hl > 1) return -1;
        if (t->left != nullptr && t->left->sub_last >= start(t)) return -1;
        if (t->right != nullptr && t->right->sub_first <= last(t)) return -1;
        Node copy = *t;
        update(&copy);
        if (copy.height != t->height || copy.sub_first != t->sub_first || copy.sub_last != t->sub_last ||
            copy.max_gap != t->max_gap)
            return -1;
        return t->height;
    }

    void take(GapTree& o) {
        m_root = o.m_root;
        m_head = o.m_head;
        m_tail = o.m_tail;
        m_size = o.m_size;
        o.m_root = o.m_head = o.m_tail = nullptr;
        o.m_size = 0;
    }

    Node* m_root = nullptr;
    Node* m_head = nullptr;
    Node* m_tail = nullptr;
    size_t m_size = 0;
};

}  // namespace mm
