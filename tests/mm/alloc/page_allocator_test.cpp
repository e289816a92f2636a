// Typed suite over every page allocator (mm::PageAllocator): alignment, exhaustion,
// statistics, error contracts, segments at the top of the address space, and a
// model-based randomized test against a std::set of allocated pages.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "mm/alloc/allocator.h"
#include "mm/alloc/bitmap.h"
#include "tests/support/seed.h"

namespace {

using mm::Error;

template <class A>
class PageAllocTest : public ::testing::Test {
protected:
    using Address = typename A::Address;
    static constexpr uint64_t kPage = A::kPageSize;
    static constexpr uint64_t kPageSpace = UINT64_MAX / kPage + 1;  // pages in the 64-bit space

    void init(size_t pages, size_t segments = 8) {
        m_meta.assign(A::metadata_bytes(pages, segments), std::byte{0});
        ASSERT_TRUE(m_alloc.init(std::span(m_meta), segments).has_value());
        ASSERT_TRUE(m_alloc.check_invariants());
    }
    // Adds pages [first_page, first_page + pages) and records the segment.
    void add(uint64_t first_page, uint64_t pages) {
        auto r = m_alloc.add_memory(Address(first_page * kPage), pages * kPage);
        ASSERT_TRUE(r.has_value()) << mm::error_name(r.error());
        m_segments.emplace_back(first_page, pages);
        m_total += pages;
        ASSERT_TRUE(m_alloc.check_invariants());
    }
    static Address page_addr(uint64_t page) { return Address(page * kPage); }
    static uint64_t page_of(Address a) { return a.value() / kPage; }

    void expect_used(size_t used) {
        EXPECT_EQ(m_alloc.total_pages(), m_total);
        EXPECT_EQ(m_alloc.used_pages(), used);
        EXPECT_EQ(m_alloc.available_pages(), m_total - used);
        EXPECT_TRUE(m_alloc.check_invariants());
    }
    // The allocation state of every managed page, to prove "no change".
    std::vector<bool> snapshot() const {
        std::vector<bool> s;
        for (auto [first, pages] : m_segments)
            for (uint64_t p = 0; p < pages; ++p) s.push_back(m_alloc.is_allocated(page_addr(first + p)));
        return s;
    }

    std::vector<std::byte> m_meta;
    A m_alloc;
    std::vector<std::pair<uint64_t, uint64_t>> m_segments;
    size_t m_total = 0;
};

using PageAllocators =
    ::testing::Types<mm::BitmapPageAllocator<mm::GuestPhysAddr>, mm::BitmapPageAllocator<mm::HostVirtAddr>,
                     mm::BitmapPageAllocator<mm::GuestVirtAddr, 16384>>;
TYPED_TEST_SUITE(PageAllocTest, PageAllocators);

TYPED_TEST(PageAllocTest, SatisfiesConcept) {
    static_assert(mm::PageAllocator<TypeParam>);
    TypeParam fresh;
    EXPECT_TRUE(fresh.check_invariants());
    EXPECT_EQ(fresh.total_pages(), 0u);
    EXPECT_EQ(fresh.add_memory(typename TypeParam::Address(0), TypeParam::kPageSize).error(), Error::BadState);
    EXPECT_EQ(fresh.alloc_pages(1, TypeParam::kPageSize).error(), Error::NoMemory);
}

// Every n in 1..600 with every alignment from one page to 4 MiB, from a segment
// starting at an odd page whose first half has scattered allocated pages: the
// ABSOLUTE address is aligned, the run is inside the segment and allocated.
TYPED_TEST(PageAllocTest, AlignmentSweep) {
    constexpr uint64_t kFirst = 0x12345;  // odd page number
    constexpr uint64_t kPages = 8192;
    this->init(kPages);
    this->add(kFirst, kPages);
    size_t pinned = 0;
    for (uint64_t p = 0; p < kPages / 2; p += 37, ++pinned)
        ASSERT_TRUE(this->m_alloc.alloc_pages_at(this->page_addr(kFirst + p), 1, this->kPage).has_value());
    for (size_t n = 1; n <= 600; ++n) {
        for (uint64_t align = this->kPage; align <= 4 * 1024 * 1024; align *= 2) {
            SCOPED_TRACE(testing::Message() << "n=" << n << " align=" << align);
            auto r = this->m_alloc.alloc_pages(n, align);
            ASSERT_TRUE(r.has_value()) << mm::error_name(r.error());
            ASSERT_EQ(r->value() % align, 0u);
            uint64_t first = this->page_of(*r);
            ASSERT_GE(first, kFirst);
            ASSERT_LE(first + n, kFirst + kPages);
            ASSERT_TRUE(this->m_alloc.is_allocated(*r));
            ASSERT_TRUE(this->m_alloc.is_allocated(this->page_addr(first + n - 1)));
            ASSERT_EQ(this->m_alloc.used_pages(), pinned + n);
            ASSERT_TRUE(this->m_alloc.check_invariants());
            ASSERT_TRUE(this->m_alloc.dealloc_pages(*r, n).has_value());
            ASSERT_EQ(this->m_alloc.used_pages(), pinned);
        }
    }
    this->expect_used(pinned);
}

TYPED_TEST(PageAllocTest, ExhaustionAndRecovery) {
    this->init(1000, 2);
    this->add(100, 700);
    this->add(5000, 300);
    std::set<uint64_t> got;
    for (size_t i = 0; i < 1000; ++i) {
        auto r = this->m_alloc.alloc_pages(1, this->kPage);
        ASSERT_TRUE(r.has_value());
        ASSERT_TRUE(got.insert(this->page_of(*r)).second) << "page handed out twice";
        this->expect_used(i + 1);
    }
    EXPECT_EQ(this->m_alloc.alloc_pages(1, this->kPage).error(), Error::NoMemory);
    this->expect_used(1000);
    for (uint64_t p : got) ASSERT_TRUE(this->m_alloc.dealloc_pages(this->page_addr(p), 1).has_value());
    this->expect_used(0);
    // A run never spans two segments, so 701 pages do not fit; 700 do.
    EXPECT_EQ(this->m_alloc.alloc_pages(701, this->kPage).error(), Error::NoMemory);
    auto big = this->m_alloc.alloc_pages(700, this->kPage);
    ASSERT_TRUE(big.has_value());
    EXPECT_EQ(this->page_of(*big), 100u);
    auto rest = this->m_alloc.alloc_pages(300, this->kPage);
    ASSERT_TRUE(rest.has_value());
    EXPECT_EQ(this->page_of(*rest), 5000u);
    this->expect_used(1000);
}

TYPED_TEST(PageAllocTest, InvalidParameters) {
    using Addr = typename TypeParam::Address;
    const uint64_t pg = this->kPage;
    this->init(64);
    EXPECT_EQ(this->m_alloc.init(std::span(this->m_meta)).error(), Error::AlreadyInitialized);
    EXPECT_EQ(this->m_alloc.add_memory(Addr(pg), 0).error(), Error::InvalidParam);
    EXPECT_EQ(this->m_alloc.add_memory(Addr(pg + 1), pg).error(), Error::InvalidParam);
    EXPECT_EQ(this->m_alloc.add_memory(Addr(pg), pg + 8).error(), Error::InvalidParam);
    EXPECT_EQ(this->m_alloc.add_memory(Addr(UINT64_MAX - pg + 1), 2 * pg).error(), Error::InvalidParam);  // wraps
    this->add(16, 32);
    EXPECT_EQ(this->m_alloc.alloc_pages(0, pg).error(), Error::InvalidParam);
    EXPECT_EQ(this->m_alloc.alloc_pages(1, pg / 2).error(), Error::InvalidParam);
    EXPECT_EQ(this->m_alloc.alloc_pages(1, 3 * pg).error(), Error::InvalidParam);
    EXPECT_EQ(this->m_alloc.alloc_pages(1, 0).error(), Error::InvalidParam);
    EXPECT_EQ(this->m_alloc.alloc_pages(33, pg).error(), Error::NoMemory);
    EXPECT_EQ(this->m_alloc.alloc_pages(1, size_t(1) << 63).error(), Error::NoMemory);
    EXPECT_EQ(this->m_alloc.alloc_pages_at(this->page_addr(16), 0, pg).error(), Error::InvalidParam);
    EXPECT_EQ(this->m_alloc.alloc_pages_at(Addr(16 * pg + 1), 1, pg).error(), Error::InvalidParam);
    EXPECT_EQ(this->m_alloc.alloc_pages_at(this->page_addr(17), 1, 2 * pg).error(), Error::InvalidParam);
    EXPECT_EQ(this->m_alloc.dealloc_pages(this->page_addr(16), 0).error(), Error::InvalidParam);
    EXPECT_EQ(this->m_alloc.dealloc_pages(Addr(16 * pg + 1), 1).error(), Error::InvalidParam);
    this->expect_used(0);
}

TYPED_TEST(PageAllocTest, OverlappingAddMemory) {
    this->init(1000);
    this->add(100, 100);  // [100, 200)
    for (auto [first, pages] : std::vector<std::pair<uint64_t, uint64_t>>{
             {100, 1}, {199, 1}, {50, 51}, {150, 100}, {0, 1000}, {120, 10}, {199, 50}}) {
        auto r = this->m_alloc.add_memory(this->page_addr(first), pages * this->kPage);
        ASSERT_FALSE(r.has_value()) << first << "+" << pages;
        EXPECT_EQ(r.error(), Error::MemoryOverlap) << first << "+" << pages;
    }
    this->add(200, 10);  // adjacent on both sides is fine
    this->add(90, 10);
    this->expect_used(0);
    EXPECT_EQ(this->m_alloc.segment_count(), 3u);
}

TYPED_TEST(PageAllocTest, DoubleFreeIsNotAllocatedAndChangesNothing) {
    this->init(256);
    this->add(64, 256);
    auto a = this->m_alloc.alloc_pages(8, this->kPage);
    auto b = this->m_alloc.alloc_pages(4, this->kPage);
    ASSERT_TRUE(a && b);
    ASSERT_TRUE(this->m_alloc.dealloc_pages(*a, 8).has_value());
    auto before = this->snapshot();
    EXPECT_EQ(this->m_alloc.dealloc_pages(*a, 8).error(), Error::NotAllocated);
    EXPECT_EQ(this->m_alloc.dealloc_pages(*a, 1).error(), Error::NotAllocated);
    EXPECT_EQ(this->snapshot(), before);
    this->expect_used(4);
}

TYPED_TEST(PageAllocTest, PartialFreeOverAFreePageChangesNothing) {
    this->init(256);
    this->add(64, 256);
    auto a = this->m_alloc.alloc_pages_at(this->page_addr(100), 10, this->kPage);
    auto b = this->m_alloc.alloc_pages_at(this->page_addr(111), 10, this->kPage);  // page 110 stays free
    ASSERT_TRUE(a && b);
    auto before = this->snapshot();
    EXPECT_EQ(this->m_alloc.dealloc_pages(this->page_addr(100), 21).error(), Error::NotAllocated);
    EXPECT_EQ(this->m_alloc.dealloc_pages(this->page_addr(105), 6).error(), Error::NotAllocated);
    EXPECT_EQ(this->m_alloc.dealloc_pages(this->page_addr(120), 2).error(), Error::NotAllocated);
    EXPECT_EQ(this->m_alloc.dealloc_pages(this->page_addr(310), 20).error(), Error::NotAllocated);  // runs off the end
    EXPECT_EQ(this->m_alloc.dealloc_pages(this->page_addr(10), 1).error(), Error::NotAllocated);    // unmanaged
    EXPECT_EQ(this->snapshot(), before);
    this->expect_used(20);
    // A sub-range of an allocation may be freed on its own.
    EXPECT_TRUE(this->m_alloc.dealloc_pages(this->page_addr(103), 4).has_value());
    this->expect_used(16);
}

TYPED_TEST(PageAllocTest, AllocAtTakenAndFreeRanges) {
    this->init(512, 4);
    this->add(0, 128);
    this->add(128, 64);  // adjacent to the first
    this->add(1024, 64);
    auto a = this->m_alloc.alloc_pages_at(this->page_addr(10), 5, this->kPage);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(this->page_of(*a), 10u);
    auto before = this->snapshot();
    EXPECT_EQ(this->m_alloc.alloc_pages_at(this->page_addr(14), 3, this->kPage).error(), Error::NoMemory);
    EXPECT_EQ(this->m_alloc.alloc_pages_at(this->page_addr(0), 11, this->kPage).error(), Error::NoMemory);
    EXPECT_EQ(this->m_alloc.alloc_pages_at(this->page_addr(190), 4, this->kPage).error(), Error::OutOfRange);
    EXPECT_EQ(this->m_alloc.alloc_pages_at(this->page_addr(500), 1, this->kPage).error(), Error::OutOfRange);
    EXPECT_EQ(this->snapshot(), before);
    // Adjacent segments: one range across both, allocated and freed as a unit.
    ASSERT_TRUE(this->m_alloc.alloc_pages_at(this->page_addr(120), 16, 8 * this->kPage).has_value());
    this->expect_used(21);
    EXPECT_TRUE(this->m_alloc.is_allocated(this->page_addr(127)));
    EXPECT_TRUE(this->m_alloc.is_allocated(this->page_addr(135)));
    ASSERT_TRUE(this->m_alloc.dealloc_pages(this->page_addr(120), 16).has_value());
    ASSERT_TRUE(this->m_alloc.alloc_pages_at(this->page_addr(15), 1, this->kPage).has_value());
    this->expect_used(6);
}

TYPED_TEST(PageAllocTest, SegmentAtTopOfAddressSpace) {
    const uint64_t top_page = this->kPageSpace - 1;  // its last byte is 2^64 - 1
    this->init(600);
    this->add(top_page - 511, 512);
    this->add(0, 1);
    EXPECT_FALSE(this->m_alloc.is_allocated(typename TypeParam::Address(UINT64_MAX)));
    auto top = this->m_alloc.alloc_pages_at(this->page_addr(top_page), 1, this->kPage);
    ASSERT_TRUE(top.has_value());
    EXPECT_TRUE(this->m_alloc.is_allocated(typename TypeParam::Address(UINT64_MAX)));
    EXPECT_EQ(this->m_alloc.alloc_pages_at(this->page_addr(top_page), 2, this->kPage).error(), Error::OutOfRange);
    EXPECT_EQ(this->m_alloc.dealloc_pages(this->page_addr(top_page), 2).error(), Error::NotAllocated);
    uint64_t big_align = 64 * this->kPage;
    auto r = this->m_alloc.alloc_pages(200, big_align);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->value() % big_align, 0u);
    EXPECT_GE(this->page_of(*r), top_page - 511);
    // The rest of the top segment, single pages, up to exhaustion.
    size_t used = 201;
    while (auto p = this->m_alloc.alloc_pages(1, this->kPage)) {
        ++used;
        ASSERT_LE(used, 513u);
    }
    this->expect_used(513);
    ASSERT_TRUE(this->m_alloc.dealloc_pages(*top, 1).has_value());
    ASSERT_TRUE(this->m_alloc.dealloc_pages(*r, 200).has_value());
    this->expect_used(312);
    auto again = this->m_alloc.alloc_pages(1, this->kPage);
    ASSERT_TRUE(again.has_value());
}

TYPED_TEST(PageAllocTest, TinySegments) {
    this->init(32, 32);
    for (uint64_t i = 0; i < 32; ++i) this->add(1000 + 3 * i, 1);  // 1-page segments with 2-page holes
    EXPECT_EQ(this->m_alloc.alloc_pages(2, this->kPage).error(), Error::NoMemory);
    auto r = this->m_alloc.alloc_pages(1, 4 * this->kPage);  // pages 1000 + 3i divisible by 4
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(this->page_of(*r) % 4, 0u);
    std::set<uint64_t> got{this->page_of(*r)};
    while (auto p = this->m_alloc.alloc_pages(1, this->kPage)) ASSERT_TRUE(got.insert(this->page_of(*p)).second);
    EXPECT_EQ(got.size(), 32u);
    for (uint64_t p : got) EXPECT_EQ((p - 1000) % 3, 0u);
    this->expect_used(32);
    EXPECT_EQ(this->m_alloc.add_memory(this->page_addr(5000), this->kPage).error(), Error::NoMemory);  // table full
}

TYPED_TEST(PageAllocTest, UnalignedSegmentStartGivesAbsoluteAlignment) {
    const uint64_t two_mib_pages = (2u << 20) / this->kPage;
    this->init(4 * two_mib_pages + 1);
    this->add(two_mib_pages * 3 + 1, 4 * two_mib_pages + 1);  // starts one page past a 2 MiB boundary
    for (int i = 0; i < 4; ++i) {
        auto r = this->m_alloc.alloc_pages(1, 2u << 20);
        ASSERT_TRUE(r.has_value());
        EXPECT_EQ(r->value() % (2u << 20), 0u);
    }
    EXPECT_EQ(this->m_alloc.alloc_pages(1, 2u << 20).error(), Error::NoMemory);  // only 4 boundaries inside
    this->expect_used(4);
}

// ---- model-based randomized test -------------------------------------------

// Reference model: the managed segments and the std::set of allocated pages.
struct PageModel {
    std::vector<std::pair<uint64_t, uint64_t>> segments;  // sorted (first page, pages)
    std::set<uint64_t> allocated;
    uint64_t page_space = 0;

    bool managed(uint64_t first, uint64_t n) const {
        if (first >= page_space || n > page_space - first) return false;
        for (uint64_t p = first; n > 0;) {
            auto it = std::find_if(segments.begin(), segments.end(),
                                   [&](auto s) { return p >= s.first && p - s.first < s.second; });
            if (it == segments.end()) return false;
            uint64_t take = std::min(n, it->second - (p - it->first));
            n -= take;
            p += take;
        }
        return true;
    }
    size_t allocated_in(uint64_t first, uint64_t n) const {
        size_t c = 0;
        for (auto it = allocated.lower_bound(first); it != allocated.end() && *it - first < n; ++it) ++c;
        return c;
    }
    // Whether some segment holds n free pages starting at a multiple of align.
    bool fits(uint64_t n, uint64_t align) const {
        for (auto [first, pages] : segments) {
            uint64_t gap = first;
            uint64_t end = first + pages;
            auto it = allocated.lower_bound(first);
            for (;;) {
                uint64_t gap_end = (it != allocated.end() && *it < end) ? *it : end;
                uint64_t s = (gap + align - 1) / align * align;
                if (s >= gap && s < gap_end && gap_end - s >= n) return true;
                if (gap_end == end) break;
                gap = gap_end + 1;
                ++it;
            }
        }
        return false;
    }
};

template <class A>
void run_page_model(uint64_t seed, size_t ops) {
    using Addr = typename A::Address;
    constexpr uint64_t kPage = A::kPageSize;
    std::mt19937_64 rng(seed);
    auto rand = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };

    PageModel model;
    model.page_space = UINT64_MAX / kPage + 1;
    // Segments: one at the very top, one at an odd page, one adjacent to it, a few tiny ones.
    std::vector<std::pair<uint64_t, uint64_t>> want = {
        {model.page_space - rand(64, 700), 0}, {rand(1, 1000) * 2 + 1, rand(200, 1500)}, {0, rand(1, 300)}};
    want[0].second = model.page_space - want[0].first;
    want[2].first = want[1].first + want[1].second;
    for (int i = 0; i < 3; ++i) want.emplace_back(rand(1, 1000) * 4096 + rand(0, 4000), rand(1, 3));
    size_t total = 0;
    for (auto s : want) total += s.second;
    std::vector<std::byte> meta(A::metadata_bytes(total, want.size()));
    A alloc;
    ASSERT_TRUE(alloc.init(std::span(meta), want.size()).has_value());
    for (auto s : want) {
        bool overlaps = std::any_of(model.segments.begin(), model.segments.end(), [&](auto t) {
            return s.first < t.first + t.second && t.first < s.first + s.second;
        });
        auto r = alloc.add_memory(Addr(s.first * kPage), s.second * kPage);
        ASSERT_EQ(r.has_value(), !overlaps);
        if (overlaps) {
            ASSERT_EQ(r.error(), Error::MemoryOverlap);
            continue;
        }
        model.segments.push_back(s);
    }
    std::sort(model.segments.begin(), model.segments.end());
    size_t model_total = 0;
    for (auto s : model.segments) model_total += s.second;
    ASSERT_EQ(alloc.total_pages(), model_total);

    std::vector<std::pair<uint64_t, uint64_t>> blocks;  // (page, n) handed out; may go stale
    auto random_page = [&] {
        auto s = model.segments[rand(0, model.segments.size() - 1)];
        return s.first + rand(0, s.second - 1);
    };
    auto random_n = [&]() -> uint64_t {
        uint64_t k = rand(0, 99);
        return k < 50 ? 1 : k < 85 ? rand(2, 16) : k < 95 ? rand(17, 127) : rand(128, 400);
    };
    auto mark = [&](uint64_t first, uint64_t n, bool allocated) {
        for (uint64_t p = first; p - first < n; ++p) {
            if (allocated)
                model.allocated.insert(p);
            else
                model.allocated.erase(p);
        }
    };
    for (size_t op = 0; op < ops; ++op) {
        bool grow = (op / 2000) % 2 == 0;  // alternate filling and draining phases
        uint64_t kind = rand(0, 99);
        uint64_t align_pages = uint64_t(1) << (rand(0, 3) == 0 ? rand(0, 10) : 0);
        if (kind < (grow ? 55u : 30u)) {
            uint64_t n = random_n();
            auto r = alloc.alloc_pages(n, align_pages * kPage);
            bool fits = model.fits(n, align_pages);
            ASSERT_EQ(r.has_value(), fits) << "alloc_pages n=" << n << " align=" << align_pages << " op " << op;
            if (!fits) {
                ASSERT_EQ(r.error(), Error::NoMemory);
            } else {
                uint64_t first = r->value() / kPage;
                ASSERT_EQ(r->value() % (align_pages * kPage), 0u);
                ASSERT_TRUE(model.managed(first, n));
                ASSERT_EQ(model.allocated_in(first, n), 0u);
                mark(first, n, true);
                blocks.emplace_back(first, n);
            }
        } else if (kind < (grow ? 65u : 40u)) {
            uint64_t n = random_n();
            uint64_t first = random_page() / align_pages * align_pages;
            auto r = alloc.alloc_pages_at(Addr(first * kPage), n, align_pages * kPage);
            Error expect = !model.managed(first, n) ? Error::OutOfRange : Error::NoMemory;
            bool ok = model.managed(first, n) && model.allocated_in(first, n) == 0;
            ASSERT_EQ(r.has_value(), ok) << "alloc_pages_at " << first << "+" << n << " op " << op;
            if (!ok) {
                ASSERT_EQ(r.error(), expect);
            } else {
                mark(first, n, true);
                blocks.emplace_back(first, n);
            }
        } else {
            uint64_t first = 0;
            uint64_t n = 0;
            if (kind < 90 && !blocks.empty()) {  // a handed-out block, a piece of it, or a stale one
                size_t i = rand(0, blocks.size() - 1);
                std::tie(first, n) = blocks[i];
                if (rand(0, 3) == 0 && n > 1) {  // a piece: the block stays listed
                    first += rand(0, n - 1);
                    n = rand(1, blocks[i].first + blocks[i].second - first);
                } else {
                    blocks[i] = blocks.back();
                    blocks.pop_back();
                }
            } else {  // deliberately random: mostly invalid
                first = rand(0, 7) == 0 ? rand(0, model.page_space - 1) : random_page();
                n = random_n();
            }
            auto r = alloc.dealloc_pages(Addr(first * kPage), n);
            bool ok = model.managed(first, n) && model.allocated_in(first, n) == n;
            ASSERT_EQ(r.has_value(), ok) << "dealloc_pages " << first << "+" << n << " op " << op;
            if (!ok) {
                ASSERT_EQ(r.error(), Error::NotAllocated);
            } else {
                mark(first, n, false);
            }
        }
        ASSERT_EQ(alloc.used_pages(), model.allocated.size()) << "op " << op;
        ASSERT_EQ(alloc.available_pages(), model_total - model.allocated.size());
        ASSERT_TRUE(alloc.check_invariants()) << "op " << op;
        if (op % 1000 == 999 || op + 1 == ops) {
            for (auto [first, pages] : model.segments)
                for (uint64_t p = first; p - first < pages; ++p)
                    ASSERT_EQ(alloc.is_allocated(Addr(p * kPage)), model.allocated.count(p) == 1) << p;
        }
    }
}

TYPED_TEST(PageAllocTest, ModelBasedRandomized) {
    // 4 seeds x 25k operations = 100k per allocator per run.
    for (uint64_t salt = 0; salt < 4; ++salt) {
        uint64_t type_salt = TypeParam::kPageSize + std::hash<std::string_view>{}(TypeParam::Address::tag_type::kName);
        uint64_t seed = pv::test::test_seed(0x9a6e0000 + salt + 16 * type_salt);
        SCOPED_TRACE(pv::test::seed_trace(seed));
        run_page_model<TypeParam>(seed, 25'000);
        if (this->HasFatalFailure()) return;
    }
}

}  // namespace
