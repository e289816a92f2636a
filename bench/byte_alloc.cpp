// Byte allocators (Buddy, SlabHeap, Tlsf; checked and unchecked) against glibc
// malloc, jemalloc and mimalloc, in the same binary and run; prints a table of
// ratios at the end.
//
// Baselines: glibc's malloc/free are looked up in libc.so.6 itself, so they stay
// glibc even when jemalloc or mimalloc (which both export `malloc`) are linked
// and interpose the process-wide malloc. jemalloc is called through
// mallocx/sdallocx, mimalloc through mi_malloc/mi_free: both weak, so the program
// links without them and reports them as "not linked" (jemalloc cannot be
// dlopen'ed: its static TLS block does not fit). Link `jemalloc mimalloc` to
// compare against them (see docs/allocators-byte.md).
// Calls into glibc/jemalloc/mimalloc go through the PLT or a function pointer
// (one indirect jump each); pagevisor's allocators are header-only and inline.
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "mm/alloc/buddy.h"
#include "mm/alloc/slab_heap.h"
#include "mm/alloc/tlsf.h"

// Built with PV_BENCH_LINK_BASELINES=1 the references are strong, so the linker
// keeps both libraries even under --as-needed.
#if defined(PV_BENCH_LINK_BASELINES) && PV_BENCH_LINK_BASELINES
#define PV_BASELINE_SYMBOL
constexpr bool kBaselinesLinked = true;
#else
#define PV_BASELINE_SYMBOL __attribute__((weak))
constexpr bool kBaselinesLinked = false;
#endif
extern "C" {
void* mallocx(size_t size, int flags) PV_BASELINE_SYMBOL;
void sdallocx(void* p, size_t size, int flags) PV_BASELINE_SYMBOL;
void* mi_malloc(size_t size) PV_BASELINE_SYMBOL;
void mi_free(void* p) PV_BASELINE_SYMBOL;
}

namespace {

constexpr size_t kAlign = 8;

// ---- allocator adaptors: alloc(size) -> pointer or nullptr, free(p, size) ----

struct Glibc {
    using MallocFn = void* (*)(size_t);
    using FreeFn = void (*)(void*);
    MallocFn m_malloc = nullptr;
    FreeFn m_free = nullptr;
    Glibc() {
        void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
        if (libc == nullptr) return;
        m_malloc = reinterpret_cast<MallocFn>(dlsym(libc, "malloc"));
        m_free = reinterpret_cast<FreeFn>(dlsym(libc, "free"));
    }
    void* alloc(size_t s) { return m_malloc(s); }
    void free(void* p, size_t) { m_free(p); }
};

struct Jemalloc {
    void* alloc(size_t s) { return mallocx(s, 0); }
    void free(void* p, size_t s) { sdallocx(p, s, 0); }
};

struct Mimalloc {
    void* alloc(size_t s) { return mi_malloc(s); }
    void free(void* p, size_t) { mi_free(p); }
};

// A pagevisor allocator over its own anonymous mapping (MAP_NORESERVE: pages
// are faulted in as the allocator touches them).
template <class A>
class Pv {
public:
    explicit Pv(size_t region_bytes) : m_size(region_bytes), m_alloc(std::make_unique<A>()) {
        m_region = mmap(nullptr, m_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m_region == MAP_FAILED) std::abort();
        // PV_BENCH_THP=1: back the region with transparent huge pages (as a guest
        // heap in huge-page-backed guest memory would be); off by default, since
        // the baselines get ordinary pages.
        if (const char* thp = std::getenv("PV_BENCH_THP"); thp != nullptr && thp[0] == '1')
            (void)madvise(m_region, m_size, MADV_HUGEPAGE);
        if (!m_alloc->init({static_cast<std::byte*>(m_region), m_size})) std::abort();
    }
    Pv(const Pv&) = delete;
    Pv& operator=(const Pv&) = delete;
    ~Pv() { munmap(m_region, m_size); }
    // Forced inline like the allocators' own fast paths, so a case measures what
    // a direct caller of alloc/dealloc gets (GCC otherwise keeps the larger
    // checked wrappers out of line, adding a call the real callers don't pay).
    [[gnu::always_inline]] void* alloc(size_t s) {
        auto r = m_alloc->alloc(s, kAlign);
        return r.has_value() ? *r : nullptr;
    }
    [[gnu::always_inline]] void free(void* p, size_t s) { (void)m_alloc->dealloc(p, s, kAlign); }

private:
    size_t m_size;
    std::unique_ptr<A> m_alloc;
    void* m_region = nullptr;
};

constexpr size_t kSmallRegion = size_t(256) << 20;
constexpr size_t kLargeRegion = size_t(1) << 30;

// Makes a fresh allocator for one benchmark run (baselines are process-wide).
template <class T>
struct Factory {
    static std::unique_ptr<T> make(size_t) { return std::make_unique<T>(); }
};
template <class A>
struct Factory<Pv<A>> {
    static std::unique_ptr<Pv<A>> make(size_t region) { return std::make_unique<Pv<A>>(region); }
};

// ---- cases ---------------------------------------------------------------------

template <class T>
void bm_pair(benchmark::State& state, size_t size) {
    auto a = Factory<T>::make(kSmallRegion);
    for (auto _ : state) {
        void* p = a->alloc(size);
        benchmark::DoNotOptimize(p);
        a->free(p, size);
    }
}

template <class T>
void bm_batch(benchmark::State& state, size_t size) {
    auto a = Factory<T>::make(kSmallRegion);
    std::vector<void*> ptrs(1000);
    for (auto _ : state) {
        for (auto& p : ptrs) p = a->alloc(size);
        benchmark::DoNotOptimize(ptrs.data());
        for (void* p : ptrs) a->free(p, size);
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 1000);
}

// Random replace with `live` blocks of random sizes 16..4096: free a random live
// block, allocate a new random size in its place (and write it when `touch`).
// The initial blocks are written once before timing, so first-touch page faults
// of the initial working set are not charged to allocators (like pagevisor's)
// that write into free blocks.
template <class T>
void bm_churn(benchmark::State& state, size_t live, bool touch) {
    auto a = Factory<T>::make(kLargeRegion);
    std::mt19937_64 rng(42);
    constexpr size_t kSeq = 1 << 16;
    std::vector<uint32_t> idx(kSeq);
    std::vector<uint32_t> sizes(kSeq);
    for (size_t i = 0; i < kSeq; ++i) {
        idx[i] = static_cast<uint32_t>(rng() % live);
        sizes[i] = static_cast<uint32_t>(16 + rng() % (4096 - 16 + 1));
    }
    std::vector<void*> ptrs(live);
    std::vector<uint32_t> psize(live);
    for (size_t i = 0; i < live; ++i) {
        psize[i] = sizes[i % kSeq];
        ptrs[i] = a->alloc(psize[i]);
        std::memset(ptrs[i], 1, psize[i]);  // fault the pages in for every allocator alike
    }
    size_t k = 0;
    for (auto _ : state) {
        uint32_t i = idx[k];
        a->free(ptrs[i], psize[i]);
        psize[i] = sizes[k];
        ptrs[i] = a->alloc(psize[i]);
        if (touch) std::memset(ptrs[i], static_cast<int>(k), psize[i]);
        benchmark::DoNotOptimize(ptrs[i]);
        k = (k + 1) & (kSeq - 1);
    }
    for (size_t i = 0; i < live; ++i) a->free(ptrs[i], psize[i]);
}

// A worst-case-ish sequence for segregated fits: 50k small free holes between
// live blocks, then per iteration: free a live block between two holes
// (coalesces with both neighbours), allocate a large block that only the tail
// can satisfy (first-level search + split), free it (merge with the tail), and
// re-allocate the small block. Reports the per-iteration p50/p99/max.
template <class T>
void bm_worst(benchmark::State& state) {
    auto a = Factory<T>::make(kSmallRegion);
    constexpr size_t kN = 50000;
    constexpr size_t kSmall = 48;
    constexpr size_t kBig = 1 << 20;
    std::vector<void*> holes(kN);
    std::vector<void*> mid(kN);
    for (size_t i = 0; i < kN; ++i) {
        holes[i] = a->alloc(kSmall);
        mid[i] = a->alloc(kSmall);
    }
    for (void* p : holes) a->free(p, kSmall);
    std::vector<double> ns;
    ns.reserve(1 << 20);
    size_t i = 0;
    for (auto _ : state) {
        auto t0 = std::chrono::steady_clock::now();
        a->free(mid[i], kSmall);
        void* big = a->alloc(kBig);
        benchmark::DoNotOptimize(big);
        a->free(big, kBig);
        mid[i] = a->alloc(kSmall);
        auto t1 = std::chrono::steady_clock::now();
        if (ns.size() < ns.capacity()) ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
        i = (i + 1) % kN;
    }
    std::sort(ns.begin(), ns.end());
    if (!ns.empty()) {
        state.counters["p50_ns"] = ns[ns.size() / 2];
        state.counters["p99_ns"] = ns[ns.size() * 99 / 100];
        state.counters["max_ns"] = ns.back();
    }
    for (void* p : mid) a->free(p, kSmall);
}

// ---- registration and the ratio table ----------------------------------------------

std::vector<std::string> g_cases;
std::vector<std::string> g_allocators;
std::map<std::string, double> g_ns;  // "case|allocator" -> CPU ns per iteration

template <class T>
void register_allocator(const std::string& name) {
    g_allocators.push_back(name);
    auto reg = [&](const std::string& c, auto fn) {
        if (std::find(g_cases.begin(), g_cases.end(), c) == g_cases.end()) g_cases.push_back(c);
        benchmark::RegisterBenchmark((c + "|" + name).c_str(), fn);
    };
    reg("pair64", [](benchmark::State& s) { bm_pair<T>(s, 64); });
    reg("pair4096", [](benchmark::State& s) { bm_pair<T>(s, 4096); });
    reg("batch1000x64", [](benchmark::State& s) { bm_batch<T>(s, 64); });
    reg("batch1000x1024", [](benchmark::State& s) { bm_batch<T>(s, 1024); });
    reg("churn1k", [](benchmark::State& s) { bm_churn<T>(s, 1000, false); });
    reg("churn1k+write", [](benchmark::State& s) { bm_churn<T>(s, 1000, true); });
    reg("churn100k", [](benchmark::State& s) { bm_churn<T>(s, 100000, false); });
    reg("churn100k+write", [](benchmark::State& s) { bm_churn<T>(s, 100000, true); });
    reg("worst", [](benchmark::State& s) { bm_worst<T>(s); });
}

class CollectingReporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& r : runs)
            if (!r.error_occurred && r.run_type == Run::RT_Iteration) g_ns[r.benchmark_name()] = r.GetAdjustedCPUTime();
        ConsoleReporter::ReportRuns(runs);
    }
};

void print_ratio_table() {
    // CPU time: the machines are shared, and wall time includes preemption.
    std::printf("\nCPU ns per iteration, and ratio to each baseline (< 1 is faster than the baseline)\n");
    std::printf("%-16s %-14s %10s %8s %8s %8s\n", "case", "allocator", "ns", "/mimal", "/jemal", "/glibc");
    for (const auto& c : g_cases) {
        auto get = [&](const std::string& a) {
            auto it = g_ns.find(c + "|" + a);
            return it == g_ns.end() ? 0.0 : it->second;
        };
        for (const auto& a : g_allocators) {
            double t = get(a);
            if (t == 0.0) continue;
            auto ratio = [&](const char* base) {
                double b = get(base);
                return b == 0.0 ? 0.0 : t / b;
            };
            std::printf("%-16s %-14s %10.1f %8.2f %8.2f %8.2f\n", c.c_str(), a.c_str(), t, ratio("mimalloc"),
                        ratio("jemalloc"), ratio("glibc"));
        }
    }
}

// Whether two weak functions resolved (volatile: the compiler may not assume
// a function's address is non-null).
template <class F, class G>
bool linked(F* f, G* g) {
    F* volatile vf = f;
    G* volatile vg = g;
    return vf != nullptr && vg != nullptr;
}

}  // namespace

int main(int argc, char** argv) {
    if (Glibc().m_malloc != nullptr) register_allocator<Glibc>("glibc");
    if (kBaselinesLinked || linked(mallocx, sdallocx))
        register_allocator<Jemalloc>("jemalloc");
    else
        std::printf("jemalloc: not linked (link jemalloc to compare)\n");
    if (kBaselinesLinked || linked(mi_malloc, mi_free))
        register_allocator<Mimalloc>("mimalloc");
    else
        std::printf("mimalloc: not linked (link mimalloc to compare)\n");
    register_allocator<Pv<mm::SlabHeap<false>>>("slab");
    register_allocator<Pv<mm::SlabHeap<true>>>("slab.checked");
    register_allocator<Pv<mm::Tlsf<false>>>("tlsf");
    register_allocator<Pv<mm::Tlsf<true>>>("tlsf.checked");
    register_allocator<Pv<mm::Buddy<5, 47, false>>>("buddy");
    register_allocator<Pv<mm::Buddy<>>>("buddy.checked");
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    CollectingReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    print_ratio_table();
    return 0;
}
