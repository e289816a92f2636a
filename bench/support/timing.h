// Timing helpers shared by the VM benchmarks: the host TSC rate (to turn the
// guest's rdtsc deltas into time) and the median of per-iteration samples.
#pragma once

#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace pv::bench {

// Host TSC ticks per ns, measured once (rdtsc against steady_clock over ~50 ms).
// ASSUMPTION: the guest TSC ticks at the host rate (pagevisor never asks KVM
// for TSC scaling); BootInfo::tsc_khz reports KVM's view of the same rate.
inline double tsc_ghz() {
    static const double ghz = [] {
        using Clock = std::chrono::steady_clock;
        const auto t0 = Clock::now();
        const uint64_t c0 = __rdtsc();
        while (Clock::now() - t0 < std::chrono::milliseconds(50)) {
        }
        const uint64_t c1 = __rdtsc();
        const double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
        return static_cast<double>(c1 - c0) / ns;
    }();
    return ghz;
}

// The upper median (0 for no samples).
inline double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace pv::bench
