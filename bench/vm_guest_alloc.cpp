// Guest allocator throughput (issue #7's benchmark): the allocator workloads of
// guest/workload/ (slab-churn, buddy-churn, tlsf-churn, frames, ids) run inside
// the guest on the real KVM, and the SAME engine, parameters and seed run on the
// host in this process, so the ratio guest/host is the cost of virtualisation
// (populated heap) and of demand paging (lazy heap).
//
//   BM_GuestAlloc/<workload>/heap:populated  heap mmapped with kMapPopulate on an eager
//                                            zone: no guest page fault, pure allocator cost
//                                            under virtualisation (plus KVM's own first-write
//                                            fault of each page: shadow paging on PVM)
//   BM_GuestAlloc/<workload>/heap:demand     lazy heap on a demand zone (fault-around 16):
//                                            each first touch is a guest #PF served by
//                                            pagevisor and a userfaultfd fault
//   BM_HostAlloc/<workload>/heap:populated   host process, heap mmapped with MAP_POPULATE
//   BM_HostAlloc/<workload>/heap:lazy        host process, plain anonymous heap (kernel
//                                            page faults on first touch)
//
// ns_per_op = the op loop's rdtsc cycles / ops / TSC GHz. In the guest the cycles are
// measured by the guest (wl.cycles; the same loop as the host's) and converted with
// the host TSC rate measured here, as bench_vm_guest_fault does (ASSUMPTION: the guest
// TSC ticks at the host rate; pagevisor never asks KVM for TSC scaling). Medians over
// the iterations; each guest iteration is a whole VM run. Every case reports
// `same_sequence` = 1 when its allocation sequence digest (wl.stat.digest) equals the
// host run's: both did exactly the same operations.
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/support/metrics_export.h"
#include "bench/support/timing.h"
#include "guest/workload/workload.h"
#include "vmm/kvm/kvm.h"
#include "vmm/run/run_config.h"
#include "vmm/run/workload_summary.h"

namespace {

using pv::bench::median;
using pv::bench::tsc_ghz;

namespace wl = pv::workload;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kOps = 200'000;
constexpr uint64_t kSeed = 0x5eed;
constexpr int kIterations = 3;
constexpr uint64_t kMiB = 1ULL << 20;

enum class Heap { Populated, Demand, HostLazy };

const char* heap_name(Heap h) {
    switch (h) {
        case Heap::Populated: return "populated";
        case Heap::Demand: return "demand";
        case Heap::HostLazy: return "lazy";
    }
    return "?";
}

// The engine's environment on the host: rdtsc, a mutex for multi, and memory laid
// out as pagevisor's guest mmap lays it out (first fit, page granular, from a base
// aligned far beyond any request's alignment), so that block addresses modulo every
// alignment, hence the allocation sequence, match the guest's (same_sequence).
class HostEnv {
public:
    using Lock = std::mutex;

    HostEnv() {
        m_raw = ::mmap(nullptr, kReserve + kBaseAlign, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m_raw != MAP_FAILED) m_next = (reinterpret_cast<uint64_t>(m_raw) + kBaseAlign - 1) & ~(kBaseAlign - 1);
    }
    ~HostEnv() {
        if (m_raw != MAP_FAILED) ::munmap(m_raw, kReserve + kBaseAlign);
    }
    HostEnv(const HostEnv&) = delete;
    HostEnv& operator=(const HostEnv&) = delete;

    void* map(uint64_t bytes, bool populate) {
        const uint64_t len = (bytes + 4095) & ~uint64_t{4095};
        if (m_next == 0 || m_used + len > kReserve) return nullptr;
        void* p = reinterpret_cast<void*>(m_next + m_used);
        if (::mprotect(p, len, PROT_READ | PROT_WRITE) != 0) return nullptr;
        if (populate) (void)::madvise(p, len, MADV_POPULATE_WRITE);
        m_used += len;
        return p;
    }
    void unmap(void* p, uint64_t bytes) { (void)::madvise(p, bytes, MADV_DONTNEED); }
    uint64_t now() { return __rdtsc(); }
    wl::MultiShared<Lock>& shared() { return m_shared; }
    void relax() { std::this_thread::yield(); }

private:
    static constexpr uint64_t kReserve = 1ULL << 30;
    static constexpr uint64_t kBaseAlign = 1ULL << 30;
    void* m_raw = MAP_FAILED;
    uint64_t m_next = 0;
    uint64_t m_used = 0;
    wl::MultiShared<Lock> m_shared{};
};

wl::Params params(wl::Kind k, Heap h) {
    wl::Params p;
    p.ops = kOps;
    p.seed = kSeed;
    p.flags = h == Heap::Populated ? pv::abi::kWorkloadPopulate : 0;
    return wl::resolve(k, p);  // the guest resolves the same zero fields the same way
}

struct Sample {
    double ns_per_op = 0;
    uint64_t digest = 0;
    double guest_faults = 0;
    double demand_faults = 0;
};

std::optional<Sample> host_run(benchmark::State& state, wl::Kind k, Heap h) {
    HostEnv env;
    const wl::Result r = wl::run(k, params(k, h), env);
    if (wl::exit_code(r) != 0 || r.ops != kOps) {
        state.SkipWithError("host run failed (verify/invariant errors or map failure)");
        return std::nullopt;
    }
    return Sample{static_cast<double>(r.cycles) / tsc_ghz() / static_cast<double>(r.ops), r.digest, 0, 0};
}

pv::run::RunConfig guest_config(wl::Kind k, Heap h) {
    pv::run::RunConfig c;
    c.guest_path = PAGEVISOR_GUEST_IMAGE;
    c.workload = wl::kind_name(k);
    c.seed = kSeed;
    const wl::Params p = params(k, h);
    c.workload_args = {p.ops, p.heap_bytes, p.max_block, p.check_every, p.flags};
    pv::memory::ZoneConfig m0;
    m0.id = "m0";
    m0.size = (h == Heap::Demand ? 48 : 256) * kMiB;
    c.memory_config.zones = {m0};
    if (h == Heap::Demand) {
        pv::memory::ZoneConfig d0;
        d0.id = "d0";
        d0.size = 256 * kMiB;
        d0.backend = pv::memory::ZoneBackend::Demand;
        c.memory_config.zones.push_back(d0);
    }
    c.memory_config.fault_around = {.enabled = true, .pages = 16};
    c.vcpu_cpus = {0};
    c.timeout = std::chrono::seconds(120);
    return c;
}

std::optional<Sample> guest_run(benchmark::State& state, wl::Kind k, Heap h) {
    const pv::run::RunConfig c = guest_config(k, h);
    auto r = pv::run::run_vm(c);
    if (!r) {
        state.SkipWithError(r.error().to_string().c_str());
        return std::nullopt;
    }
    auto w = pv::run::workload_summary(c, *r);
    if (r->error || r->exit_status != 0 || !w || w->ops != kOps || w->cycles == 0) {
        std::string why = r->error ? r->error->to_string() : c.workload + " exited " + std::to_string(r->exit_status);
        state.SkipWithError((why + "; console: " + r->console).c_str());
        return std::nullopt;
    }
    (void)pv::bench::export_run_metrics(std::string("BM_GuestAlloc/") + c.workload, heap_name(h), c, *r);
    Sample s;
    s.ns_per_op = static_cast<double>(w->cycles) / tsc_ghz() / static_cast<double>(w->ops);
    for (const auto& [name, value] : w->stats)
        if (name == "digest") s.digest = value;
    const auto& m = r->memory_report;
    s.guest_faults = m.guest_virtual ? static_cast<double>(m.guest_virtual->faults) : 0;
    s.demand_faults = m.demand ? static_cast<double>(m.demand->faults) : 0;
    return s;
}

uint64_t host_digest(wl::Kind k) {
    HostEnv env;
    return wl::run(k, params(k, Heap::HostLazy), env).digest;
}

void BM_Alloc(benchmark::State& state, wl::Kind k, Heap h, bool guest) {
    state.SetLabel(std::string(guest ? "guest vcpu_cpu=0" : "host") + " ops=" + std::to_string(kOps));
    std::vector<double> ns, gfaults, dfaults;
    uint64_t digest = 0;
    for (auto _ : state) {
        auto s = guest ? guest_run(state, k, h) : host_run(state, k, h);
        if (!s) return;
        ns.push_back(s->ns_per_op);
        gfaults.push_back(s->guest_faults);
        dfaults.push_back(s->demand_faults);
        digest = s->digest;
    }
    state.counters["ns_per_op"] = median(ns);
    state.counters["ops_per_sec"] = median(ns) > 0 ? 1e9 / median(ns) : 0;
    if (guest) {
        state.counters["gv_faults"] = median(gfaults);
        state.counters["demand_faults"] = median(dfaults);
    }
    state.counters["same_sequence"] = digest == host_digest(k) ? 1 : 0;
    state.counters["tsc_ghz"] = tsc_ghz();
}

void register_all() {
    for (wl::Kind k :
         {wl::Kind::SlabChurn, wl::Kind::BuddyChurn, wl::Kind::TlsfChurn, wl::Kind::Frames, wl::Kind::Ids}) {
        const std::string name = wl::kind_name(k);
        auto add = [&](const char* prefix, Heap h, bool guest) {
            benchmark::RegisterBenchmark((std::string(prefix) + name + "/heap:" + heap_name(h)).c_str(), BM_Alloc, k, h,
                                         guest)
                ->Iterations(kIterations)
                ->Unit(benchmark::kMillisecond);
        };
        add("BM_HostAlloc/", Heap::Populated, false);
        add("BM_HostAlloc/", Heap::HostLazy, false);
        add("BM_GuestAlloc/", Heap::Populated, true);
        add("BM_GuestAlloc/", Heap::Demand, true);
    }
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    register_all();
    benchmark::AddCustomContext("kvm_flavour", std::string(pv::kvm::flavour_name(pv::kvm::Kvm::flavour())));
    benchmark::AddCustomContext("host_tsc_ghz", std::to_string(tsc_ghz()));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
