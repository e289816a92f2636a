// mm::x86::PageTable: query of 4K and 2M leaves, map+unmap of one 4K page, map_region of
// 1 GiB with and without huge pages. Baseline in the same binary: a
// std::unordered_map<uint64_t, uint64_t> from page number to frame for the same pages and
// the same access sequence (compare BM_Query* against BM_HashLookup*).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

#include "mm/paging/page_table.h"
#include "tests/mm/paging/vector_table_memory.h"

namespace {

using mm::GuestPhysAddr;
using mm::GuestVirtAddr;
using mm::GuestVirtRange;
using mm::PageSize;
using pv::test::VectorTableMemory;
using Table = mm::x86::PageTable<VectorTableMemory>;

constexpr uint64_t kBase = 0x7f00'0000'0000;  // user-half virtual base of the mapped pages
constexpr uint64_t kPhysBase = 0x1'0000'0000;
constexpr uint64_t kGiB = 1ULL << 30;

// A table with `count` pages of `size` mapped at kBase, the same pages in a hash map, and a
// shuffled sequence of addresses (one per page, random offset inside it).
struct Fixture {
    VectorTableMemory mem{2048, mm::GuestFrame(0x100), /*strict=*/false};
    Table pt = Table::try_create(&mem).value();
    std::unordered_map<uint64_t, uint64_t> hash;
    std::vector<uint64_t> addrs;

    Fixture(PageSize size, size_t count) {
        std::mt19937_64 rng(42);
        for (size_t i = 0; i < count; ++i) {
            uint64_t va = kBase + i * bytes(size);
            uint64_t pa = kPhysBase + i * bytes(size);
            if (!pt.map(GuestVirtAddr(va), GuestPhysAddr(pa), size, mm::kPermRW)) std::abort();
            hash.emplace(va / bytes(size), pa / bytes(size));
            addrs.push_back(va + (rng() % bytes(size)));
        }
        std::shuffle(addrs.begin(), addrs.end(), rng);
    }
};

void query_loop(benchmark::State& state, PageSize size) {
    Fixture f(size, static_cast<size_t>(state.range(0)));
    size_t i = 0;
    for (auto _ : state) {
        auto m = f.pt.translate(GuestVirtAddr(f.addrs[i]));
        benchmark::DoNotOptimize(m);
        if (++i == f.addrs.size()) i = 0;
    }
    state.SetItemsProcessed(state.iterations());
}

void hash_loop(benchmark::State& state, PageSize size) {
    Fixture f(size, static_cast<size_t>(state.range(0)));
    size_t i = 0;
    const uint64_t sz = bytes(size);
    for (auto _ : state) {
        uint64_t va = f.addrs[i];
        auto it = f.hash.find(va / sz);
        uint64_t pa = it == f.hash.end() ? 0 : it->second * sz + (va & (sz - 1));
        benchmark::DoNotOptimize(pa);
        if (++i == f.addrs.size()) i = 0;
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_Query4K(benchmark::State& state) { query_loop(state, PageSize::Size4K); }
void BM_HashLookup4K(benchmark::State& state) { hash_loop(state, PageSize::Size4K); }
void BM_Query2M(benchmark::State& state) { query_loop(state, PageSize::Size2M); }
void BM_HashLookup2M(benchmark::State& state) { hash_loop(state, PageSize::Size2M); }
BENCHMARK(BM_Query4K)->Arg(512)->Arg(1 << 18);
BENCHMARK(BM_HashLookup4K)->Arg(512)->Arg(1 << 18);
BENCHMARK(BM_Query2M)->Arg(512);
BENCHMARK(BM_HashLookup2M)->Arg(512);

// Map and unmap one 4K page. Arg 1: neighbours keep every table alive; arg 0: the page is
// alone, so each iteration also allocates and frees a PDPT, PD and PT.
void BM_MapUnmap4K(benchmark::State& state) {
    Fixture f(PageSize::Size4K, state.range(0) != 0 ? 511 : 0);
    const uint64_t va = kBase + 511 * 0x1000;
    const auto range = GuestVirtRange::from_start_size(GuestVirtAddr(va), 0x1000);
    for (auto _ : state) {
        if (!f.pt.map(GuestVirtAddr(va), GuestPhysAddr(kPhysBase), PageSize::Size4K, mm::kPermRW)) std::abort();
        if (!f.pt.unmap_region(range)) std::abort();
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MapUnmap4K)->Arg(1)->Arg(0);

// Baseline for BM_MapUnmap4K: insert and erase one key of a hash map holding 511 others.
void BM_HashInsertErase(benchmark::State& state) {
    Fixture f(PageSize::Size4K, 511);
    const uint64_t key = (kBase >> 12) + 511;
    for (auto _ : state) {
        f.hash.emplace(key, kPhysBase >> 12);
        f.hash.erase(key);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HashInsertErase);

// map_region of 1 GiB (1 x 1G page with huge pages, 262144 x 4K without), then unmap
// (unmap not timed).
void BM_MapRegion1G(benchmark::State& state) {
    const bool huge = state.range(0) != 0;
    VectorTableMemory mem(1024, mm::GuestFrame(0x100), /*strict=*/false);
    Table pt = Table::try_create(&mem).value();
    const auto range = GuestVirtRange::from_start_size(GuestVirtAddr(kBase), kGiB);
    for (auto _ : state) {
        if (!pt.map_region(range, GuestPhysAddr(kPhysBase), mm::kPermRW, huge)) std::abort();
        state.PauseTiming();
        if (!pt.unmap_region(range)) std::abort();
        state.ResumeTiming();
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kGiB));
}
BENCHMARK(BM_MapRegion1G)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
