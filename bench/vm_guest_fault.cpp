// Guest-virtual page-fault cost (issue #6's benchmark), on the real KVM: a CPL3
// first touch of lazily mmapped memory -> #PF -> the CPL0 stub -> one exit ->
// pagevisor maps a zeroed frame (plus fault-around when the faults are
// sequential) -> iretq. Every case runs the guest program `pfbench` over a
// fresh 4096-page (16 MiB) mem_map region, vCPU 0 pinned to CPU 0 (faults are
// served on the vCPU's own thread: there is no handler thread).
//
//   BM_GuestFault/lazy-1page/order:<o>    lazy, fault-around off: one exit per page
//   BM_GuestFault/lazy-fa16/order:<o>     lazy, fault-around 16 pages
//   BM_GuestFault/lazy-fa64/order:<o>     lazy, fault-around 64 pages
//   BM_GuestFault/populated/order:<o>     mem_map with Populate: no guest-visible fault (only
//                                         KVM's own second-level/shadow fault on first write)
//   BM_GuestFault/mapped/order:<o>        the pages touched once, the second pass timed: the
//                                         mapped-page access floor
// Floors in the same run (issue #6: "a bare I/O exit round trip and a #PF that the guest handles
// with no work"):
//   BM_ExitFloor/guest-nop                pfbench's Nop hypercall loop (4096 calls), guest rdtsc:
//                                         the bare exit round trip from the same guest code
//   BM_ExitFloor/startup-method           bench_vm_startup's method: wall time of hcbench with
//                                         2000 calls minus 1 call, / 1999
//   BM_PfFloor/guest-nowork               4096 loads from a PROT_NONE page registered as the no-work
//                                         window (SetNoWorkWindow): each is a #PF that the guest's CPL0
//                                         stub handles alone by skipping the load, no exit (ns_per_fault);
//                                         the same VM's 4096 Nops (exit_ns_per_call) and their sum
//                                         (floors_ns): the combined floor
// Every fault case also measures both floors in its own VM (256 Nops, 256 no-work faults):
// nop_ns_per_call, nowork_ns_per_fault, and page_vs_floors = ns_per_page / (their sum).
//
// The exit floor is the Nop hypercall, an MMIO-doorbell exit from user mode (port I/O does not
// work from CPL3 here); the #PF stub exits with `out` from CPL0, which on PVM costs less than the
// MMIO exit (/work/shared/ENVIRONMENT.md: ~14 us vs ~26-30 us), so on PVM the combined floor is
// higher than the exit the fault path really takes. On VMX/SVM both exits cost about the same.
//
// ns_per_page = pf.cyc_per_page / host TSC GHz. ASSUMPTION (as bench_vm_demand_fault): the
// guest TSC ticks at the host rate (pagevisor never asks KVM for TSC scaling); the rate is
// measured once (rdtsc against steady_clock over ~50 ms), reported as tsc_ghz. Medians over
// the iterations; each iteration is a whole VM run. Every fault case also reports the Nop
// round trip of its own VM (nop_ns_per_call) and pagevisor's counters of the run
// (RunResult.memory_report.guest_virtual): gv_faults, gv_fault_around_pages, gv_shootdowns.
#include <benchmark/benchmark.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bench/support/timing.h"
#include "vmm/kvm/kvm.h"
#include "vmm/run/run_config.h"

namespace {

using pv::bench::median;
using pv::bench::tsc_ghz;

using Clock = std::chrono::steady_clock;

constexpr uint64_t kPages = 4096;
constexpr uint64_t kCaseNops = 256;      // per fault case: the same-VM floor
constexpr uint64_t kFloorNops = 4096;    // BM_ExitFloor/guest-nop, BM_PfFloor/guest-nowork
constexpr uint64_t kCaseNoWork = 256;    // per fault case: the same-VM no-work #PF floor
constexpr uint64_t kFloorNoWork = 4096;  // BM_PfFloor/guest-nowork
constexpr uint64_t kStartupCalls = 2000;
constexpr uint64_t kFlagPopulate = 1;  // pfbench params[2]
constexpr uint64_t kFlagSecondPass = 2;
constexpr int kIterations = 3;

enum class Mode { Lazy1Page, LazyFa16, LazyFa64, Populated, Mapped };

const char* mode_name(Mode m) {
    switch (m) {
        case Mode::Lazy1Page: return "lazy-1page";
        case Mode::LazyFa16: return "lazy-fa16";
        case Mode::LazyFa64: return "lazy-fa64";
        case Mode::Populated: return "populated";
        case Mode::Mapped: return "mapped";
    }
    return "?";
}

uint32_t fault_around_of(Mode m) {
    switch (m) {
        case Mode::LazyFa16: return 16;
        case Mode::LazyFa64: return 64;
        default: return 1;
    }
}

uint64_t flags_of(Mode m) {
    if (m == Mode::Populated) return kFlagPopulate;
    if (m == Mode::Mapped) return kFlagSecondPass;
    return 0;
}

pv::run::RunConfig pfbench_config(Mode m, bool random, uint64_t pages, uint64_t nops, uint64_t nowork) {
    pv::run::RunConfig r;
    r.guest_path = PAGEVISOR_GUEST_IMAGE;
    r.workload = "pfbench";
    r.memory = 256ULL << 20;
    const uint32_t fa = fault_around_of(m);
    r.memory_config.fault_around = {.enabled = fa > 1, .pages = fa};
    r.params = {pages, random ? 1u : 0u, flags_of(m), nops, nowork, 0, 0, 0};
    r.seed = 0x5eed;
    r.vcpu_cpus = {0};
    r.timeout = std::chrono::milliseconds(120'000);
    return r;
}

std::optional<double> report_f64(const pv::run::RunResult& r, const std::string& key) {
    for (const auto& e : r.reports)
        if (e.field.key == key) return e.field.f64;
    return std::nullopt;
}

std::optional<uint64_t> report_u64(const pv::run::RunResult& r, const std::string& key) {
    for (const auto& e : r.reports)
        if (e.field.key == key) return e.field.u64;
    return std::nullopt;
}

// One clean VM run, or the benchmark skipped with why.
std::optional<pv::run::RunResult> run_clean(benchmark::State& state, const pv::run::RunConfig& c) {
    auto r = pv::run::run_vm(c);
    if (!r) {
        state.SkipWithError(r.error().to_string().c_str());
        return std::nullopt;
    }
    if (r->error || r->exit_status != 0) {
        std::string why = r->error ? r->error->to_string() : c.workload + " exited " + std::to_string(r->exit_status);
        state.SkipWithError((why + "; console: " + r->console).c_str());
        return std::nullopt;
    }
    return std::move(*r);
}

// pf.nowork_cyc_per_fault in ns, if the guest reports that all `n` probes took the no-work path.
std::optional<double> nowork_ns(benchmark::State& state, const pv::run::RunResult& r, uint64_t n) {
    auto cyc = report_f64(r, "pf.nowork_cyc_per_fault");
    auto skipped = report_u64(r, "pf.nowork_skipped");
    if (!cyc || !skipped || *skipped != n) {
        state.SkipWithError("pfbench did not report pf.nowork_cyc_per_fault with every probe skipped");
        return std::nullopt;
    }
    return *cyc / tsc_ghz();
}

struct Sample {
    double ns_per_page = 0;
    double nop_ns = 0;
    double nowork_ns = 0;
    double faults = 0;
    double fault_around_pages = 0;
    double shootdowns = 0;
    double exits = 0;
};

std::optional<Sample> run_case(benchmark::State& state, Mode m, bool random) {
    auto r = run_clean(state, pfbench_config(m, random, kPages, kCaseNops, kCaseNoWork));
    if (!r) return std::nullopt;
    auto nowork = nowork_ns(state, *r, kCaseNoWork);
    if (!nowork) return std::nullopt;
    auto cyc = report_f64(*r, "pf.cyc_per_page");
    auto nop = report_f64(*r, "pf.nop_cycles_per_call");
    auto pages = report_u64(*r, "pf.pages");
    auto errors = report_u64(*r, "pf.errors");
    if (!cyc || !nop || !pages || *pages != kPages || !errors || *errors != 0) {
        state.SkipWithError("pfbench did not report pf.cyc_per_page, pf.nop_cycles_per_call, 4096 pages, 0 errors");
        return std::nullopt;
    }
    if (!r->memory_report.guest_virtual) {
        state.SkipWithError("the run has no guest-virtual memory report");
        return std::nullopt;
    }
    const auto& gv = *r->memory_report.guest_virtual;
    Sample s;
    s.ns_per_page = *cyc / tsc_ghz();
    s.nop_ns = *nop / tsc_ghz();
    s.nowork_ns = *nowork;
    s.faults = static_cast<double>(gv.faults);
    s.fault_around_pages = static_cast<double>(gv.fault_around_pages);
    s.shootdowns = static_cast<double>(gv.shootdowns);
    s.exits = static_cast<double>(r->total_exits());
    return s;
}

void BM_GuestFault(benchmark::State& state, Mode m, bool random) {
    state.SetLabel(std::string("placement=pinned vcpu_cpu=0 handler=vcpu-thread fault_around=") +
                   std::to_string(fault_around_of(m)));
    std::vector<double> ns, nop, nowork, faults, around, shootdowns, exits;
    for (auto _ : state) {
        auto s = run_case(state, m, random);
        if (!s) return;
        ns.push_back(s->ns_per_page);
        nop.push_back(s->nop_ns);
        nowork.push_back(s->nowork_ns);
        faults.push_back(s->faults);
        around.push_back(s->fault_around_pages);
        shootdowns.push_back(s->shootdowns);
        exits.push_back(s->exits);
    }
    state.counters["ns_per_page"] = median(ns);
    state.counters["nop_ns_per_call"] = median(nop);
    if (median(nop) > 0) state.counters["page_vs_nop"] = median(ns) / median(nop);
    state.counters["nowork_ns_per_fault"] = median(nowork);
    state.counters["floors_ns"] = median(nop) + median(nowork);
    if (median(nop) + median(nowork) > 0)
        state.counters["page_vs_floors"] = median(ns) / (median(nop) + median(nowork));
    state.counters["gv_faults"] = median(faults);
    state.counters["gv_fault_around_pages"] = median(around);
    state.counters["gv_shootdowns"] = median(shootdowns);
    state.counters["vm_exits"] = median(exits);
    state.counters["tsc_ghz"] = tsc_ghz();
}

void BM_ExitFloorGuestNop(benchmark::State& state) {
    state.SetLabel("placement=pinned vcpu_cpu=0");
    std::vector<double> ns;
    for (auto _ : state) {
        // One populated page: no fault in the timed parts, only the Nop loop matters.
        auto r = run_clean(state, pfbench_config(Mode::Populated, false, 1, kFloorNops, 0));
        if (!r) return;
        auto nop = report_f64(*r, "pf.nop_cycles_per_call");
        if (!nop) return state.SkipWithError("pfbench did not report pf.nop_cycles_per_call");
        ns.push_back(*nop / tsc_ghz());
    }
    state.counters["ns_per_call"] = median(ns);
    state.counters["tsc_ghz"] = tsc_ghz();
}

// The no-work #PF floor and, from the same VM, the exit floor: their sum is the combined floor.
void BM_PfFloorGuestNoWork(benchmark::State& state) {
    state.SetLabel("placement=pinned vcpu_cpu=0");
    std::vector<double> nowork, nop;
    for (auto _ : state) {
        auto r = run_clean(state, pfbench_config(Mode::Populated, false, 1, kFloorNops, kFloorNoWork));
        if (!r) return;
        auto ns = nowork_ns(state, *r, kFloorNoWork);
        if (!ns) return;
        auto cyc = report_f64(*r, "pf.nop_cycles_per_call");
        if (!cyc) return state.SkipWithError("pfbench did not report pf.nop_cycles_per_call");
        nowork.push_back(*ns);
        nop.push_back(*cyc / tsc_ghz());
    }
    state.counters["ns_per_fault"] = median(nowork);
    state.counters["exit_ns_per_call"] = median(nop);
    state.counters["floors_ns"] = median(nowork) + median(nop);
    state.counters["tsc_ghz"] = tsc_ghz();
}

pv::run::RunConfig hcbench_config(uint64_t calls) {
    pv::run::RunConfig c;
    c.guest_path = PAGEVISOR_GUEST_IMAGE;
    c.workload = "hcbench";
    c.params[0] = calls;
    c.memory = 64ULL << 20;
    c.vcpu_cpus = {0};
    return c;
}

void BM_ExitFloorStartupMethod(benchmark::State& state) {
    state.SetLabel("placement=pinned vcpu_cpu=0");
    std::vector<double> ns;
    for (auto _ : state) {
        auto small = run_clean(state, hcbench_config(1));  // hcbench: 0 would mean its default (1000)
        if (!small) return;
        auto big = run_clean(state, hcbench_config(kStartupCalls));
        if (!big) return;
        const double diff = std::chrono::duration<double, std::nano>(big->time_to_exit - small->time_to_exit).count();
        ns.push_back(diff / static_cast<double>(kStartupCalls - 1));
    }
    state.counters["ns_per_call"] = median(ns);
}

void register_all() {
    benchmark::RegisterBenchmark("BM_ExitFloor/guest-nop", BM_ExitFloorGuestNop)
        ->Iterations(kIterations)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("BM_ExitFloor/startup-method", BM_ExitFloorStartupMethod)
        ->Iterations(kIterations)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("BM_PfFloor/guest-nowork", BM_PfFloorGuestNoWork)
        ->Iterations(kIterations)
        ->Unit(benchmark::kMillisecond);
    for (Mode m : {Mode::Lazy1Page, Mode::LazyFa16, Mode::LazyFa64, Mode::Populated, Mode::Mapped})
        for (bool random : {false, true}) {
            std::string name = std::string("BM_GuestFault/") + mode_name(m) + "/order:" + (random ? "random" : "seq");
            benchmark::RegisterBenchmark(name.c_str(), BM_GuestFault, m, random)
                ->Iterations(kIterations)
                ->Unit(benchmark::kMillisecond);
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
