// Model-based randomized test of mm::x86::PageTable: random map (4K/2M/1G), map_region,
// unmap_region and protect_region over a 4 GiB window (straddling a PML4 boundary) are
// applied to the table and to a page-granular reference model (kept as runs of pages); after every operation the
// result code, check_invariants() and sampled translations are compared, and the whole
// window is compared periodically. A second run caps the number of live tables so that
// NoMemory paths (map rollback, split reservation) are exercised and must change nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "mm/paging/page_table.h"
#include "tests/mm/paging/vector_table_memory.h"
#include "tests/support/seed.h"

namespace {

using mm::Error;
using mm::GuestPhysAddr;
using mm::GuestVirtAddr;
using mm::GuestVirtRange;
using mm::PageSize;
using mm::Perm;
using mm::x86::Mapping;
using pv::test::VectorTableMemory;
using Table = mm::x86::PageTable<VectorTableMemory>;

constexpr uint64_t k4K = 0x1000;
constexpr uint64_t k2M = 0x20'0000;
constexpr uint64_t k1G = 0x4000'0000;
constexpr uint64_t kWindow = 0x7f'8000'0000;  // 510 GiB: the window crosses into the second PML4 entry
constexpr uint64_t kWindowSize = 4 * k1G;
constexpr size_t kHotSlots = 24;  // 2M slots that receive most small operations (bounds the table count)

const Perm kPerms[] = {Perm::Read,
                       mm::kPermRW,
                       mm::kPermRX,
                       mm::kPermRWX,
                       Perm::Read | Perm::User,
                       mm::kPermRW | Perm::User,
                       mm::kPermRX | Perm::User,
                       mm::kPermAll};

struct ModelPage {
    uint64_t pa = 0;
    Perm perm = Perm::None;  // None: unmapped
};

// The reference: what each 4K page of the window maps to. Stored as runs of pages
// (start -> {size, pa, perm}, pa advancing with va) so that gigabyte operations stay
// cheap; runs are only ever split, never merged, so every operation is a few lines.
class Model {
public:
    [[nodiscard]] ModelPage at(uint64_t va) const {
        auto it = m_runs.upper_bound(va);
        if (it == m_runs.begin()) return {};
        --it;
        if (va - it->first >= it->second.size) return {};
        return ModelPage{it->second.pa + (va - it->first), it->second.perm};
    }
    [[nodiscard]] bool any_mapped(uint64_t va, uint64_t size) const {
        auto it = m_runs.lower_bound(va);
        if (it != m_runs.end() && it->first < va + size) return true;
        return at(va).perm != Perm::None;
    }
    void map(uint64_t va, uint64_t pa, uint64_t size, Perm perm) {
        m_runs[va] = Run{size, pa, perm};
        m_mapped += size / k4K;
    }
    void unmap(uint64_t va, uint64_t size) {
        auto [first, last] = isolate(va, size);
        for (auto it = first; it != last; ++it) m_mapped -= it->second.size / k4K;
        m_runs.erase(first, last);
    }
    void protect(uint64_t va, uint64_t size, Perm perm) {
        auto [first, last] = isolate(va, size);
        for (auto it = first; it != last; ++it) it->second.perm = perm;
    }
    [[nodiscard]] uint64_t mapped() const { return m_mapped; }
    // Bytes from va (mapped) to the end of its run.
    [[nodiscard]] uint64_t run_left(uint64_t va) const {
        auto it = --m_runs.upper_bound(va);
        return it->second.size - (va - it->first);
    }

private:
    struct Run {
        uint64_t size;
        uint64_t pa;
        Perm perm;
    };
    using Iter = std::map<uint64_t, Run>::iterator;

    // Splits runs at va and va+size; returns the runs inside [va, va+size).
    std::pair<Iter, Iter> isolate(uint64_t va, uint64_t size) {
        split_at(va);
        split_at(va + size);
        return {m_runs.lower_bound(va), m_runs.lower_bound(va + size)};
    }
    void split_at(uint64_t va) {
        auto it = m_runs.upper_bound(va);
        if (it == m_runs.begin()) return;
        --it;
        uint64_t off = va - it->first;
        if (off == 0 || off >= it->second.size) return;
        Run tail{it->second.size - off, it->second.pa + off, it->second.perm};
        it->second.size = off;
        m_runs.emplace(va, tail);
    }

    std::map<uint64_t, Run> m_runs;
    uint64_t m_mapped = 0;
};

template <class R>
std::optional<Error> error_of(const R& r) {
    if (r.has_value()) return std::nullopt;
    return r.error();
}

class ModelRun {
public:
    ModelRun(uint64_t seed, size_t table_limit) : m_rng(seed), m_limited(table_limit != SIZE_MAX) {
        m_mem.set_limit(table_limit);
        for (auto& s : m_hot) s = kWindow + (m_rng() % (kWindowSize / k2M)) * k2M;
    }

    void run(size_t ops) {
        for (size_t i = 0; i < ops && !::testing::Test::HasFatalFailure(); ++i) {
            m_op = i;
            step();
            ASSERT_TRUE(m_pt.check_invariants()) << "op " << i;
            if (i % 1000 == 999) full_compare();
        }
        full_compare();
        ASSERT_TRUE(m_pt.unmap_region(GuestVirtRange::from_start_size(GuestVirtAddr(kWindow), kWindowSize)));
        EXPECT_EQ(m_mem.live(), 1U);
        m_pt.destroy();
        EXPECT_EQ(m_mem.live(), 0U);
        EXPECT_EQ(m_mem.bad_frees(), 0U);
        if (m_limited) {
            EXPECT_GT(m_no_memory, 0U) << "the table limit never triggered NoMemory";
        }
        ::testing::Test::RecordProperty("max_live_tables", static_cast<int>(m_max_live));
        ::testing::Test::RecordProperty("no_memory_results", static_cast<int>(m_no_memory));
        std::printf("ops %zu, max live tables %zu, NoMemory results %zu\n", m_op + 1, m_max_live, m_no_memory);
    }

private:
    uint64_t below(uint64_t n) { return m_rng() % n; }
    Perm perm() { return kPerms[below(std::size(kPerms))]; }
    uint64_t hot_page() { return m_hot[below(kHotSlots)] + below(512) * k4K; }

    uint64_t pick_start() {
        uint64_t r = below(10);
        if (r < 6) return hot_page();
        if (r < 9) return kWindow + below(kWindowSize / k2M) * k2M;
        return kWindow + below(4) * k1G;
    }
    uint64_t pick_len(uint64_t start, bool small_only) {
        uint64_t r = below(20);
        uint64_t len = 0;
        if (r < 10 || small_only)
            len = (1 + below(64)) * k4K;
        else if (r < 16)
            len = (1 + below(4)) * k2M + below(4) * k4K;
        else if (r < 19)
            len = (1 + below(512)) * k2M;
        else
            len = k1G + below(512) * k2M;
        return std::min(len, kWindow + kWindowSize - start);
    }
    uint64_t phys(uint64_t align) { return (below(1ULL << 40) / align) * align; }

    // Records the outcome class of an operation the model says may succeed.
    bool accept(const mm::Status& st, const char* what, uint64_t va, uint64_t size) {
        if (st) return true;
        EXPECT_EQ(st.error(), Error::NoMemory)
            << what << " op " << m_op << std::hex << " va 0x" << va << " size 0x" << size;
        EXPECT_TRUE(m_limited) << "NoMemory with ample memory, op " << m_op;
        ++m_no_memory;
        if (m_no_memory < 64 || m_no_memory % 32 == 0) full_compare();  // "no change" holds
        return false;
    }

    void step() {
        uint64_t r = below(100);
        uint64_t va = 0, size = 0;
        if (r < 22) {
            va = hot_page();
            size = k4K;
            map_one(va, PageSize::Size4K);
        } else if (r < 30) {
            va = kWindow + below(kWindowSize / k2M) * k2M;
            size = k2M;
            map_one(va, PageSize::Size2M);
        } else if (r < 31) {
            va = kWindow + below(4) * k1G;
            size = k1G;
            map_one(va, PageSize::Size1G);
        } else if (r < 46) {
            va = pick_start();
            bool congruent = below(10) < 7;
            bool allow_huge = below(10) < 8;
            size = pick_len(va, !(congruent && allow_huge));
            uint64_t pa = congruent ? phys(k1G) + (va & (k1G - 1)) : phys(k4K);
            Perm p = perm();
            auto st = m_pt.map_region(GuestVirtRange::from_start_size(GuestVirtAddr(va), size), GuestPhysAddr(pa), p,
                                      allow_huge);
            if (m_model.any_mapped(va, size)) {
                EXPECT_EQ(error_of(st), std::optional<Error>(Error::AlreadyExists)) << "map_region op " << m_op;
            } else if (accept(st, "map_region", va, size)) {
                m_model.map(va, pa, size, p);
            }
        } else if (r < 75) {
            va = pick_start();
            size = pick_len(va, false);
            auto st = m_pt.unmap_region(GuestVirtRange::from_start_size(GuestVirtAddr(va), size));
            if (accept(st, "unmap_region", va, size)) m_model.unmap(va, size);
        } else if (r < 77) {
            va = pick_start();
            size = k4K;
            check_clear_accessed(va);
        } else {
            va = pick_start();
            size = pick_len(va, false);
            Perm p = perm();
            auto st = m_pt.protect_region(GuestVirtRange::from_start_size(GuestVirtAddr(va), size), p);
            if (accept(st, "protect_region", va, size)) m_model.protect(va, size, p);
        }
        m_max_live = std::max(m_max_live, m_mem.live());
        sample(va, size);
    }

    void map_one(uint64_t va, PageSize s) {
        uint64_t pa = phys(bytes(s));
        Perm p = perm();
        auto st = m_pt.map(GuestVirtAddr(va), GuestPhysAddr(pa), s, p);
        if (m_model.any_mapped(va, bytes(s))) {
            EXPECT_EQ(error_of(st), std::optional<Error>(Error::AlreadyExists)) << "map op " << m_op;
        } else if (accept(st, "map", va, bytes(s))) {
            m_model.map(va, pa, bytes(s), p);
        }
    }

    // clear_accessed returns the same mapping as query (A/D are not modelled) and leaves
    // the translation alone.
    void check_clear_accessed(uint64_t va) {
        auto before = m_pt.query(GuestVirtAddr(va));
        auto old = m_pt.clear_accessed(GuestVirtAddr(va));
        if (!before) {
            EXPECT_EQ(error_of(old), std::optional<Error>(before.error())) << "op " << m_op;
            return;
        }
        ASSERT_TRUE(old) << "op " << m_op;
        EXPECT_EQ(old->base, before->base);
        EXPECT_EQ(old->phys, before->phys);
        EXPECT_EQ(old->perm, before->perm);
        auto after = m_pt.query(GuestVirtAddr(va));
        ASSERT_TRUE(after);
        EXPECT_FALSE(after->accessed || after->dirty);
    }

    // Translation of a few addresses in and around the operated range, and anywhere.
    void sample(uint64_t va, uint64_t size) {
        for (int i = 0; i < 10; ++i) {
            uint64_t a = 0;
            if (i < 2)
                a = i == 0 ? va : va + size - 1;
            else if (i < 4)
                a = i == 2 ? va - 1 : va + size;
            else if (i < 8)
                a = va + below(size);
            else
                a = kWindow + below(kWindowSize);
            if (a < kWindow || a >= kWindow + kWindowSize) continue;
            check_address(a);
        }
    }

    void check_address(uint64_t a) {
        const ModelPage p = m_model.at(a & ~(k4K - 1));
        auto m = m_pt.query(GuestVirtAddr(a));
        if (p.perm == Perm::None) {
            ASSERT_EQ(error_of(m), std::optional<Error>(Error::NotFound))
                << std::hex << "va 0x" << a << " op " << std::dec << m_op;
            return;
        }
        ASSERT_TRUE(m) << std::hex << "va 0x" << a << " op " << std::dec << m_op;
        EXPECT_EQ(m_pt.translate(GuestVirtAddr(a)).value().value(), p.pa + (a & (k4K - 1)))
            << std::hex << "va 0x" << a << " op " << std::dec << m_op;
        EXPECT_EQ(m->perm, p.perm) << std::hex << "va 0x" << a << " op " << std::dec << m_op;
    }

    // Every leaf in the window matches the model page by page, and the leaves cover
    // exactly the model's mapped pages.
    void full_compare() {
        uint64_t pages = 0;
        bool ok = true;
        auto st =
            m_pt.for_each_mapping(GuestVirtRange::from_start_size(GuestVirtAddr(0), UINT64_MAX), [&](const Mapping& m) {
                ok = leaf_matches(m);
                pages += bytes(m.size) / k4K;
                return ok;
            });
        ASSERT_TRUE(st);
        if (ok) {
            ASSERT_EQ(pages, m_model.mapped()) << "op " << m_op;
        }
    }
    bool leaf_matches(const Mapping& m) {
        uint64_t base = m.base.value();
        if (base < kWindow || base + bytes(m.size) > kWindow + kWindowSize) {
            ADD_FAILURE() << std::hex << "leaf outside the window at 0x" << base;
            return false;
        }
        // Within one model run translation is linear with one perm: step run by run.
        for (uint64_t off = 0; off < bytes(m.size); off += m_model.run_left(base + off)) {
            const ModelPage p = m_model.at(base + off);
            if (p.perm != m.perm || p.pa != m.phys.value() + off) {
                ADD_FAILURE() << std::hex << "mismatch at 0x" << base + off << " op " << std::dec << m_op;
                return false;
            }
        }
        return true;
    }

    std::mt19937_64 m_rng;
    bool m_limited;
    VectorTableMemory m_mem{4096};
    Table m_pt = Table::try_create(&m_mem).value();
    Model m_model;
    uint64_t m_hot[kHotSlots] = {};
    size_t m_op = 0;
    size_t m_no_memory = 0;
    size_t m_max_live = 0;
};

TEST(PageTableModel, RandomOpsAmpleMemory) {
    const uint64_t seed = pv::test::test_seed(0x9a61);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    ModelRun run(seed, SIZE_MAX);
    run.run(60'000);
}

TEST(PageTableModel, RandomOpsTightMemory) {
    const uint64_t seed = pv::test::test_seed(0x9a62);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    ModelRun run(seed, 40);
    run.run(50'000);
}

}  // namespace
