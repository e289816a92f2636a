// Page and ID allocators: one alloc + free pair over 2^20 pages at 0%, 50% and
// 90% fill, with a random or a contiguous fill pattern, for n = 1 (4 KiB
// aligned) and n = 16 (64 KiB aligned). Baselines in the same binary:
//   Naive   a flat bitmap scanned linearly first-fit (what the summaries buy)
//   StdSet  a std::set<uint64_t> free list of n-page units (a node-based allocator)
// Fill: the space is cut into n-page aligned units and fill% of them, chosen at
// random (Random) or the lowest ones (Contiguous), are allocated; so every
// allocator sees the same state, and a free unit always fits one request.
// Run: bench_page_alloc --benchmark_min_time=0.2 --benchmark_repetitions=5
//      --benchmark_report_aggregates_only=true (medians; ratios, not absolute times).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "mm/alloc/bitmap.h"
#include "mm/alloc/id_allocator.h"

namespace {

constexpr size_t kPages = size_t(1) << 20;
constexpr uint64_t kBase = 0x1'0000'0000;  // first page address of the managed segment
using Pages = mm::BitmapPageAllocator<mm::GuestPhysAddr>;

enum Pattern : int64_t { kRandom = 0, kContiguous = 1 };

// The units (n-page blocks) allocated by the fill, in page numbers relative to kBase.
std::vector<uint64_t> filled_units(size_t n, int64_t fill_percent, int64_t pattern) {
    std::vector<uint64_t> units(kPages / n);
    std::iota(units.begin(), units.end(), uint64_t(0));
    if (pattern == kRandom) std::shuffle(units.begin(), units.end(), std::mt19937_64(42));
    units.resize(units.size() * size_t(fill_percent) / 100);
    for (auto& u : units) u *= n;
    return units;
}

size_t align_for(size_t n) { return n == 1 ? 4096 : 64 * 1024; }

void set_labels(benchmark::State& state) {
    state.SetLabel(std::string(state.range(2) == kRandom ? "random" : "contiguous") + " fill " +
                   std::to_string(state.range(1)) + "%");
}

void BM_Bitmap(benchmark::State& state) {
    size_t n = size_t(state.range(0));
    std::vector<std::byte> meta(Pages::metadata_bytes(kPages, 1));
    Pages alloc;
    if (!alloc.init(std::span(meta), 1) || !alloc.add_memory(mm::GuestPhysAddr(kBase), kPages * 4096)) {
        state.SkipWithError("init failed");
        return;
    }
    for (uint64_t p : filled_units(n, state.range(1), state.range(2)))
        if (!alloc.alloc_pages_at(mm::GuestPhysAddr(kBase + p * 4096), n, 4096)) state.SkipWithError("fill failed");
    size_t align = align_for(n);
    for (auto _ : state) {
        auto r = alloc.alloc_pages(n, align);
        if (!r) [[unlikely]] {
            state.SkipWithError("alloc failed");
            break;
        }
        benchmark::DoNotOptimize(r->value());
        if (!alloc.dealloc_pages(*r, n)) [[unlikely]] {
            state.SkipWithError("free failed");
            break;
        }
    }
    set_labels(state);
}

// A flat bitmap (1 = free) searched first-fit from page 0, word by word.
class NaiveBitmap {
public:
    NaiveBitmap() : m_words(kPages / 64, ~uint64_t(0)) {}
    void set(uint64_t first, size_t n, bool free) {
        for (uint64_t p = first; p < first + n; ++p) {
            uint64_t bit = uint64_t(1) << (p & 63);
            m_words[p >> 6] = free ? (m_words[p >> 6] | bit) : (m_words[p >> 6] & ~bit);
        }
    }
    // n is 1 or 16 with the run aligned to n: it never crosses a word.
    uint64_t alloc(size_t n) {
        uint64_t unit = n == 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1;
        for (size_t wi = 0; wi < m_words.size(); ++wi) {
            uint64_t w = m_words[wi];
            if (w == 0) continue;
            for (unsigned off = 0; off < 64; off += unsigned(n)) {
                if (((w >> off) & unit) == unit) {
                    m_words[wi] = w & ~(unit << off);
                    return wi * 64 + off;
                }
            }
        }
        return UINT64_MAX;
    }

private:
    std::vector<uint64_t> m_words;
};

void BM_Naive(benchmark::State& state) {
    size_t n = size_t(state.range(0));
    NaiveBitmap bitmap;
    for (uint64_t p : filled_units(n, state.range(1), state.range(2))) bitmap.set(p, n, false);
    for (auto _ : state) {
        uint64_t p = bitmap.alloc(n);
        if (p == UINT64_MAX) [[unlikely]] {
            state.SkipWithError("alloc failed");
            break;
        }
        benchmark::DoNotOptimize(p);
        bitmap.set(p, n, true);
    }
    set_labels(state);
}

// Free n-page units kept in a std::set: alloc takes the lowest, free reinserts.
void BM_StdSet(benchmark::State& state) {
    size_t n = size_t(state.range(0));
    std::vector<uint64_t> taken = filled_units(n, state.range(1), state.range(2));
    std::sort(taken.begin(), taken.end());
    std::set<uint64_t> free_units;
    for (uint64_t u = 0; u < kPages; u += n)
        if (!std::binary_search(taken.begin(), taken.end(), u)) free_units.insert(free_units.end(), u);
    for (auto _ : state) {
        auto it = free_units.begin();
        uint64_t p = *it;
        free_units.erase(it);
        benchmark::DoNotOptimize(p);
        free_units.insert(p);
    }
    set_labels(state);
}

void BM_IdAllocator(benchmark::State& state) {
    std::vector<std::byte> meta(mm::BitmapIdAllocator::metadata_bytes(kPages));
    mm::BitmapIdAllocator ids;
    if (!ids.init(std::span(meta), kPages)) {
        state.SkipWithError("init failed");
        return;
    }
    for (uint64_t id : filled_units(1, state.range(1), state.range(2)))
        if (!ids.alloc_fixed_id(id)) state.SkipWithError("fill failed");
    for (auto _ : state) {
        auto r = ids.alloc_id(1, 1);
        if (!r) [[unlikely]] {
            state.SkipWithError("alloc failed");
            break;
        }
        benchmark::DoNotOptimize(*r);
        if (!ids.dealloc_id(*r, 1)) [[unlikely]] {
            state.SkipWithError("free failed");
            break;
        }
    }
    set_labels(state);
}

void page_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"n", "fill", "contig"});
    for (int64_t n : {1, 16})
        for (int64_t pattern : {kRandom, kContiguous})
            for (int64_t fill : {0, 50, 90}) b->Args({n, fill, pattern});
}
void id_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"n", "fill", "contig"});
    for (int64_t pattern : {kRandom, kContiguous})
        for (int64_t fill : {0, 50, 90}) b->Args({1, fill, pattern});
}

BENCHMARK(BM_Bitmap)->Apply(page_args);
BENCHMARK(BM_Naive)->Apply(page_args);
BENCHMARK(BM_StdSet)->Apply(page_args);
BENCHMARK(BM_IdAllocator)->Apply(id_args);

}  // namespace

BENCHMARK_MAIN();
