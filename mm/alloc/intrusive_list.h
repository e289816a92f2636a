// IntrusiveList: a null-terminated doubly linked list of nodes embedded in the
// objects they link (free blocks, slab chunks). Used by the byte allocators.
//
// Invariants: head->prev == nullptr; for every node n in the list,
// n->next->prev == n. The list owns nothing: nodes live in managed memory and
// removing a node only unlinks it. All operations are O(1).
#pragma once

#include "mm/std.h"

namespace mm {

struct ListNode {
    ListNode* next;
    ListNode* prev;
};

class IntrusiveList {
public:
    [[nodiscard]] bool empty() const { return m_head == nullptr; }
    [[nodiscard]] ListNode* front() const { return m_head; }

    void push_front(ListNode* n) {
        n->prev = nullptr;
        n->next = m_head;
        if (m_head != nullptr) m_head->prev = n;
        m_head = n;
    }
    // `n` must be in this list.
    void remove(ListNode* n) {
        if (n->prev != nullptr)
            n->prev->next = n->next;
        else
            m_head = n->next;
        if (n->next != nullptr) n->next->prev = n->prev;
    }
    ListNode* pop_front() {
        ListNode* n = m_head;
        if (n != nullptr) remove(n);
        return n;
    }

    // Walks the list checking the back links; false if they are inconsistent or
    // the list is longer than `max_len` (a cycle). Calls fn(node) for each node;
    // fn returns false to report a bad node.
    template <class Fn>
    [[nodiscard]] bool walk(size_t max_len, Fn&& fn) const {
        const ListNode* prev = nullptr;
        size_t n = 0;
        for (const ListNode* it = m_head; it != nullptr; prev = it, it = it->next) {
            if (it->prev != prev || ++n > max_len || !fn(it)) return false;
        }
        return true;
    }

    // Back links consistent and no cycle shorter than `max_len` nodes.
    [[nodiscard]] bool check_invariants(size_t max_len = SIZE_MAX) const {
        return walk(max_len, [](const ListNode*) { return true; });
    }

private:
    ListNode* m_head = nullptr;
};

namespace detail {

// Bit helpers over a word array (bitmaps kept inside managed memory).
inline bool bit_test(const uint64_t* words, size_t i) { return (words[i / 64] >> (i % 64)) & 1U; }
inline void bit_set(uint64_t* words, size_t i) { words[i / 64] |= uint64_t(1) << (i % 64); }
inline void bit_clear(uint64_t* words, size_t i) { words[i / 64] &= ~(uint64_t(1) << (i % 64)); }
inline size_t bit_count(const uint64_t* words, size_t nwords) {
    size_t n = 0;
    for (size_t i = 0; i < nwords; ++i) n += static_cast<size_t>(std::popcount(words[i]));
    return n;
}
// Set bits in [lo, hi).
inline size_t bit_count_range(const uint64_t* words, size_t lo, size_t hi) {
    size_t n = 0;
    while (lo < hi && lo % 64 != 0) n += bit_test(words, lo++);
    for (; lo + 64 <= hi; lo += 64) n += static_cast<size_t>(std::popcount(words[lo / 64]));
    while (lo < hi) n += bit_test(words, lo++);
    return n;
}
inline void words_clear(uint64_t* words, size_t nwords) {
    for (size_t i = 0; i < nwords; ++i) words[i] = 0;
}
constexpr unsigned floor_log2(uint64_t x) { return 63U - static_cast<unsigned>(std::countl_zero(x)); }
// ceil(log2(x)) for x >= 1.
constexpr unsigned ceil_log2(uint64_t x) { return x <= 1 ? 0U : 64U - static_cast<unsigned>(std::countl_zero(x - 1)); }

}  // namespace detail
}  // namespace mm
