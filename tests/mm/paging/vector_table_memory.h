// A TableMemory for tests and benchmarks: `count` frames at guest-physical frame
// `base`, held in a std::vector. table() is bounds-checked; in strict mode it also
// refuses frames that are not currently allocated, so a walk into a freed table is
// caught. Counts live tables and records double frees instead of crashing.
#pragma once

#include <cstdint>
#include <vector>

#include "mm/paging/page_table.h"

namespace pv::test {

class VectorTableMemory {
public:
    explicit VectorTableMemory(std::size_t count, mm::GuestFrame base = mm::GuestFrame(0x100), bool strict = true)
        : m_base(base), m_words(count * mm::x86::kEntriesPerTable, 0), m_live(count, false), m_strict(strict) {
        for (std::size_t i = count; i > 0; --i) m_free.push_back(i - 1);
    }

    mm::Result<std::uint64_t*> table(mm::GuestFrame f) const {
        if (f < m_base || f - m_base >= m_live.size()) return mm::err(mm::Error::OutOfRange);
        std::size_t i = f - m_base;
        if (m_strict && !m_live[i]) return mm::err(mm::Error::OutOfRange);
        return const_cast<std::uint64_t*>(m_words.data() + i * mm::x86::kEntriesPerTable);
    }
    mm::Result<mm::GuestFrame> alloc_table() {
        if (m_free.empty() || m_live_count >= m_limit) return mm::err(mm::Error::NoMemory);
        std::size_t i = m_free.back();
        m_free.pop_back();
        m_live[i] = true;
        ++m_live_count;
        ++m_allocs;
        for (std::size_t w = 0; w < mm::x86::kEntriesPerTable; ++w) m_words[i * mm::x86::kEntriesPerTable + w] = 0;
        return m_base + i;
    }
    void free_table(mm::GuestFrame f) {
        if (f < m_base || f - m_base >= m_live.size() || !m_live[f - m_base]) {
            ++m_bad_frees;
            return;
        }
        std::size_t i = f - m_base;
        m_live[i] = false;
        --m_live_count;
        m_free.push_back(i);
    }

    // At most `n` tables live at once (NoMemory beyond).
    void set_limit(std::size_t n) { m_limit = n; }
    [[nodiscard]] std::size_t live() const { return m_live_count; }
    [[nodiscard]] std::size_t allocs() const { return m_allocs; }
    [[nodiscard]] std::size_t bad_frees() const { return m_bad_frees; }
    [[nodiscard]] std::size_t capacity() const { return m_live.size(); }
    [[nodiscard]] mm::GuestFrame base() const { return m_base; }
    // Raw entries of frame index i (0-based), for corrupting tables on purpose.
    std::uint64_t* words(std::size_t i) { return m_words.data() + i * mm::x86::kEntriesPerTable; }
    std::uint64_t* words(mm::GuestFrame f) { return words(f - m_base); }
    [[nodiscard]] bool is_live(mm::GuestFrame f) const {
        return f >= m_base && f - m_base < m_live.size() && m_live[f - m_base];
    }

private:
    mm::GuestFrame m_base;
    std::vector<std::uint64_t> m_words;
    std::vector<bool> m_live;
    std::vector<std::size_t> m_free;
    std::size_t m_live_count = 0;
    std::size_t m_allocs = 0;
    std::size_t m_bad_frees = 0;
    std::size_t m_limit = SIZE_MAX;
    bool m_strict;
};

static_assert(mm::x86::TableMemory<VectorTableMemory>);

}  // namespace pv::test
