// Host-side throughput of GuestAddressSpace::handle_fault (vmm/paging), no KVM:
// T threads (vCPUs 0..T-1) each fault every page of their own lazily mmapped
// area once (fault-around off, 4 KiB demand pages, frames from the real
// mm::FrameAllocator with per-vCPU caches, each frame zeroed), in two modes of
// the same code in the same binary and run:
//   BM_GvaFault/shared/threads:T      the fault path under the vCPU's own lock
//                                     (PageTable::install, compare-and-swap)
//   BM_GvaFault/serialized/threads:T  serialize_faults: every fault takes all vCPU
//                                     locks (the old one-lock behaviour)
//   BM_GvaFault/shared-gm/threads:T   shared, but guest RAM reached through
//                                     GuestMemory::host_span (the VM's HostAccess,
//                                     a shared_mutex per call) instead of a direct
//                                     pointer (the first two cases)
// Each iteration builds a fresh address space (untimed), starts the threads
// together and times until the last one is done (manual wall time). Counters:
// ns_per_fault = wall time / faults of all threads (lower is better; with 2
// threads and 2 free cores the ideal is half the 1-thread value) and faults_per_s.
// The table at the end prints the ratios. Guest RAM is committed on the host
// before the first case (no host first-touch faults inside the timings). The machine has 2 cores shared with
// others: compare ratios within one run.
// Run: bench_vm_gva_fault --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mm/frames.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/paging/address_space.h"

namespace {

using Frames = mm::FrameAllocator<std::mutex>;
using pv::paging::GuestAddressSpace;
constexpr uint64_t kPage = 4096;
constexpr uint64_t kRam = 512ULL << 20;
constexpr uint64_t kFirstFrame = (64ULL << 20) / kPage;  // frames for the space: [64 MiB, 512 MiB)
constexpr uint64_t kFrames = kRam / kPage - kFirstFrame;
constexpr uint32_t kMaxThreads = 2;
constexpr uint64_t kPagesPerThread = 8192;  // 32 MiB per thread

struct Host {
    Host() : meta(Frames::metadata_bytes(1, kMaxThreads, kFrames)) {
        auto m = pv::memory::GuestMemory::create(kRam);
        if (!m) std::abort();
        mem = std::make_unique<pv::memory::GuestMemory>(std::move(*m));
        if (!frames.init(std::span(meta), 1, kMaxThreads) ||
            !frames.add_range(0, mm::GuestFrameRange{mm::GuestFrame(kFirstFrame), kFrames}))
            std::abort();
        provider = std::make_unique<pv::paging::FrameSourceAdapter<Frames>>(frames, 1, kRam / kPage);
        // Commit the host pages now: otherwise the first case pays the host's first-touch faults.
        auto all = mem->host_span(mm::GuestPhysAddr(0), kRam);
        if (!all) std::abort();
        std::memset(all->data(), 1, all->size());
    }
    std::unique_ptr<pv::memory::GuestMemory> mem;
    std::vector<std::byte> meta;
    Frames frames;
    std::unique_ptr<pv::paging::FrameSourceAdapter<Frames>> provider;
};

Host& host() {
    static Host h;
    return h;
}

enum class Mode { Shared, Serialized, SharedViaGuestMemory };

// Direct: one bounds check over the single RAM region (no lock), so the
// benchmark measures the paging layer. ViaGuestMemory: GuestMemory::host_span,
// what the VM uses, which takes GuestMemory's shared_mutex on every call.
pv::paging::HostAccess host_access(Mode mode) {
    if (mode == Mode::SharedViaGuestMemory)
        return [mem = host().mem.get()](mm::GuestPhysAddr gpa, uint64_t len) { return mem->host_span(gpa, len); };
    std::byte* base = host().mem->host_span(mm::GuestPhysAddr(0), kRam)->data();
    return [base](mm::GuestPhysAddr gpa, uint64_t len) -> pv::Expected<std::span<std::byte>> {
        if (gpa.value() >= kRam || len > kRam - gpa.value())
            return pv::make_error(pv::ErrorKind::GuestFault, "outside guest RAM");
        return std::span<std::byte>(base + gpa.value(), len);
    };
}

std::unique_ptr<GuestAddressSpace> make_space(Mode mode) {
    pv::paging::AddressSpaceConfig cfg;
    cfg.vcpus = kMaxThreads;
    cfg.fault_around_pages = 1;
    cfg.serialize_faults = mode == Mode::Serialized;
    auto as = GuestAddressSpace::create(cfg, host_access(mode), *host().provider, nullptr, std::nullopt);
    if (!as) std::abort();
    (*as)->set_shootdown([] {});
    return std::move(*as);
}

// One round: every thread faults its pages; returns the wall time, or a negative value on a failed fault.
double fault_round(GuestAddressSpace& as, uint32_t threads, const std::vector<uint64_t>& areas) {
    std::atomic<uint32_t> ready{0};
    std::atomic<bool> go{false};
    std::atomic<uint64_t> failed{0};
    std::vector<std::thread> pool;
    for (uint32_t t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            ready.fetch_add(1);
            while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
            for (uint64_t i = 0; i < kPagesPerThread; ++i) {
                auto r = as.handle_fault(mm::GuestVirtAddr(areas[t] + i * kPage),
                                         pv::paging::kPfUser | pv::paging::kPfWrite, t, 0);
                if (r.kind != pv::paging::FaultResult::Kind::Mapped) failed.fetch_add(1, std::memory_order_relaxed);
            }
        });
    while (ready.load() < threads) std::this_thread::yield();
    auto start = std::chrono::steady_clock::now();
    go.store(true, std::memory_order_release);
    for (auto& th : pool) th.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return failed.load() == 0 ? s : -1.0;
}

void BM_GvaFault(benchmark::State& state, Mode mode) {
    const auto threads = static_cast<uint32_t>(state.range(0));
    uint64_t faults = 0;
    double seconds = 0;
    for (auto _ : state) {
        auto as = make_space(mode);
        std::vector<uint64_t> areas;
        for (uint32_t t = 0; t < threads; ++t) {
            auto a = as->mmap(pv::paging::Caller{t, 0}, 0, kPagesPerThread * kPage,
                              pv::abi::kProtRead | pv::abi::kProtWrite, 0, pv::abi::kNodeAny);
            if (!a) return state.SkipWithError("mmap failed");
            areas.push_back(*a);
            // Areas are placed next to each other: a gap keeps them apart (no merge, no shared table race
            // beyond what the workload has).
            (void)as->mmap(pv::paging::Caller{t, 0}, *a + kPagesPerThread * kPage, kPage, 0, pv::abi::kMapFixed,
                           pv::abi::kNodeAny);
        }
        double s = fault_round(*as, threads, areas);
        if (s < 0) return state.SkipWithError("a fault was not Mapped");
        state.SetIterationTime(s);
        seconds += s;
        faults += threads * kPagesPerThread;
        as.reset();  // frames back to the allocator (untimed)
        for (uint32_t t = 0; t < threads; ++t) host().frames.drain(t);
    }
    state.counters["ns_per_fault"] = seconds * 1e9 / static_cast<double>(faults);
    state.counters["faults_per_s"] = static_cast<double>(faults) / seconds;
}

std::map<std::string, double> g_ns;  // "mode/threads:T" -> ns_per_fault

class CollectingReporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& r : runs) {
            if (r.error_occurred) continue;
            bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
            if (!median && r.run_type != Run::RT_Iteration) continue;
            auto it = r.counters.find("ns_per_fault");
            if (it == r.counters.end()) continue;
            std::string name = r.run_name.str();
            for (const char* mode : {"shared", "serialized", "shared-gm"})
                for (int t = 1; t <= static_cast<int>(kMaxThreads); ++t)
                    if (name.find(std::string(mode) + "/threads:" + std::to_string(t)) != std::string::npos)
                        g_ns[std::string(mode) + "/" + std::to_string(t)] = it->second;
        }
        ConsoleReporter::ReportRuns(runs);
    }
};

void print_ratios() {
    auto get = [](const char* mode, int t) {
        auto it = g_ns.find(std::string(mode) + "/" + std::to_string(t));
        return it == g_ns.end() ? 0.0 : it->second;
    };
    std::printf("\nwall ns per fault (all threads' faults): lower is better; ratio < 1 = faster\n");
    std::printf("%-11s %10s %10s %18s\n", "mode", "1 thread", "2 threads", "2 vs 1 threads");
    for (const char* mode : {"shared", "serialized", "shared-gm"}) {
        double one = get(mode, 1), two = get(mode, 2);
        std::printf("%-11s %10.0f %10.0f %18.2f\n", mode, one, two, one == 0 ? 0 : two / one);
    }
    double s2 = get("shared", 2), z2 = get("serialized", 2);
    double s1 = get("shared", 1), z1 = get("serialized", 1);
    if (z1 != 0 && z2 != 0) std::printf("shared vs serialized: 1 thread %.2f, 2 threads %.2f\n", s1 / z1, s2 / z2);
}

}  // namespace

int main(int argc, char** argv) {
    for (auto [mode, label] : {std::pair{Mode::Shared, "shared"}, std::pair{Mode::Serialized, "serialized"},
                               std::pair{Mode::SharedViaGuestMemory, "shared-gm"}}) {
        std::string name = std::string("BM_GvaFault/") + label;
        benchmark::RegisterBenchmark(name.c_str(), [mode = mode](benchmark::State& s) { BM_GvaFault(s, mode); })
            ->ArgName("threads")
            ->Arg(1)
            ->Arg(2)
            ->Iterations(8)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    CollectingReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    print_ratios();
    return 0;
}
