// VM startup and hypercall round trip on the real KVM, labelled with the flavour.
//
//   BM_BareVm          baseline: open /dev/kvm, KVM_CREATE_VM, one vCPU, teardown
//   BM_HelloBoot       `hello` on 1 vCPU: creation -> first KVM_RUN, -> first hypercall, -> exit
//                      (medians over the iterations, as counters), ratio to BM_BareVm
//   BM_KvmRunFloor     baseline: KVM_RUN with immediate_exit set (the ioctl, no entry)
//   BM_NopHypercall    hcbench: (t(N calls) - t(0 calls)) / N per Nop round trip
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "bench/support/metrics_export.h"
#include "bench/support/timing.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"
#include "vmm/run/run_config.h"

namespace {

using pv::bench::median;

using Clock = std::chrono::steady_clock;
double g_bare_vm_us = 0;
double g_kvm_run_floor_us = 0;

double us_since(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }

pv::run::RunConfig config(const char* workload, uint64_t param0 = 0) {
    pv::run::RunConfig c;
    c.guest_path = PAGEVISOR_GUEST_IMAGE;
    c.workload = workload;
    c.params[0] = param0;
    c.memory = 64ULL << 20;
    return c;
}

void BM_BareVm(benchmark::State& state) {
    std::vector<double> samples;
    for (auto _ : state) {
        auto t0 = Clock::now();
        auto kvm = pv::kvm::Kvm::open();
        if (!kvm) return state.SkipWithError(kvm.error().to_string().c_str());
        auto vm = kvm->create_vm();
        if (!vm) return state.SkipWithError(vm.error().to_string().c_str());
        auto vcpu = vm->create_vcpu(0);
        benchmark::DoNotOptimize(vcpu);
        samples.push_back(us_since(t0));
    }
    g_bare_vm_us = median(samples);
    state.counters["median_us"] = g_bare_vm_us;
}
BENCHMARK(BM_BareVm)->Iterations(50)->Unit(benchmark::kMicrosecond);

void BM_HelloBoot(benchmark::State& state) {
    std::vector<double> entry, first, exit, total;
    for (auto _ : state) {
        auto t0 = Clock::now();
        auto r = pv::run::run_vm(config("hello"));
        if (!r || r->error || !r->time_to_first_hypercall) return state.SkipWithError("hello did not run cleanly");
        total.push_back(us_since(t0));
        entry.push_back(std::chrono::duration<double, std::micro>(r->time_to_first_entry).count());
        first.push_back(std::chrono::duration<double, std::micro>(*r->time_to_first_hypercall).count());
        exit.push_back(std::chrono::duration<double, std::micro>(r->time_to_exit).count());
        if (exit.size() == 1) {  // one metrics line per benchmark (docs/metrics.md)
            if (auto m = pv::bench::export_run_metrics("BM_HelloBoot", "hello", config("hello"), *r); !m)
                return state.SkipWithError(m.error().to_string().c_str());
        }
    }
    state.counters["first_entry_median_us"] = median(entry);
    state.counters["first_hypercall_median_us"] = median(first);
    state.counters["exit_median_us"] = median(exit);
    state.counters["run_vm_median_us"] = median(total);
    if (g_bare_vm_us > 0) state.counters["exit_vs_bare_vm"] = median(exit) / g_bare_vm_us;
}
BENCHMARK(BM_HelloBoot)->Iterations(40)->Unit(benchmark::kMillisecond);

void BM_KvmRunFloor(benchmark::State& state) {
    auto kvm = pv::kvm::Kvm::open();
    if (!kvm) return state.SkipWithError(kvm.error().to_string().c_str());
    auto vm = kvm->create_vm();
    auto vcpu = vm->create_vcpu(0);
    if (!vcpu) return state.SkipWithError(vcpu.error().to_string().c_str());
    vcpu->request_immediate_exit(true);
    auto t0 = Clock::now();
    int64_t n = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(vcpu->run());
        ++n;
    }
    g_kvm_run_floor_us = n > 0 ? us_since(t0) / static_cast<double>(n) : 0;
    state.counters["per_call_us"] = g_kvm_run_floor_us;
}
BENCHMARK(BM_KvmRunFloor)->Unit(benchmark::kMicrosecond);

void BM_NopHypercall(benchmark::State& state) {
    const uint64_t calls = static_cast<uint64_t>(state.range(0));
    std::vector<double> per_call;
    for (auto _ : state) {
        // hcbench treats 0 as its default (1000), so the baseline run does 1 call.
        auto t_small = pv::run::run_vm(config("hcbench", 1));
        auto t_big = pv::run::run_vm(config("hcbench", calls));
        if (!t_small || !t_big || t_small->error || t_big->error) return state.SkipWithError("hcbench failed");
        double diff = std::chrono::duration<double, std::micro>(t_big->time_to_exit - t_small->time_to_exit).count();
        per_call.push_back(diff / static_cast<double>(calls - 1));
    }
    double m = median(per_call);
    state.counters["per_hypercall_median_us"] = m;
    if (g_kvm_run_floor_us > 0) state.counters["vs_kvm_run_floor"] = m / g_kvm_run_floor_us;
}
BENCHMARK(BM_NopHypercall)->Arg(2000)->Iterations(7)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    benchmark::AddCustomContext("kvm_flavour", std::string(pv::kvm::flavour_name(pv::kvm::Kvm::flavour())));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
