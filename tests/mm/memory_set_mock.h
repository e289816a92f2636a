// Test doubles for MemorySet: a page-granular mock page table and a linear mock
// backend that, like the seed's MockBackend, fails map of a mapped page and
// unmap/protect of an unmapped one (all-or-nothing), plus failure injection.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mm/memory_set.h"

namespace pv::test {

inline constexpr std::uint64_t kPage = mm::kPageSize;

// Makes the Nth backend call from now fail (0 = the next one); -1 = never.
struct Injector {
    long countdown = -1;
    int failures = 0;
    bool fire() {
        if (countdown < 0) return false;
        if (countdown-- == 0) {
            ++failures;
            return true;
        }
        return false;
    }
};

// Page p covers [base + p * 4K, base + (p + 1) * 4K). flags 0 = unmapped.
struct MockPageTable {
    MockPageTable(std::uint64_t base_addr, std::size_t pages) : base(base_addr), flags(pages, 0), frame(pages, 0) {}
    std::uint64_t base;
    std::vector<std::uint8_t> flags;
    std::vector<std::uint64_t> frame;  // pos of the mapping backend at that page
    std::uint64_t addr(std::size_t page) const { return base + page * kPage; }
};

// Linear backend: byte `a` of an area maps to "frame address" pos + (a - start).
// split_at adjusts pos, so after any cut every area must still satisfy it; the
// mock checks the frames on unmap/protect (Corrupted if a split lost the offset).
struct MockBackend {
    using Addr = mm::GuestVirtAddr;
    using Flags = std::uint8_t;
    using PageTable = MockPageTable;

    std::uint64_t pos = 0;
    std::uint8_t node = 0;  // merge only within one node
    Injector* injector = nullptr;

    mm::Status map(Addr start, std::uint64_t size, Flags f, PageTable& pt) const {
        return apply(start, size, f, pt, false);
    }
    mm::Status unmap(Addr start, std::uint64_t size, PageTable& pt) const { return apply(start, size, 0, pt, true); }
    mm::Status protect(Addr start, std::uint64_t size, Flags f, PageTable& pt) const {
        return apply(start, size, f, pt, true);
    }
    MockBackend split_at(std::uint64_t offset) { return MockBackend{pos + offset, node, injector}; }
    bool can_merge_with(const MockBackend& right, std::uint64_t left_size) const {
        return right.pos == pos + left_size && right.node == node && right.injector == injector;
    }

private:
    mm::Status apply(Addr start, std::uint64_t size, Flags f, PageTable& pt, bool want_mapped) const {
        if (start.value() % kPage != 0 || size % kPage != 0 || size == 0 || start.value() < pt.base)
            return mm::err(mm::Error::InvalidParam);
        std::uint64_t first = (start.value() - pt.base) / kPage;
        std::uint64_t n = size / kPage;
        if (first > pt.flags.size() || n > pt.flags.size() - first) return mm::err(mm::Error::OutOfRange);
        if (injector != nullptr && injector->fire()) return mm::err(mm::Error::BadState);
        for (std::uint64_t p = first; p < first + n; ++p) {
            if ((pt.flags[p] != 0) != want_mapped) return mm::err(mm::Error::BadState);
            if (want_mapped && pt.frame[p] != pos + (p - first) * kPage) return mm::err(mm::Error::Corrupted);
        }
        for (std::uint64_t p = first; p < first + n; ++p) {
            pt.flags[p] = f;
            if (!want_mapped) pt.frame[p] = pos + (p - first) * kPage;
        }
        return mm::ok();
    }
};
static_assert(mm::MappingBackend<MockBackend>);

using MockSet = mm::MemorySet<MockBackend>;
using MockArea = MockSet::Area;
using Addr = mm::GuestVirtAddr;
using AddrRange = mm::GuestVirtRange;

// Node storage for a set of `capacity` areas.
struct SetStorage {
    explicit SetStorage(std::size_t capacity) : words((capacity * MockSet::node_bytes() + 7) / 8) {}
    std::span<std::byte> span() { return {reinterpret_cast<std::byte*>(words.data()), words.size() * 8}; }
    std::vector<std::uint64_t> words;
};

inline MockArea area(std::uint64_t start, std::uint64_t size, std::uint8_t flags, Injector* inj = nullptr,
                     std::uint8_t node = 0) {
    return MockArea(Addr(start), size, flags, MockBackend{start * 3, node, inj});
}

// The set equals the page table: every mapped page is in an area with the same
// flags and linear frame, every page in an area is mapped, nothing else is.
inline ::testing::AssertionResult set_matches_table(const MockSet& set, const MockPageTable& pt) {
    // Raw pointers: called after every operation, also in unoptimized builds.
    std::vector<std::uint8_t> expect(pt.flags.size(), 0);
    std::uint8_t* ex = expect.data();
    const std::uint64_t* frames = pt.frame.data();
    const std::uint8_t* flags = pt.flags.data();
    for (const MockArea& a : set) {
        if (a.start().value() < pt.base) return ::testing::AssertionFailure() << "area below the table";
        std::uint64_t first = (a.start().value() - pt.base) / kPage;
        std::uint64_t n = a.size() / kPage;
        if (first > expect.size() || n > expect.size() - first)
            return ::testing::AssertionFailure() << "area beyond the table";
        for (std::uint64_t i = 0; i < n; ++i) {
            ex[first + i] = a.flags();
            if (frames[first + i] != a.backend().pos + i * kPage)
                return ::testing::AssertionFailure() << "frame mismatch at page " << first + i;
        }
    }
    for (std::size_t p = 0; p < expect.size(); ++p)
        if (ex[p] != flags[p])
            return ::testing::AssertionFailure()
                   << "page " << p << ": set says " << int(expect[p]) << ", table " << int(pt.flags[p]);
    return ::testing::AssertionSuccess();
}

// (start, size, flags) of every area, for before/after comparisons.
struct AreaView {
    std::uint64_t start, size;
    std::uint8_t flags;
    std::uint64_t pos;
    bool operator==(const AreaView&) const = default;
};
inline std::vector<AreaView> snapshot(const MockSet& set) {
    std::vector<AreaView> v;
    for (const MockArea& a : set) v.push_back({a.start().value(), a.size(), a.flags(), a.backend().pos});
    return v;
}

}  // namespace pv::test
