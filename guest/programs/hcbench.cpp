// hcbench: a tight loop of Nop hypercalls, for measuring the round trip.
// params[0] = calls per vCPU (0 -> 1000); params[1] != 0 -> every vCPU runs the
// loop (concurrent doorbells), else only vCPU 0. Reports the totals and the
// guest-side TSC cycles per call.
#include "guest/programs/programs.h"
#include "guest/rt/console.h"
#include "guest/rt/report.h"
#include "guest/rt/runtime.h"
#include "guest/rt/sync.h"

namespace pv::guest {

namespace {

Atomic<uint64_t> g_calls{0};
Atomic<uint64_t> g_errors{0};
Atomic<uint64_t> g_cycles{0};
Atomic<uint32_t> g_finished{0};

constexpr uint64_t kDefaultCalls = 1000;

uint64_t rdtsc() {
    uint32_t lo, hi;
    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t(hi) << 32) | lo;
}

void bench_loop(uint64_t n) {
    uint64_t errors = 0;
    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < n; ++i) {
        if (hypercall(abi::Call::Nop) != 0) ++errors;
    }
    g_cycles.fetch_add(rdtsc() - t0);
    g_calls.fetch_add(n);
    g_errors.fetch_add(errors);
    g_finished.fetch_add(1, MemoryOrder::Release);
}

}  // namespace

int64_t run_hcbench(uint32_t vcpu, const abi::BootInfo& boot) {
    const uint64_t n = boot.params[0] != 0 ? boot.params[0] : kDefaultCalls;
    const bool all_vcpus = boot.params[1] != 0;
    const uint32_t runners = all_vcpus ? boot.vcpu_count : 1;
    if (vcpu != 0 && !all_vcpus) vcpu_stop();
    bench_loop(n);
    if (vcpu != 0) vcpu_stop();

    while (g_finished.load(MemoryOrder::Acquire) < runners) cpu_relax();
    const uint64_t calls = g_calls.load();
    const uint64_t errors = g_errors.load();
    Report<8> report;
    report.add_u64("hcbench.calls", calls);
    report.add_u64("hcbench.errors", errors);
    report.add_u64("hcbench.vcpus", runners);
    report.add_f64("hcbench.cycles_per_call", calls != 0 ? double(g_cycles.load()) / double(calls) : 0.0);
    if (int64_t r = report.send(); r < 0) {
        printf("hcbench: the report was rejected (%s)\n", hc_error_name(r));
        return 1;
    }
    printf("hcbench: %lu Nop hypercalls on %u vCPU(s), %lu errors\n", calls, runners, errors);
    return errors == 0 ? 0 : 1;
}

}  // namespace pv::guest
