// Benchmarks that run VMs write each run's metrics in the same JSON-lines
// format as `pagevisor run --metrics` (docs/metrics.md), with "source":"bench"
// and the benchmark's name and mode added, so one parser reads both. The file
// is $PAGEVISOR_BENCH_METRICS (scripts/bench sets it to <out>/metrics.jsonl);
// nothing is written when it is unset.
#pragma once

#include <cstdlib>
#include <string>

#include "vmm/run/metrics.h"

namespace pv::bench {

inline constexpr const char* kMetricsEnv = "PAGEVISOR_BENCH_METRICS";

// Appends one metrics line for a finished run. Returns the I/O error, if any.
inline Status export_run_metrics(const std::string& benchmark, const std::string& mode, const run::RunConfig& config,
                                 const run::RunResult& result) {
    const char* path = std::getenv(kMetricsEnv);
    if (path == nullptr || *path == '\0') return {};
    auto line = run::run_metrics(config, result);
    line["source"] = "bench";
    line["bench"] = {{"benchmark", benchmark}, {"mode", mode}};
    return run::append_metrics_line(path, line);
}

}  // namespace pv::bench
