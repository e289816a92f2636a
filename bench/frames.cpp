// Frame allocator (mm/frames.h): one alloc + free pair of a single frame, with
// 1 and 2 threads (each thread its own cpu id, all on one node), through:
//   cache         alloc(cpu, node) + free(cpu, frame): the per-cpu cache fast path
//   locked        alloc_contiguous(node, 1, 1) + free_contiguous: the node's pool under its lock
//   quota-node    alloc + free on a node with a quota (served under its lock, exact quota)
//   mutex+bitmap  baseline: a std::mutex around a bare BitmapPageAllocator (no in-use bitmap, no stats)
// All in the same binary and run; the table at the end gives ratios (< 1: faster than the baseline).
// Run: bench_frames --benchmark_min_time=0.2 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "mm/alloc/bitmap.h"
#include "mm/frames.h"

namespace {

using Frames = mm::FrameAllocator<std::mutex>;
using Pages = mm::BitmapPageAllocator<mm::GuestPhysAddr>;
constexpr uint64_t kFramesPerNode = uint64_t(1) << 16;
constexpr uint32_t kCpus = 2;

struct Shared {
    Shared()
        : meta(Frames::metadata_bytes(2, kCpus, kFramesPerNode)), page_meta(Pages::metadata_bytes(kFramesPerNode, 1)) {
        bool ok = frames.init(std::span(meta), 2, kCpus).has_value() &&
                  frames.add_range(0, mm::GuestFrameRange{mm::GuestFrame(0x100000), kFramesPerNode}).has_value() &&
                  frames.add_range(1, mm::GuestFrameRange{mm::GuestFrame(0x200000), kFramesPerNode}).has_value();
        mm::FrameNodeConfig quota;
        quota.quota_frames = kFramesPerNode / 2;
        ok = ok && frames.configure(1, quota).has_value();
        ok = ok && pages.init(std::span(page_meta), 1).has_value() &&
             pages.add_memory(mm::GuestPhysAddr(0x100000ULL << 12), kFramesPerNode << 12).has_value();
        if (!ok) std::abort();
    }
    std::vector<std::byte> meta;
    Frames frames;
    std::vector<std::byte> page_meta;
    Pages pages;
    std::mutex pages_lock;
};

Shared& shared() {
    static Shared s;
    return s;
}

void fail(benchmark::State& state, const char* what) { state.SkipWithError(what); }

void BM_Cache(benchmark::State& state, uint32_t node) {
    Frames& fa = shared().frames;
    auto cpu = uint32_t(state.thread_index());
    for (auto _ : state) {
        auto r = fa.alloc(cpu, node);
        if (!r) [[unlikely]]
            return fail(state, "alloc failed");
        benchmark::DoNotOptimize(r->frame);
        if (!fa.free(cpu, r->frame)) [[unlikely]]
            return fail(state, "free failed");
    }
    fa.drain(cpu);
}

void BM_Locked(benchmark::State& state) {
    Frames& fa = shared().frames;
    for (auto _ : state) {
        auto r = fa.alloc_contiguous(0, 1, 1);
        if (!r) [[unlikely]]
            return fail(state, "alloc failed");
        benchmark::DoNotOptimize(r->frame);
        if (!fa.free_contiguous(r->frame, 1)) [[unlikely]]
            return fail(state, "free failed");
    }
}

void BM_MutexBitmap(benchmark::State& state) {
    Shared& s = shared();
    for (auto _ : state) {
        mm::Result<mm::GuestPhysAddr> r = mm::err(mm::Error::NoMemory);
        {
            std::lock_guard guard(s.pages_lock);
            r = s.pages.alloc_pages(1, 4096);
        }
        if (!r) [[unlikely]]
            return fail(state, "alloc failed");
        benchmark::DoNotOptimize(r->value());
        std::lock_guard guard(s.pages_lock);
        if (!s.pages.dealloc_pages(*r, 1)) [[unlikely]]
            return fail(state, "free failed");
    }
}

struct Times {
    double real = 0;
    double cpu = 0;
};
std::map<std::string, Times> g_ns;  // "case/real_time/threads:N" -> ns per pair

class CollectingReporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& r : runs) {
            if (r.error_occurred) continue;
            // With repetitions, keep the median aggregate; without, the single run.
            bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
            if (median || r.run_type == Run::RT_Iteration)
                g_ns[r.run_name.str()] = Times{r.GetAdjustedRealTime(), r.GetAdjustedCPUTime()};
        }
        ConsoleReporter::ReportRuns(runs);
    }
};

// CPU time is the steadier measure on a shared machine (wall time includes
// preemption); both are printed.
void print_ratios() {
    std::printf("\nns per alloc+free pair; ratios of CPU time to locked and to mutex+bitmap (< 1: faster)\n");
    std::printf("%-14s %8s %10s %10s %9s %14s\n", "path", "threads", "real ns", "cpu ns", "/locked", "/mutex+bitmap");
    for (int t : {1, 2}) {
        auto get = [&](const std::string& c) {
            auto it = g_ns.find(c + "/real_time/threads:" + std::to_string(t));
            return it == g_ns.end() ? Times{} : it->second;
        };
        for (const char* c : {"cache", "locked", "quota-node", "mutex+bitmap"}) {
            Times x = get(c);
            if (x.cpu == 0.0) continue;
            double locked = get("locked").cpu;
            double base = get("mutex+bitmap").cpu;
            std::printf("%-14s %8d %10.1f %10.1f %9.2f %14.2f\n", c, t, x.real, x.cpu, locked == 0 ? 0 : x.cpu / locked,
                        base == 0 ? 0 : x.cpu / base);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    auto reg = [](const char* name, auto fn) {
        benchmark::RegisterBenchmark(name, fn)->Threads(1)->Threads(2)->UseRealTime();
    };
    reg("cache", [](benchmark::State& s) { BM_Cache(s, 0); });
    reg("locked", BM_Locked);
    reg("quota-node", [](benchmark::State& s) { BM_Cache(s, 1); });
    reg("mutex+bitmap", BM_MutexBitmap);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    CollectingReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    print_ratios();
    return 0;
}
