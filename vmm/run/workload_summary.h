// What an allocator workload reported (its wl.* keys, docs/workloads.md) next to
// pagevisor's own counters of the run: the one source of the text summary
// (`pagevisor run`) and of the "workload" group of the metrics line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/memory/fault_stats.h"
#include "vmm/run/run_config.h"

namespace pv::run {

struct WorkloadSummary {
    std::string name;
    uint64_t vcpus = 0, ops = 0, allocs = 0, frees = 0, failures = 0;
    uint64_t verify_errors = 0, invariant_checks = 0, invariant_failures = 0;
    uint64_t bytes_peak = 0, live_peak = 0, heap_bytes = 0, pages_touched = 0, cycles = 0, ns = 0;
    std::optional<double> ops_per_sec;                    // none when wl.ns is 0 (no TSC frequency)
    std::vector<std::pair<std::string, uint64_t>> stats;  // wl.stat.<name> (without the prefix), report order
    int exit_status = 0;
    // The verdict: no verification error, no invariant failure, exit status 0.
    [[nodiscard]] bool passed() const { return verify_errors == 0 && invariant_failures == 0 && exit_status == 0; }
    // "ok", or what failed ("VERIFICATION FAILED: 2 blocks did not verify", ...).
    [[nodiscard]] std::string verdict() const;
};

// None when the guest reported no wl.ops (not an allocator workload, or it failed early).
std::optional<WorkloadSummary> workload_summary(const RunConfig& config, const RunResult& result);

// The fault latency the summary shows: guest page faults (GuestVirtualReport::latency)
// when there were any, else guest-physical demand faults; none when neither has samples.
struct FaultLatency {
    memory::LatencyHistogram::Snapshot latency;
    std::string source;  // "guest page faults" or "demand faults"
};
std::optional<FaultLatency> workload_fault_latency(const MemoryReport& m);

// The "workload" group of the metrics line (docs/metrics.md).
nlohmann::ordered_json workload_json(const WorkloadSummary& w, const MemoryReport& m);

}  // namespace pv::run
