// Run metrics as JSON (docs/metrics.md): one JSON object per line, in the
// spirit of Firecracker's metrics file (a line per flush, groups of counters,
// "utc_timestamp_ms" first), so line-oriented tooling can tail and parse it.
// `pagevisor run --metrics PATH` appends one line when the run ends. Keys keep
// the order written here (nlohmann::ordered_json): "utc_timestamp_ms" first.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "vmm/base/error.h"
#include "vmm/memory/fault_stats.h"
#include "vmm/run/run_config.h"

namespace pv::run {

inline constexpr int kMetricsFormatVersion = 1;

// {"count","mean_ns","p50_ns","p99_ns","max_ns","buckets":[{"le":upper_ns,"count":n},...]} (empty buckets omitted).
nlohmann::ordered_json latency_json(const memory::LatencyHistogram::Snapshot& s);
// The "memory" group: nodes, areas, demand faults and latency by backend.
nlohmann::ordered_json memory_json(const MemoryReport& m);
// The whole line for a finished run.
nlohmann::ordered_json run_metrics(const RunConfig& config, const RunResult& result);
// Appends `line` (one line, '\n'-terminated) to `path` ("-": standard output). Io error on failure.
Status append_metrics_line(const std::string& path, const nlohmann::ordered_json& line);

}  // namespace pv::run
