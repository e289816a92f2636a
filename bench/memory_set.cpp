// MemorySet at 1e3, 1e5 and 1e6 areas (1-page areas with 1-page gaps), against
// std::map over the same keys in the same binary: compare the MemorySet_* and
// StdMap_* rows with equal argument (the ratio is what matters on this machine).
//   bench_memory_set --benchmark_min_time=0.1
#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "mm/memory_set.h"

namespace {

constexpr std::uint64_t kPage = mm::kPageSize;

// A backend that maps nothing: measures the set, not a page table.
struct NullPageTable {};
struct NullBackend {
    using Addr = mm::GuestVirtAddr;
    using Flags = std::uint8_t;
    using PageTable = NullPageTable;
    mm::Status map(Addr, std::uint64_t, Flags, PageTable&) const { return mm::ok(); }
    mm::Status unmap(Addr, std::uint64_t, PageTable&) const { return mm::ok(); }
    mm::Status protect(Addr, std::uint64_t, Flags, PageTable&) const { return mm::ok(); }
    NullBackend split_at(std::uint64_t) { return *this; }
    bool can_merge_with(const NullBackend&, std::uint64_t) const { return true; }
};
using Set = mm::MemorySet<NullBackend>;
using Area = Set::Area;

// Area i is [2i, 2i+1) pages from 0x1000'0000 (same keys in both structures).
constexpr std::uint64_t kBase = 0x1000'0000;
std::uint64_t area_start(std::uint64_t i) { return kBase + 2 * i * kPage; }

struct Fixture {
    explicit Fixture(std::size_t n) : storage((n + 16) * Set::node_bytes() / 8 + 1), set(make_set()) {
        for (std::size_t i = 0; i < n; ++i) {
            if (!set.map(Area(mm::GuestVirtAddr(area_start(i)), kPage, 1, NullBackend{}), pt, false)) std::abort();
            std_map.emplace(area_start(i), kPage);
        }
        // A last area after a 2-page gap: the only gap of 2 pages is the last
        // internal one, so the tree search descends the whole right spine.
        std::uint64_t sentinel = end_gap(n) + 2 * kPage;
        if (!set.map(Area(mm::GuestVirtAddr(sentinel), kPage, 1, NullBackend{}), pt, false)) std::abort();
        std_map.emplace(sentinel, kPage);
        std::mt19937_64 rng(42);
        for (auto& a : probes) a = area_start(rng() % n) + rng() % (2 * kPage);  // hits and misses
        for (auto& a : slots) a = rng() % n;
    }
    Set make_set() {
        return std::move(Set::try_create({reinterpret_cast<std::byte*>(storage.data()), storage.size() * 8}).value());
    }
    std::vector<std::uint64_t> storage;
    NullPageTable pt;
    Set set;
    std::map<std::uint64_t, std::uint64_t> std_map;  // start -> size
    std::array<std::uint64_t, 4096> probes{};
    std::array<std::uint64_t, 4096> slots{};
    static std::uint64_t end_gap(std::size_t n) { return area_start(n - 1) + kPage; }
    std::uint64_t limit_last() const { return area_start(std_map.size()) + 64 * kPage; }
};

Fixture& fixture(std::size_t n) {
    static std::map<std::size_t, std::unique_ptr<Fixture>> cache;
    auto& f = cache[n];
    if (!f) f = std::make_unique<Fixture>(n);
    return *f;
}

void StdMap_Find(benchmark::State& state) {
    Fixture& f = fixture(static_cast<std::size_t>(state.range(0)));
    std::size_t i = 0;
    for (auto _ : state) {
        std::uint64_t a = f.probes[i++ & 4095];
        auto it = f.std_map.upper_bound(a);
        bool hit = it != f.std_map.begin() && (--it, a - it->first < it->second);
        benchmark::DoNotOptimize(hit);
    }
}

void MemorySet_Find(benchmark::State& state) {
    Fixture& f = fixture(static_cast<std::size_t>(state.range(0)));
    std::size_t i = 0;
    for (auto _ : state) benchmark::DoNotOptimize(f.set.find(mm::GuestVirtAddr(f.probes[i++ & 4095])));
}

// Map a 1-page area into a random gap, then unmap it.
void MemorySet_MapUnmap(benchmark::State& state) {
    Fixture& f = fixture(static_cast<std::size_t>(state.range(0)));
    std::size_t i = 0;
    for (auto _ : state) {
        mm::GuestVirtAddr a(area_start(f.slots[i++ & 4095]) + kPage);
        if (!f.set.map(Area(a, kPage, 1, NullBackend{}), f.pt, false)) std::abort();
        if (!f.set.unmap(a, kPage, f.pt)) std::abort();
    }
}

void StdMap_InsertErase(benchmark::State& state) {
    Fixture& f = fixture(static_cast<std::size_t>(state.range(0)));
    std::size_t i = 0;
    for (auto _ : state) {
        std::uint64_t a = area_start(f.slots[i++ & 4095]) + kPage;
        f.std_map.emplace(a, kPage);
        f.std_map.erase(a);
    }
}

// Protect the middle of an area (splits it in three), protect it back, and
// merge the three pieces again: the set is unchanged after each iteration.
void MemorySet_ProtectSplitMerge(benchmark::State& state) {
    Fixture& f = fixture(static_cast<std::size_t>(state.range(0)));
    std::size_t i = 0;
    auto to = [](std::uint8_t v) { return [v](std::uint8_t) { return mm::FlagsUpdate<std::uint8_t>::to(v); }; };
    for (auto _ : state) {
        std::uint64_t s = area_start(f.slots[i++ & 4095]);
        if (!f.set.protect(mm::GuestVirtAddr(s + 0x400), 0x400, to(2), f.pt)) std::abort();
        if (!f.set.protect(mm::GuestVirtAddr(s + 0x400), 0x400, to(1), f.pt)) std::abort();
        if (f.set.merge_adjacent(mm::GuestVirtRange::from_start_size(mm::GuestVirtAddr(s), kPage)) != 2) std::abort();
    }
}

// 1 page from a random hint: the next gap.
void MemorySet_FindFreeArea(benchmark::State& state) {
    Fixture& f = fixture(static_cast<std::size_t>(state.range(0)));
    auto limit =
        mm::GuestVirtRange::from_inclusive(mm::GuestVirtAddr(kBase), mm::GuestVirtAddr(f.limit_last())).value();
    std::size_t i = 0;
    for (auto _ : state)
        benchmark::DoNotOptimize(f.set.find_free_area(mm::GuestVirtAddr(f.probes[i++ & 4095]), kPage, limit, kPage));
}

// 2 pages from the start of the space: every gap is 1 page except the one
// before the last area. A linear scan visits every area.
void MemorySet_FindFreeAreaOnlyAtEnd(benchmark::State& state) {
    Fixture& f = fixture(static_cast<std::size_t>(state.range(0)));
    auto limit =
        mm::GuestVirtRange::from_inclusive(mm::GuestVirtAddr(kBase), mm::GuestVirtAddr(f.limit_last())).value();
    for (auto _ : state) {
        auto r = f.set.find_free_area(mm::GuestVirtAddr(kBase), 2 * kPage, limit, kPage);
        if (!r || r->value() != Fixture::end_gap(f.std_map.size() - 1)) std::abort();
    }
}

// 2 pages aligned to 2 pages, random hint: the 2-page gap is not 2-page
// aligned, so the search passes it (alignment miss) and ends after the last area.
void MemorySet_FindFreeAreaAlignedOnlyAtEnd(benchmark::State& state) {
    Fixture& f = fixture(static_cast<std::size_t>(state.range(0)));
    auto limit =
        mm::GuestVirtRange::from_inclusive(mm::GuestVirtAddr(kBase), mm::GuestVirtAddr(f.limit_last())).value();
    std::size_t i = 0;
    for (auto _ : state)
        benchmark::DoNotOptimize(
            f.set.find_free_area(mm::GuestVirtAddr(f.probes[i++ & 4095]), 2 * kPage, limit, 2 * kPage));
}

// The seed's algorithm over std::map: walk the areas from the hint.
void StdMap_LinearFindFreeAreaOnlyAtEnd(benchmark::State& state) {
    Fixture& f = fixture(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        std::uint64_t last_end = kBase;
        std::uint64_t found = 0;
        for (const auto& [start, size] : f.std_map) {
            if (start >= last_end && start - last_end >= 2 * kPage) {
                found = last_end;
                break;
            }
            last_end = start + size;
        }
        if (found == 0) found = last_end;
        benchmark::DoNotOptimize(found);
    }
}

#define PV_SIZES Arg(1000)->Arg(100000)->Arg(1000000)
BENCHMARK(StdMap_Find)->PV_SIZES;
BENCHMARK(MemorySet_Find)->PV_SIZES;
BENCHMARK(StdMap_InsertErase)->PV_SIZES;
BENCHMARK(MemorySet_MapUnmap)->PV_SIZES;
BENCHMARK(MemorySet_ProtectSplitMerge)->PV_SIZES;
BENCHMARK(MemorySet_FindFreeArea)->PV_SIZES;
BENCHMARK(MemorySet_FindFreeAreaOnlyAtEnd)->PV_SIZES;
BENCHMARK(MemorySet_FindFreeAreaAlignedOnlyAtEnd)->PV_SIZES;
BENCHMARK(StdMap_LinearFindFreeAreaOnlyAtEnd)->PV_SIZES;

}  // namespace

BENCHMARK_MAIN();
