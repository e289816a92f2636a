// Guest-physical first-touch cost per page (issue #5's benchmark), on the real
// KVM, for the four ways a guest RAM page gets its host page:
//
//   eager-prepopulated  eager zone, prefault=on: only KVM's second-level (here shadow) fault remains
//   anon-kernel         eager zone, no prefault: the host kernel fills the anonymous page
//   uffd-1page          demand zone, fault-around off: one userfaultfd round trip per page
//   uffd-faultaround    demand zone, fault-around on, window 16 or 64 pages
//
// Each case runs the guest program `touch` over the first 32 MiB (8192 pages)
// of a 256 MiB zone that sits alone on guest node 1 (so the pages of the guest
// image, on node 0, are never counted), sequential or random order, 1 or 2
// vCPUs, and for the demand modes three fault-server placements:
//   same      vCPU 0 on CPU 0, fault thread on CPU 0 (vCPU 1, if any, on CPU 1)
//   other     vCPU 0 on CPU 0, fault thread on CPU 1 (with 2 vCPUs it shares CPU 1 with vCPU 1)
//   unpinned  nothing pinned
// Eager cases pin the vCPUs like `same` (placement=pinned; the kernel handles the
// fault on the vCPU's CPU). Names: BM_FirstTouch/<mode>/window:<w>/order:<o>/vcpus:<n>/placement:<p>.
//
// ns_per_page = touch.cyc_per_page (guest TSC cycles summed over the vCPUs'
// first-touch passes / pages) / host TSC GHz. ASSUMPTION: the guest TSC ticks
// at the host TSC rate (KVM's default without a TSC-scaling request, which
// pagevisor never makes); the host rate is measured once (rdtsc against
// steady_clock over ~50 ms) and reported as the counter tsc_ghz. Medians over
// the iterations; each iteration is a whole VM run. (Checked on the PVM
// machines: a slow case's converted touch time matches the host wall time of
// its iteration within a few percent.) wall_ns_per_page is the slowest vCPU's
// pass / pages, the elapsed time per page with 2 vCPUs. vm_exits counts
// KVM_RUN returns (a handful per run: demand faults are resolved inside
// KVM_RUN, no VMM round trip).
//
// Reading the server latency counters: they time event read -> UFFDIO_COPY
// return on the server thread. With placement `same` the copy wakes the vCPU
// on the server's own CPU, which may run before the ioctl returns, so there
// they include guest time and are not the service time.
//
// Baselines in the same run:
//   BM_UffdRoundTrip/placement:same|other  a host thread (CPU 0) first-touching 8192 pages of a
//       registered anonymous mapping served by a pv::memory::FaultServer (fault-around off,
//       server on CPU 0 or 1): the minimal userfaultfd round trip, no KVM
//   BM_HostAnonTouch                       the same touch on a plain anonymous mapping (kernel fault)
//
// Per-fault latency histograms (the fault server's, event read -> page
// installed) go to $PAGEVISOR_BENCH_HIST_DIR/<mode>.json for the demand modes
// (sequential, 1 vCPU, placements same and other) and the host round trip.
#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/support/latency_export.h"
#include "bench/support/timing.h"
#include "vmm/kvm/kvm.h"
#include "vmm/memory/fault_server.h"
#include "vmm/run/run_config.h"

namespace {

using pv::bench::median;
using pv::bench::tsc_ghz;

using Clock = std::chrono::steady_clock;
using pv::memory::LatencyHistogram;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kTouchBytes = 32ULL << 20;  // 8192 pages per run
constexpr uint64_t kTouchPages = kTouchBytes / kPage;
constexpr uint64_t kZoneBytes = 256ULL << 20;
constexpr uint64_t kSystemZoneBytes = 64ULL << 20;
constexpr uint64_t kSkipZeroCheckNoVerify = 1 | 4;  // touch params[5]: a first touch is one write
constexpr int kIterations = 3;

enum class Mode { EagerPrepopulated, AnonKernel, Uffd1Page, UffdFaultAround };
enum class Placement { Pinned, Same, Other, Unpinned };

const char* mode_name(Mode m) {
    switch (m) {
        case Mode::EagerPrepopulated: return "eager-prepopulated";
        case Mode::AnonKernel: return "anon-kernel";
        case Mode::Uffd1Page: return "uffd-1page";
        case Mode::UffdFaultAround: return "uffd-faultaround";
    }
    return "?";
}

const char* placement_name(Placement p) {
    switch (p) {
        case Placement::Pinned: return "pinned";
        case Placement::Same: return "same";
        case Placement::Other: return "other";
        case Placement::Unpinned: return "unpinned";
    }
    return "?";
}

bool is_demand(Mode m) { return m == Mode::Uffd1Page || m == Mode::UffdFaultAround; }

struct Case {
    Mode mode = Mode::AnonKernel;
    uint32_t window = 0;  // fault-around pages (UffdFaultAround only)
    bool random = false;
    uint32_t vcpus = 1;
    Placement placement = Placement::Pinned;

    [[nodiscard]] std::string name() const {
        return std::string("BM_FirstTouch/") + mode_name(mode) + "/window:" + std::to_string(window) +
               "/order:" + (random ? "random" : "seq") + "/vcpus:" + std::to_string(vcpus) +
               "/placement:" + placement_name(placement);
    }
    [[nodiscard]] std::vector<int> vcpu_cpus() const {
        if (placement == Placement::Unpinned) return {};
        std::vector<int> cpus;
        for (uint32_t i = 0; i < vcpus; ++i) cpus.push_back(static_cast<int>(i % 2));
        return cpus;
    }
    [[nodiscard]] std::vector<int> fault_cpus() const {
        if (placement == Placement::Same) return {0};
        if (placement == Placement::Other) return {1};
        return {};
    }
    // The label scripts/bench parses (docs/benchmarks.md, "Thread placement").
    [[nodiscard]] std::string label() const {
        std::string s = std::string("placement=") + placement_name(placement);
        auto cpus = vcpu_cpus();
        for (uint32_t i = 0; i < vcpus; ++i) {
            std::string key = i == 0 ? "vcpu_cpu" : "vcpu" + std::to_string(i) + "_cpu";
            s += " " + key + "=" + (cpus.empty() ? std::string("any") : std::to_string(cpus[i]));
        }
        if (is_demand(mode)) {
            auto f = fault_cpus();
            s += " handler_cpu=" + (f.empty() ? std::string("any") : std::to_string(f[0]));
        } else {
            s += " handler=kernel";
        }
        return s;
    }
    // Latency file name, or empty when this case exports none.
    [[nodiscard]] std::string latency_mode() const {
        if (!is_demand(mode) || random || vcpus != 1) return {};
        if (placement != Placement::Same && placement != Placement::Other) return {};
        std::string m = mode == Mode::Uffd1Page ? "uffd-1page" : "uffd-faultaround" + std::to_string(window);
        return m + "-" + placement_name(placement);
    }
};

// Guest node 0: a small eager zone holding the image, every vCPU. Guest node 1:
// the measured zone alone, so `touch` with params[0] = 2 selects only it.
pv::run::RunConfig config(const Case& c) {
    namespace mem = pv::memory;
    pv::run::RunConfig r;
    r.guest_path = PAGEVISOR_GUEST_IMAGE;
    r.workload = "touch";
    r.vcpus = c.vcpus;
    mem::ZoneConfig sys;
    sys.id = "sys";
    sys.size = kSystemZoneBytes;
    mem::ZoneConfig zone;
    zone.id = "measured";
    zone.size = kZoneBytes;
    zone.backend = is_demand(c.mode) ? mem::ZoneBackend::Demand : mem::ZoneBackend::Eager;
    zone.prefault = c.mode == Mode::EagerPrepopulated;
    r.memory_config.zones = {sys, zone};
    mem::NumaNodeConfig n0;
    n0.memory_zones = {"sys"};
    for (uint32_t i = 0; i < c.vcpus; ++i) n0.cpus.push_back(i);
    mem::NumaNodeConfig n1;
    n1.guest_numa_id = 1;
    n1.memory_zones = {"measured"};
    r.memory_config.nodes = {n0, n1};
    r.memory_config.fault_around = {.enabled = c.mode == Mode::UffdFaultAround,
                                    .pages = c.window == 0 ? mem::kDefaultFaultAroundPages : c.window};
    r.params = {2, is_demand(c.mode) ? 2u : 1u, kTouchBytes, c.random ? 1u : 0u, 0, kSkipZeroCheckNoVerify, 0, 0};
    r.seed = 0x5eed;
    r.vcpu_cpus = c.vcpu_cpus();
    r.fault_cpus = c.fault_cpus();
    // A loaded shared machine can stall one fault for a while; that is a data point, not a failure.
    r.fault_watchdog = std::chrono::milliseconds(20'000);
    r.timeout = std::chrono::milliseconds(120'000);
    return r;
}

std::optional<pv::hc::ReportValue> report(const pv::run::RunResult& r, const std::string& key) {
    for (const auto& e : r.reports)
        if (e.field.key == key) return e.field;
    return std::nullopt;
}

// Sums per-run fault-server snapshots (buckets and counts add; max is the max).
void merge(LatencyHistogram::Snapshot& into, const LatencyHistogram::Snapshot& s) {
    for (unsigned b = 0; b < LatencyHistogram::kBuckets; ++b) into.buckets[b] += s.buckets[b];
    into.count += s.count;
    into.sum_ns += s.sum_ns;
    into.max_ns = std::max(into.max_ns, s.max_ns);
}

// Writes the snapshot as <mode>.json: log2 buckets, bucket b's upper bound is 2^(b+1)-1 ns,
// from one empty bucket below the lowest non-empty one (the first file bucket
// then also stands for the empty ones under it) to the highest non-empty one.
std::string export_snapshot(const std::string& mode, const LatencyHistogram::Snapshot& s) {
    if (s.count == 0) return {};
    unsigned first = LatencyHistogram::kBuckets, last = 0;
    for (unsigned b = 0; b < LatencyHistogram::kBuckets; ++b) {
        if (s.buckets[b] == 0) continue;
        first = std::min(first, b);
        last = b;
    }
    std::vector<double> bounds;
    std::vector<uint64_t> counts;
    for (unsigned b = first == 0 ? 0 : first - 1; b <= last; ++b) {
        bounds.push_back(std::ldexp(1.0, static_cast<int>(b) + 1) - 1);
        counts.push_back(s.buckets[b]);
    }
    auto h = pv::bench::histogram_from_buckets(mode, bounds, counts, static_cast<double>(s.max_ns));
    if (!h) return h.error().to_string();
    if (auto st = pv::bench::export_histogram(*h); !st) return st.error().to_string();
    return {};
}

void set_latency_counters(benchmark::State& state, const LatencyHistogram::Snapshot& s) {
    state.counters["server_p50_ns"] = static_cast<double>(s.p50_ns());
    state.counters["server_p99_ns"] = static_cast<double>(s.p99_ns());
    state.counters["server_max_ns"] = static_cast<double>(s.max_ns);
    state.counters["server_mean_ns"] = static_cast<double>(s.mean_ns());
}

// One VM run; false (and the benchmark skipped with why) when it did not run cleanly.
struct RunSample {
    double ns_per_page = 0;
    double wall_ns_per_page = 0;  // the slowest vCPU's pass / pages: elapsed time per page
    double faults = 0;
    double fault_around_pages = 0;
    double exits = 0;  // KVM_RUN returns, all vCPUs: tells whether a fault costs a VMM round trip
    LatencyHistogram::Snapshot latency;
};

std::optional<RunSample> run_once(benchmark::State& state, const Case& c) {
    auto r = pv::run::run_vm(config(c));
    if (!r) {
        state.SkipWithError(r.error().to_string().c_str());
        return std::nullopt;
    }
    if (r->error || r->exit_status != 0) {
        std::string why = r->error ? r->error->to_string() : "touch exited " + std::to_string(r->exit_status);
        state.SkipWithError((why + "; console: " + r->console).c_str());
        return std::nullopt;
    }
    auto cyc = report(*r, "touch.cyc_per_page");
    auto pages = report(*r, "touch.pages");
    auto cycles = report(*r, "touch.cycles");
    if (!cyc || !pages || !cycles || pages->u64 != kTouchPages) {
        state.SkipWithError("touch did not report cyc_per_page, cycles and 8192 pages");
        return std::nullopt;
    }
    RunSample s;
    s.ns_per_page = cyc->f64 / tsc_ghz();
    s.wall_ns_per_page = static_cast<double>(cycles->u64) / tsc_ghz() / static_cast<double>(kTouchPages);
    s.exits = static_cast<double>(r->total_exits());
    if (const auto& d = r->memory_report.demand) {
        s.faults = static_cast<double>(d->faults);
        s.fault_around_pages = static_cast<double>(d->fault_around_pages);
        s.latency = d->latency;
    }
    return s;
}

void BM_FirstTouch(benchmark::State& state, Case c) {
    state.SetLabel(c.label());
    std::vector<double> ns, wall, faults, around, exits;
    LatencyHistogram::Snapshot merged;
    for (auto _ : state) {
        auto s = run_once(state, c);
        if (!s) return;
        ns.push_back(s->ns_per_page);
        wall.push_back(s->wall_ns_per_page);
        faults.push_back(s->faults);
        around.push_back(s->fault_around_pages);
        exits.push_back(s->exits);
        merge(merged, s->latency);
    }
    state.counters["ns_per_page"] = median(ns);
    state.counters["wall_ns_per_page"] = median(wall);
    state.counters["faults"] = median(faults);
    state.counters["fault_around_pages"] = median(around);
    state.counters["vm_exits"] = median(exits);
    state.counters["tsc_ghz"] = tsc_ghz();
    if (is_demand(c.mode)) set_latency_counters(state, merged);
    if (auto mode = c.latency_mode(); !mode.empty())
        if (auto err = export_snapshot(mode, merged); !err.empty()) state.SkipWithError(err.c_str());
}

// ---- host baselines (no KVM) ----

class AnonMapping {
public:
    explicit AnonMapping(uint64_t size) : m_size(size) {
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        m_base = p == MAP_FAILED ? nullptr : static_cast<unsigned char*>(p);
    }
    ~AnonMapping() {
        if (m_base) ::munmap(m_base, m_size);
    }
    AnonMapping(const AnonMapping&) = delete;
    AnonMapping& operator=(const AnonMapping&) = delete;
    [[nodiscard]] unsigned char* base() const { return m_base; }

private:
    unsigned char* m_base = nullptr;
    uint64_t m_size = 0;
};

// Writes one byte per page on a thread pinned to `cpu`; returns ns per page.
double touch_pages_on(int cpu, unsigned char* base) {
    double ns = 0;
    std::thread t([&] {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        auto t0 = Clock::now();
        for (uint64_t i = 0; i < kTouchPages; ++i) *reinterpret_cast<volatile unsigned char*>(base + i * kPage) = 1;
        ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
    });
    t.join();
    return ns / static_cast<double>(kTouchPages);
}

void BM_UffdRoundTrip(benchmark::State& state, Placement placement) {
    const int handler_cpu = placement == Placement::Same ? 0 : 1;
    state.SetLabel(std::string("placement=") + placement_name(placement) +
                   " toucher_cpu=0 handler_cpu=" + std::to_string(handler_cpu));
    pv::memory::FaultServer::Options o;
    o.fault_around = pv::memory::FaultServer::FaultAround::Off;
    o.cpus = {handler_cpu};
    o.watchdog_timeout = std::chrono::milliseconds(20'000);
    auto server = pv::memory::FaultServer::create(o);
    if (!server) return state.SkipWithError(server.error().to_string().c_str());
    std::vector<double> ns;
    for (auto _ : state) {
        AnonMapping m(kTouchBytes);
        if (!m.base()) return state.SkipWithError("mmap failed");
        auto start = mm::host_addr(m.base());
        if (auto s = (*server)->register_range(start, kTouchBytes, {}); !s)
            return state.SkipWithError(s.error().to_string().c_str());
        ns.push_back(touch_pages_on(0, m.base()));
        if (!(*server)->wait_idle(std::chrono::seconds(20))) return state.SkipWithError("fault server not idle");
        if (auto s = (*server)->unregister_range(start); !s) return state.SkipWithError(s.error().to_string().c_str());
    }
    auto stats = (*server)->stats();
    state.counters["ns_per_page"] = median(ns);
    state.counters["faults"] = static_cast<double>(stats.faults) / static_cast<double>(ns.size());
    set_latency_counters(state, stats.latency);
    if (auto err = export_snapshot(std::string("host-uffd-") + placement_name(placement), stats.latency); !err.empty())
        state.SkipWithError(err.c_str());
}

void BM_HostAnonTouch(benchmark::State& state) {
    state.SetLabel("placement=pinned toucher_cpu=0 handler=kernel");
    std::vector<double> ns;
    for (auto _ : state) {
        AnonMapping m(kTouchBytes);
        if (!m.base()) return state.SkipWithError("mmap failed");
        ns.push_back(touch_pages_on(0, m.base()));
    }
    state.counters["ns_per_page"] = median(ns);
}

void register_all() {
    for (Placement p : {Placement::Same, Placement::Other})
        benchmark::RegisterBenchmark((std::string("BM_UffdRoundTrip/placement:") + placement_name(p)).c_str(),
                                     BM_UffdRoundTrip, p)
            ->Iterations(5)
            ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("BM_HostAnonTouch", BM_HostAnonTouch)->Iterations(5)->Unit(benchmark::kMillisecond);

    std::vector<Case> cases;
    for (Mode m : {Mode::EagerPrepopulated, Mode::AnonKernel, Mode::Uffd1Page, Mode::UffdFaultAround}) {
        std::vector<uint32_t> windows =
            m == Mode::UffdFaultAround ? std::vector<uint32_t>{16, 64} : std::vector<uint32_t>{0};
        std::vector<Placement> placements =
            is_demand(m) ? std::vector<Placement>{Placement::Same, Placement::Other, Placement::Unpinned}
                         : std::vector<Placement>{Placement::Pinned};
        for (uint32_t w : windows)
            for (bool random : {false, true})
                for (uint32_t vcpus : {1u, 2u})
                    for (Placement p : placements) cases.push_back({m, w, random, vcpus, p});
    }
    for (const Case& c : cases)
        benchmark::RegisterBenchmark(c.name().c_str(), BM_FirstTouch, c)
            ->Iterations(kIterations)
            ->Unit(benchmark::kMillisecond);
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
