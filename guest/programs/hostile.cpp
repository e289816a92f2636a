// hostile: a flood of hypercalls with random numbers and wild arguments, from
// every vCPU at once. The VMM must answer each one (success or an HcError) and
// stay up; the program never calls Exit/VcpuStop through the flood. Arguments
// mix the values that break careless code: 0, ~0, near-top addresses, kernel
// structures, the doorbell, the hypercall page itself, unaligned and
// page-crossing pointers, huge and wrapping lengths, and valid buffers.
// params[0] = calls per vCPU (0 -> 20000). Reports hostile.calls/ok/errors/
// bad_result (results that are neither >= 0 nor a defined HcError) and exits
// 0 iff bad_result == 0.
#include "guest/programs/programs.h"
#include "guest/programs/touch_order.h"
#include "guest/rt/console.h"
#include "guest/rt/report.h"
#include "guest/rt/runtime.h"
#include "guest/rt/sync.h"
#include "vmm/abi/layout.h"

namespace pv::guest {

namespace {

Atomic<uint64_t> g_calls{0};
Atomic<uint64_t> g_ok{0};
Atomic<uint64_t> g_errors{0};
Atomic<uint64_t> g_bad{0};
Atomic<uint32_t> g_finished{0};

char g_buffer[4096];

uint64_t wild_value(uint64_t& state, uint32_t vcpu) {
    state = touch::splitmix64(state);
    const uint64_t r = state;
    switch (r % 16) {
        case 0: return 0;
        case 1: return ~0ULL;
        case 2: return ~0ULL - (r >> 52);                                   // near the top: wraps with any length
        case 3: return layout::kGdtAddr + (r >> 60);                        // supervisor-only structures
        case 4: return layout::kDoorbellAddr + ((r >> 40) & 0xfff);         // no RAM behind it
        case 5: return layout::hypercall_page(vcpu) + ((r >> 40) & 0xfff);  // the call's own page
        case 6: return reinterpret_cast<uint64_t>(g_buffer) + ((r >> 40) & 0x1fff);  // valid, or off the end
        case 7: return 1ULL << ((r >> 32) % 64);                                     // huge lengths
        case 8: return (r >> 40) & 0xffff;                                           // small lengths
        case 9: return 0x8000'0000'0000ULL + (r >> 20);                              // non-canonical
        case 10: return layout::kFreeRamStart + ((r >> 30) & 0xfff'ffff);            // RAM (mapped when in the RAM map)
        case 11: return reinterpret_cast<uint64_t>(&boot_info()) + ((r >> 40) & 0xfff);  // read-only page
        default: return r;
    }
}

// >= 0, an HcError, or (memory calls 16..19) an abi::MemError.
bool defined_result(uint64_t nr, int64_t ret) {
    if (ret >= 0 || (ret >= -6 && ret <= -1)) return true;
    return nr >= abi::kFirstMemoryCall && nr <= static_cast<uint64_t>(abi::Call::Brk) && ret >= -19 && ret <= -16;
}

void flood(uint32_t vcpu, uint64_t n, uint64_t seed) {
    uint64_t state = seed ^ (0x9e37'79b9'7f4a'7c15ULL * (vcpu + 1));
    uint64_t ok = 0, errors = 0, bad = 0;
    for (uint64_t i = 0; i < n; ++i) {
        state = touch::splitmix64(state);
        uint64_t nr = state % 40;  // every defined call and many undefined ones
        if (nr == static_cast<uint64_t>(abi::Call::Exit) || nr == static_cast<uint64_t>(abi::Call::VcpuStop)) nr = 0;
        uint64_t a[6];
        for (auto& x : a) x = wild_value(state, vcpu);
        // Keep the console quiet: an accepted length becomes 0 (badptr checks the console's
        // pointer validation); oversized lengths stay and must be refused.
        if (nr == static_cast<uint64_t>(abi::Call::ConsoleWrite) && a[1] <= abi::kMaxConsoleWrite) a[1] = 0;
        const int64_t ret = hypercall_raw(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        if (!defined_result(nr, ret)) ++bad;
        if (ret >= 0)
            ++ok;
        else
            ++errors;
    }
    g_calls.fetch_add(n);
    g_ok.fetch_add(ok);
    g_errors.fetch_add(errors);
    g_bad.fetch_add(bad);
    g_finished.fetch_add(1, MemoryOrder::Release);
}

}  // namespace

int64_t run_hostile(uint32_t vcpu, const abi::BootInfo& boot) {
    const uint64_t n = boot.params[0] != 0 ? boot.params[0] : 20000;
    flood(vcpu, n, boot.seed);
    if (vcpu != 0) vcpu_stop();
    while (g_finished.load(MemoryOrder::Acquire) < boot.vcpu_count) cpu_relax();
    Report<8> report;
    report.add_u64("hostile.calls", g_calls.load());
    report.add_u64("hostile.ok", g_ok.load());
    report.add_u64("hostile.errors", g_errors.load());
    report.add_u64("hostile.bad_result", g_bad.load());
    if (report.send() < 0) return 1;
    printf("hostile: %lu wild hypercalls on %u vCPU(s): %lu succeeded, %lu refused, %lu undefined results\n",
           g_calls.load(), boot.vcpu_count, g_ok.load(), g_errors.load(), g_bad.load());
    return g_bad.load() == 0 ? 0 : 1;
}

}  // namespace pv::guest
