// The io_uring page store (vmm/store): 4 KiB pages written then read back.
//   BM_SwapStore/batch:N/fixed:F/direct:D
//                                 SwapStore: N writes queued and submitted at
//                                 once, reaped, then N reads the same way
//                                 (F=1: the pages live in a registered region,
//                                 so the fixed-buffer opcodes are used; D=1:
//                                 the file is opened with O_DIRECT)
//   BM_Pwrite/batch:N/direct:D    baseline: the same N pages with pwrite, then pread
//   BM_SnapshotWrite              SnapshotWriter: 1024 pages (4 MiB) with index,
//                                 checksums, header; no fsync
//   BM_SnapshotPwrite             baseline: the same 4 MiB with pwrite (no checksums)
//   BM_SnapshotRead               SnapshotReader::read_pages of all 1024 pages
//                                 (blocks read with io_uring, checksums verified)
//   BM_SnapshotPread              baseline: pread of the same 4 MiB
// Every case cycles over a 4096-page (16 MiB) file in PAGEVISOR_BENCH_DIR (or
// /tmp), so it measures the page-cache path of that file system. items/s are
// pages/s; the SwapStore rows also report the latency (queue to completion)
// p50/p99 from its histograms. Compare ratios within one run (bench/comparisons.json).
// Run: bench_page_store --benchmark_min_time=0.2 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "vmm/store/snapshot_reader.h"
#include "vmm/store/snapshot_writer.h"
#include "vmm/store/swap_store.h"

namespace {

using namespace pv::store;

constexpr size_t kPage = 4096;
constexpr size_t kSlots = 4096;
constexpr size_t kSnapshotPages = 1024;

std::string bench_path(const std::string& name) {
    const char* dir = std::getenv("PAGEVISOR_BENCH_DIR");
    return std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/pv-bench-" + name + "-" +
           std::to_string(::getpid());
}

std::vector<std::byte> pattern(size_t pages) {
    std::vector<std::byte> v(pages * kPage);
    for (size_t i = 0; i < v.size(); ++i) v[i] = std::byte((i * 131) >> 7);
    return v;
}

// Page-aligned memory (O_DIRECT needs it), filled like pattern().
struct AlignedPages {
    explicit AlignedPages(size_t pages)
        : bytes(static_cast<std::byte*>(std::aligned_alloc(kPage, pages * kPage)), &std::free), size(pages * kPage) {
        auto p = pattern(pages);
        std::memcpy(bytes.get(), p.data(), size);
    }
    std::span<std::byte> span() { return {bytes.get(), size}; }
    std::unique_ptr<std::byte, decltype(&std::free)> bytes;
    size_t size;
};

void BM_SwapStore(benchmark::State& state) {
    const size_t batch = size_t(state.range(0));
    const bool fixed = state.range(1) != 0;
    SwapStore::Options opt;
    opt.direct_io = state.range(2) != 0;
    opt.max_pages = kSlots;
    opt.grow_pages = kSlots;
    opt.io.queue_depth = 64;
    auto store = SwapStore::create(bench_path("swap"), opt);
    if (!store) return state.SkipWithError(store.error().to_string().c_str());
    std::vector<SwapSlot> slots;
    for (size_t i = 0; i < kSlots; ++i) slots.push_back(*(*store)->allocate());
    AlignedPages memory(batch);
    std::span<std::byte> region = memory.span();
    if (fixed && !(*store)->register_memory(std::span(&region, 1))) return state.SkipWithError("register failed");
    std::vector<SwapCompletion> done;
    size_t next = 0;
    for (auto _ : state) {
        for (int kind = 0; kind < 2; ++kind) {
            for (size_t i = 0; i < batch; ++i) {
                auto page = region.subspan(i * kPage, kPage);
                auto s = kind == 0 ? (*store)->write_async(slots[(next + i) % kSlots], page, i)
                                   : (*store)->read_async(slots[(next + i) % kSlots], page, i);
                if (!s) return state.SkipWithError(s.error().to_string().c_str());
            }
            if (!(*store)->submit() || !(*store)->reap(done, batch)) return state.SkipWithError("I/O failed");
            for (auto& c : done)
                if (!c.status) return state.SkipWithError(c.status.error().to_string().c_str());
            done.clear();
        }
        next = (next + batch) % kSlots;
    }
    state.SetItemsProcessed(int64_t(state.iterations() * batch * 2));
    state.SetBytesProcessed(int64_t(state.iterations() * batch * 2 * kPage));
    auto st = (*store)->stats();
    state.counters["write_p50_us"] = double(st.write_latency.p50_ns()) / 1000;
    state.counters["write_p99_us"] = double(st.write_latency.p99_ns()) / 1000;
    state.counters["read_p50_us"] = double(st.read_latency.p50_ns()) / 1000;
    state.counters["read_p99_us"] = double(st.read_latency.p99_ns()) / 1000;
}
BENCHMARK(BM_SwapStore)
    ->ArgNames({"batch", "fixed", "direct"})
    ->ArgsProduct({{1, 16, 64}, {0, 1}, {0, 1}})
    ->UseRealTime();

void BM_Pwrite(benchmark::State& state) {
    const size_t batch = size_t(state.range(0));
    std::string path = bench_path("pwrite");
    int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | (state.range(1) != 0 ? O_DIRECT : 0), 0600);
    if (fd < 0) return state.SkipWithError("cannot create the file");
    ::unlink(path.c_str());
    if (::fallocate(fd, 0, 0, off_t(kSlots * kPage)) != 0) state.SkipWithError("fallocate failed");
    AlignedPages aligned(batch);
    std::byte* memory = aligned.bytes.get();
    size_t next = 0;
    for (auto _ : state) {
        for (size_t i = 0; i < batch; ++i)
            if (::pwrite(fd, memory + i * kPage, kPage, off_t(((next + i) % kSlots) * kPage)) != ssize_t(kPage))
                return state.SkipWithError("pwrite failed");
        for (size_t i = 0; i < batch; ++i)
            if (::pread(fd, memory + i * kPage, kPage, off_t(((next + i) % kSlots) * kPage)) != ssize_t(kPage))
                return state.SkipWithError("pread failed");
        next = (next + batch) % kSlots;
    }
    ::close(fd);
    state.SetItemsProcessed(int64_t(state.iterations() * batch * 2));
    state.SetBytesProcessed(int64_t(state.iterations() * batch * 2 * kPage));
}
BENCHMARK(BM_Pwrite)->ArgNames({"batch", "direct"})->ArgsProduct({{1, 16, 64}, {0, 1}})->UseRealTime();

void BM_SnapshotWrite(benchmark::State& state) {
    auto memory = pattern(kSnapshotPages);
    std::string path = bench_path("snap");
    for (auto _ : state) {
        SnapshotWriter::Options opt;
        opt.sync = false;
        auto w = SnapshotWriter::create(path, opt);
        if (!w) return state.SkipWithError(w.error().to_string().c_str());
        if (!(*w)->add_pages(0x1000, memory) || !(*w)->finish()) return state.SkipWithError("snapshot failed");
    }
    ::unlink(path.c_str());
    state.SetItemsProcessed(int64_t(state.iterations() * kSnapshotPages));
}
BENCHMARK(BM_SnapshotWrite)->UseRealTime();

void BM_SnapshotPwrite(benchmark::State& state) {
    auto memory = pattern(kSnapshotPages);
    std::string path = bench_path("snap-pwrite");
    for (auto _ : state) {
        int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
        for (size_t i = 0; i < kSnapshotPages; ++i)
            if (::pwrite(fd, memory.data() + i * kPage, kPage, off_t(4096 + i * kPage)) != ssize_t(kPage))
                return state.SkipWithError("pwrite failed");
        ::close(fd);
    }
    ::unlink(path.c_str());
    state.SetItemsProcessed(int64_t(state.iterations() * kSnapshotPages));
}
BENCHMARK(BM_SnapshotPwrite)->UseRealTime();

void BM_SnapshotRead(benchmark::State& state) {
    auto memory = pattern(kSnapshotPages);
    std::string path = bench_path("snap-read");
    {
        SnapshotWriter::Options opt;
        opt.sync = false;
        auto w = SnapshotWriter::create(path, opt);
        if (!w || !(*w)->add_pages(0x1000, memory) || !(*w)->finish()) return state.SkipWithError("snapshot failed");
    }
    auto r = SnapshotReader::open(path);
    if (!r) return state.SkipWithError(r.error().to_string().c_str());
    std::vector<uint64_t> gpns((*r)->page_numbers().begin(), (*r)->page_numbers().end());
    for (auto _ : state)
        if (!(*r)->read_pages(gpns, memory)) return state.SkipWithError("read failed");
    ::unlink(path.c_str());
    state.SetItemsProcessed(int64_t(state.iterations() * kSnapshotPages));
}
BENCHMARK(BM_SnapshotRead)->UseRealTime();

void BM_SnapshotPread(benchmark::State& state) {
    auto memory = pattern(kSnapshotPages);
    std::string path = bench_path("snap-pread");
    int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) return state.SkipWithError("cannot create the file");
    ::unlink(path.c_str());
    if (::pwrite(fd, memory.data(), memory.size(), 4096) != ssize_t(memory.size()))
        return state.SkipWithError("pwrite failed");
    for (auto _ : state)
        for (size_t i = 0; i < kSnapshotPages; ++i)
            if (::pread(fd, memory.data() + i * kPage, kPage, off_t(4096 + i * kPage)) != ssize_t(kPage))
                return state.SkipWithError("pread failed");
    ::close(fd);
    state.SetItemsProcessed(int64_t(state.iterations() * kSnapshotPages));
}
BENCHMARK(BM_SnapshotPread)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
