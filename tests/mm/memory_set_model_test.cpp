// Model-based randomized tests of MemorySet: long random sequences of
// map/unmap/protect/find/overlaps/find_free_area/merge_adjacent compared after
// every step with a page-granular reference model (and check_invariants()), in
// small spaces so collisions are frequent, near 2^64, with a tiny node pool,
// and with injected backend failures.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <random>
#include <vector>

#include "tests/mm/memory_set_mock.h"
#include "tests/support/seed.h"

namespace {

using namespace pv::test;
using mm::Error;

// Reference model: per page, its flags (0 = unmapped), the id of the area it
// belongs to, its NUMA-like node and its linear frame. An area is a maximal run
// of consecutive pages with the same id.
struct Page {
    std::uint8_t flags = 0;
    std::uint8_t node = 0;
    std::uint32_t id = 0;
    std::uint64_t frame = 0;
};
struct Run {
    std::size_t first, count;
    std::uint8_t flags;
};

class Model {
public:
    explicit Model(std::size_t n) : pages(n) {}

    // Raw pointers: this runs after every operation, also in unoptimized builds.
    std::vector<Run> runs() const {
        std::vector<Run> out;
        const Page* pg = pages.data();
        for (std::size_t p = 0, n = pages.size(); p < n; ++p) {
            if (pg[p].flags == 0) continue;
            if (p > 0 && pg[p - 1].flags != 0 && pg[p - 1].id == pg[p].id)
                out.back().count++;
            else
                out.push_back({p, 1, pg[p].flags});
        }
        return out;
    }
    std::size_t run_count() const {
        std::size_t count = 0;
        const Page* pg = pages.data();
        for (std::size_t p = 0, n = pages.size(); p < n; ++p)
            count += pg[p].flags != 0 && (p == 0 || pg[p - 1].flags == 0 || pg[p - 1].id != pg[p].id);
        return count;
    }
    bool any_mapped(std::size_t first, std::size_t end) const {
        for (std::size_t p = first; p < std::min(end, pages.size()); ++p)
            if (pages[p].flags != 0) return true;
        return false;
    }
    std::uint32_t fresh_id() { return m_next_id++; }
    void canonicalize() {
        for (const Run& r : runs()) {
            std::uint32_t id = fresh_id();
            for (std::size_t p = r.first; p < r.first + r.count; ++p) pages[p].id = id;
        }
    }

    std::vector<Page> pages;

private:
    std::uint32_t m_next_id = 1;
};

struct Config {
    std::uint64_t salt;
    std::size_t pages;
    bool at_top;           // the table ends exactly at 2^64
    std::size_t capacity;  // node pool size
    int operations;
};

class Harness {
public:
    explicit Harness(const Config& c)
        : m_cfg(c),
          m_base(c.at_top ? 0 - c.pages * kPage : 0),
          m_rng(test_seed(c.salt)),
          m_model(c.pages),
          m_pt(m_base, c.pages),
          m_storage(c.capacity),
          m_set(std::move(MockSet::try_create(m_storage.span()).value())) {}

    void run() {
        SCOPED_TRACE(seed_trace(test_seed(m_cfg.salt)));
        for (int i = 0; i < m_cfg.operations && !::testing::Test::HasFatalFailure(); ++i) {
            SCOPED_TRACE("operation " + std::to_string(i));
            step();
            verify();
        }
        EXPECT_GT(m_no_memory + (m_cfg.capacity >= m_cfg.pages ? 1 : 0), 0) << "pool exhaustion never exercised";
    }

private:
    std::uint64_t rand(std::uint64_t n) { return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(m_rng); }
    std::uint64_t addr(std::uint64_t page) const { return m_base + page * kPage; }
    std::uint64_t random_pages() {
        std::uint64_t cap = rand(4) == 0 ? m_cfg.pages / 2 : 8;
        return 1 + rand(cap);
    }

    void step() {
        switch (rand(20)) {
            case 0:
            case 1:
            case 2:
            case 3:
            case 4:
            case 5: do_map(); break;
            case 6:
            case 7:
            case 8: do_unmap(); break;
            case 9:
            case 10:
            case 11: do_protect(); break;
            case 12:
            case 13: do_find(); break;
            case 14: do_overlaps(); break;
            case 15:
            case 16:
            case 17: do_find_free_area(); break;
            case 18: do_merge(); break;
            default: do_map(); break;
        }
    }

    // Applies `next` if the set must accept it (areas fit in the pool).
    void expect_status(const mm::Status& s, const Model& next) {
        if (next.run_count() > m_cfg.capacity) {
            ASSERT_FALSE(s);
            ASSERT_EQ(s.error(), Error::NoMemory);
            ++m_no_memory;
            return;
        }
        ASSERT_TRUE(s) << mm::error_name(s.error());
        m_model = next;
    }

    void do_map() {
        std::uint64_t first = rand(m_cfg.pages);
        std::uint64_t n = std::min<std::uint64_t>(random_pages(), m_cfg.pages - first);
        auto flags = static_cast<std::uint8_t>(1 + rand(3));
        auto node = static_cast<std::uint8_t>(rand(2));
        std::uint64_t pos = rand(1 << 20) * kPage;
        bool unmap_overlap = rand(2) == 0;
        auto s = m_set.map(MockArea(Addr(addr(first)), n * kPage, flags, MockBackend{pos, node, nullptr}), m_pt,
                           unmap_overlap);
        if (!unmap_overlap && m_model.any_mapped(first, first + n)) {
            ASSERT_FALSE(s);
            ASSERT_EQ(s.error(), Error::AlreadyExists);
            return;
        }
        Model next = m_model;
        std::uint32_t id = next.fresh_id();
        for (std::uint64_t i = 0; i < n; ++i) next.pages[first + i] = Page{flags, node, id, pos + i * kPage};
        expect_status(s, next);
    }

    void do_unmap() {
        std::uint64_t first = rand(m_cfg.pages);
        std::uint64_t n = random_pages() + (rand(8) == 0 ? 2 : 0);
        auto s = m_set.unmap(Addr(addr(first)), n * kPage, m_pt);
        if (m_cfg.at_top && first + n > m_cfg.pages) {
            ASSERT_FALSE(s);
            ASSERT_EQ(s.error(), Error::Overflow);
            return;
        }
        Model next = m_model;
        for (std::uint64_t p = first; p < std::min<std::uint64_t>(first + n, m_cfg.pages); ++p) next.pages[p] = Page{};
        expect_status(s, next);
    }

    void do_protect() {
        std::uint64_t first = rand(m_cfg.pages);
        std::uint64_t n = std::min<std::uint64_t>(random_pages(), m_cfg.pages - first);
        auto target = static_cast<std::uint8_t>(1 + rand(3));
        auto skip = static_cast<std::uint8_t>(rand(4));  // 0: skip nothing
        auto update = [=](std::uint8_t old) {
            return old == skip ? mm::FlagsUpdate<std::uint8_t>::keep() : mm::FlagsUpdate<std::uint8_t>::to(target);
        };
        auto s = m_set.protect(Addr(addr(first)), n * kPage, update, m_pt);
        Model next = m_model;
        std::uint32_t prev_old_id = 0;
        std::uint32_t id = 0;
        for (std::uint64_t p = first; p < first + n; ++p) {
            Page& pg = next.pages[p];
            if (pg.flags == 0 || pg.flags == skip) continue;
            if (pg.id != prev_old_id) id = next.fresh_id();  // each area's piece becomes its own area
            prev_old_id = pg.id;
            pg.id = id;
            pg.flags = target;
        }
        expect_status(s, next);
    }

    void do_find() {
        std::uint64_t page = rand(m_cfg.pages);
        std::uint64_t a = addr(page) + rand(kPage);
        const MockArea* area = m_set.find(Addr(a));
        if (m_model.pages[page].flags == 0) {
            ASSERT_EQ(area, nullptr);
            return;
        }
        ASSERT_NE(area, nullptr);
        for (const Run& r : m_model.runs()) {
            if (page >= r.first && page < r.first + r.count) {
                ASSERT_EQ(area->start().value(), addr(r.first));
                ASSERT_EQ(area->size(), r.count * kPage);
                ASSERT_EQ(area->flags(), r.flags);
            }
        }
    }

    void do_overlaps() {
        std::uint64_t first = rand(m_cfg.pages);
        std::uint64_t n = std::min<std::uint64_t>(random_pages(), m_cfg.pages - first);
        // Byte-granular: trim up to a page less than the page span on each side.
        std::uint64_t head = rand(kPage);
        std::uint64_t size = n * kPage - head - rand(kPage - head);
        bool expect = false;
        std::uint64_t start = addr(first) + head;
        for (std::uint64_t p = (start - m_base) / kPage; p <= (start + (size - 1) - m_base) / kPage; ++p)
            expect = expect || m_model.pages[p].flags != 0;
        ASSERT_EQ(m_set.overlaps(AddrRange::from_start_size(Addr(addr(first) + head), size)), expect);
    }

    // Brute force over the model: the lowest aligned x in [lo, lim_last] with
    // [x, x+size) free and inside the limit.
    std::optional<std::uint64_t> brute_lowest(std::uint64_t lo, std::uint64_t lim_last, std::uint64_t size,
                                              std::uint64_t align, const std::vector<std::uint64_t>& used) const {
        for (std::uint64_t x = (lo + align - 1) & ~(align - 1); x >= lo && x <= lim_last; x += align) {
            if (lim_last - x < size - 1) break;
            std::uint64_t p = (x - m_base) / kPage;
            if (used[p + size / kPage] == used[p]) return x;
        }
        return std::nullopt;
    }

    void do_find_free_area() {
        std::uint64_t ls = rand(4) == 0 ? 0 : rand(m_cfg.pages);
        std::uint64_t ln = rand(4) == 0 ? m_cfg.pages - ls : 1 + rand(m_cfg.pages - ls);
        auto limit = AddrRange::from_start_size(Addr(addr(ls)), ln * kPage);
        std::uint64_t hint = addr(rand(m_cfg.pages)) + (rand(4) == 0 ? rand(kPage) : 0);
        std::uint64_t size = (1 + rand(rand(4) == 0 ? m_cfg.pages / 4 : 4)) * kPage;
        std::uint64_t align = kPage << rand(6);
        std::vector<std::uint64_t> used(m_cfg.pages + 1, 0);
        for (std::size_t p = 0; p < m_cfg.pages; ++p) used[p + 1] = used[p] + (m_model.pages[p].flags != 0);
        std::uint64_t lo = limit.start().value();
        std::uint64_t hi = limit.last().value();
        std::optional<std::uint64_t> expect;
        if (size <= limit.size()) {
            if (hint > lo && hint <= hi) expect = brute_lowest(hint, hi, size, align, used);
            if (!expect) expect = brute_lowest(lo, hi, size, align, used);
        }
        auto r = m_set.find_free_area(Addr(hint), size, limit, align);
        if (!expect) {
            ASSERT_FALSE(r) << "got " << r->value();
            ASSERT_EQ(r.error(), Error::NoMemory);
        } else {
            ASSERT_TRUE(r) << "hint " << hint << " size " << size << " align " << align;
            ASSERT_EQ(r->value(), *expect) << "hint " << hint << " size " << size << " align " << align;
        }
    }

    void do_merge() {
        std::uint64_t first = rand(m_cfg.pages);
        std::uint64_t n = std::min<std::uint64_t>(random_pages(), m_cfg.pages - first);
        std::size_t joins = 0;
        // Ids must be unique per area: a merge gives B the id of A, which must not
        // also be the id of some other piece (an area split by unmap/protect).
        m_model.canonicalize();
        // Boundaries at pages first..first+n (both ends), in ascending order.
        for (std::uint64_t p = std::max<std::uint64_t>(first, 1); p <= first + n && p < m_cfg.pages; ++p) {
            Page& a = m_model.pages[p - 1];
            Page& b = m_model.pages[p];
            if (a.flags == 0 || b.flags == 0 || a.id == b.id) continue;
            if (a.flags != b.flags || a.node != b.node || a.frame + kPage != b.frame) continue;
            std::uint32_t old = b.id;
            for (std::uint64_t q = p; q < m_cfg.pages && m_model.pages[q].flags != 0 && m_model.pages[q].id == old; ++q)
                m_model.pages[q].id = a.id;
            ++joins;
        }
        ASSERT_EQ(m_set.merge_adjacent(AddrRange::from_start_size(Addr(addr(first)), n * kPage)), joins);
    }

    void verify() {
        ASSERT_TRUE(m_set.check_invariants());
        ASSERT_TRUE(set_matches_table(m_set, m_pt));
        const std::uint8_t* flags = m_pt.flags.data();
        const std::uint64_t* frames = m_pt.frame.data();
        for (std::size_t p = 0; p < m_cfg.pages; ++p) {
            const Page& pg = m_model.pages.data()[p];
            if (flags[p] != pg.flags || (pg.flags != 0 && frames[p] != pg.frame))
                FAIL() << "page " << p << ": table flags " << int(m_pt.flags[p]) << ", model " << int(pg.flags);
        }
        std::vector<Run> runs = m_model.runs();
        ASSERT_EQ(m_set.size(), runs.size());
        std::size_t i = 0;
        for (const MockArea& a : m_set) {
            if (a.start().value() != addr(runs[i].first) || a.size() != runs[i].count * kPage)
                FAIL() << "area " << i << " differs from the model";
            ++i;
        }
        ASSERT_EQ(m_set.free_nodes(), m_cfg.capacity - runs.size());
    }

    Config m_cfg;
    std::uint64_t m_base;
    std::mt19937_64 m_rng;
    Model m_model;
    MockPageTable m_pt;
    SetStorage m_storage;
    MockSet m_set;
    int m_no_memory = 0;
};

TEST(MemorySetModel, SmallSpace) {
    for (std::uint64_t salt = 1; salt <= 3; ++salt) Harness(Config{salt, 256, false, 256, 25000}).run();
}

TEST(MemorySetModel, LargerSpace) { Harness(Config{10, 1024, false, 1024, 10000}).run(); }

TEST(MemorySetModel, EndingAt2To64) {
    for (std::uint64_t salt = 20; salt <= 21; ++salt) Harness(Config{salt, 256, true, 256, 8000}).run();
}

TEST(MemorySetModel, TinyNodePool) {
    Harness(Config{30, 256, false, 12, 10000}).run();
    Harness(Config{31, 256, true, 5, 5000}).run();
}

// Random operations with a backend that fails every few calls: after each
// operation the set equals the page table and its invariants hold.
TEST(MemorySetModel, InjectedBackendFailures) {
    for (std::uint64_t salt = 40; salt <= 42; ++salt) {
        std::uint64_t seed = test_seed(salt);
        SCOPED_TRACE(seed_trace(seed));
        std::mt19937_64 rng(seed);
        auto rand = [&](std::uint64_t n) { return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng); };
        const std::size_t pages = 128;
        SetStorage storage(pages);
        MockPageTable pt(0, pages);
        auto set = std::move(MockSet::try_create(storage.span()).value());
        Injector inj;
        for (int i = 0; i < 8000 && !::testing::Test::HasFatalFailure(); ++i) {
            inj.countdown = static_cast<long>(rand(4));
            std::uint64_t first = rand(pages);
            std::uint64_t n = 1 + rand(std::min<std::uint64_t>(pages - first, rand(4) == 0 ? 64 : 6));
            Addr a(first * kPage);
            mm::Status s;
            switch (rand(4)) {
                case 0:
                    s = set.map(MockArea(a, n * kPage, 1, MockBackend{rand(1000) * kPage, 0, &inj}), pt, true);
                    break;
                case 1: s = set.unmap(a, n * kPage, pt); break;
                case 2:
                    s = set.protect(
                        a, n * kPage,
                        [](std::uint8_t f) { return mm::FlagsUpdate<std::uint8_t>::to(std::uint8_t(f % 3 + 1)); }, pt);
                    break;
                default: (void)set.merge_adjacent(AddrRange::from_start_size(a, n * kPage)); break;
            }
            if (!s) {
                ASSERT_EQ(s.error(), Error::BadState);
            }
            ASSERT_TRUE(set.check_invariants());
            ASSERT_TRUE(set_matches_table(set, pt));
        }
        EXPECT_GT(inj.failures, 100);
        inj.countdown = -1;
        ASSERT_TRUE(set.clear(pt));
        for (auto f : pt.flags) ASSERT_EQ(f, 0);
    }
}

}  // namespace
