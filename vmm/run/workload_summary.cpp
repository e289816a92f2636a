#include "vmm/run/workload_summary.h"

#include <string_view>

#include "vmm/run/metrics.h"

namespace pv::run {
namespace {

constexpr std::string_view kStatPrefix = "wl.stat.";

// A wl.* value; the guest sends them as u64 (vCPU 0 only, so the first wins).
std::optional<uint64_t> report_u64(const RunResult& r, std::string_view key) {
    for (const auto& e : r.reports) {
        if (e.field.key != key) continue;
        if (e.field.type == abi::FieldType::U64) return e.field.u64;
        if (e.field.type == abi::FieldType::I64 && e.field.i64 >= 0) return static_cast<uint64_t>(e.field.i64);
        return std::nullopt;
    }
    return std::nullopt;
}

}  // namespace

std::string WorkloadSummary::verdict() const {
    std::string v;
    auto add = [&v](const std::string& s) { v += (v.empty() ? "" : "; ") + s; };
    if (verify_errors != 0)
        add("VERIFICATION FAILED: " + std::to_string(verify_errors) + (verify_errors == 1 ? " block" : " blocks") +
            " did not verify");
    if (invariant_failures != 0)
        add("INVARIANT CHECK FAILED: " + std::to_string(invariant_failures) + " of " +
            std::to_string(invariant_checks) + " checks");
    if (v.empty() && exit_status != 0) add("FAILED: exit status " + std::to_string(exit_status));
    return v.empty() ? "ok" : v;
}

std::optional<WorkloadSummary> workload_summary(const RunConfig& config, const RunResult& r) {
    auto ops = report_u64(r, "wl.ops");
    if (!ops) return std::nullopt;
    WorkloadSummary w;
    w.name = config.workload;
    w.ops = *ops;
    auto get = [&r](std::string_view key) { return report_u64(r, key).value_or(0); };
    w.vcpus = get("wl.vcpus");
    w.allocs = get("wl.allocs");
    w.frees = get("wl.frees");
    w.failures = get("wl.failures");
    w.verify_errors = get("wl.verify_errors");
    w.invariant_checks = get("wl.invariant_checks");
    w.invariant_failures = get("wl.invariant_failures");
    w.bytes_peak = get("wl.bytes_peak");
    w.live_peak = get("wl.live_peak");
    w.heap_bytes = get("wl.heap_bytes");
    w.pages_touched = get("wl.pages_touched");
    w.cycles = get("wl.cycles");
    w.ns = get("wl.ns");
    if (w.ns != 0) w.ops_per_sec = static_cast<double>(w.ops) * 1e9 / static_cast<double>(w.ns);
    for (const auto& e : r.reports)
        if (e.field.key.starts_with(kStatPrefix) && e.field.type == abi::FieldType::U64)
            w.stats.emplace_back(e.field.key.substr(kStatPrefix.size()), e.field.u64);
    w.exit_status = r.exit_status;
    return w;
}

std::optional<FaultLatency> workload_fault_latency(const MemoryReport& m) {
    if (m.guest_virtual && m.guest_virtual->latency.count != 0)
        return FaultLatency{m.guest_virtual->latency, "guest page faults"};
    if (m.demand && m.demand->latency.count != 0) return FaultLatency{m.demand->latency, "demand faults"};
    return std::nullopt;
}

nlohmann::ordered_json workload_json(const WorkloadSummary& w, const MemoryReport& m) {
    nlohmann::ordered_json stats = nlohmann::ordered_json::object();
    for (const auto& [k, v] : w.stats) stats[k] = v;
    nlohmann::ordered_json j = {
        {"name", w.name},
        {"passed", w.passed()},
        {"vcpus", w.vcpus},
        {"ops", w.ops},
        {"ns", w.ns},
        {"ops_per_sec", w.ops_per_sec ? nlohmann::ordered_json(*w.ops_per_sec) : nlohmann::ordered_json(nullptr)},
        {"allocs", w.allocs},
        {"frees", w.frees},
        {"failures", w.failures},
        {"verify_errors", w.verify_errors},
        {"invariant_checks", w.invariant_checks},
        {"invariant_failures", w.invariant_failures},
        {"bytes_peak", w.bytes_peak},
        {"live_peak", w.live_peak},
        {"heap_bytes", w.heap_bytes},
        {"pages_touched", w.pages_touched},
        {"cycles", w.cycles},
        {"stats", stats}};
    if (m.guest_virtual) {
        const GuestVirtualReport& g = *m.guest_virtual;
        j["guest_faults"] = g.faults;
        j["guest_mapped_faults"] = g.mapped_faults;
        j["guest_fault_around_pages"] = g.fault_around_pages;
        j["frames_per_node_at_exit"] = g.frames_per_node;
    }
    if (m.demand) j["demand_faults"] = m.demand->faults;
    if (auto l = workload_fault_latency(m)) {
        j["fault_latency_source"] = l->source;
        j["fault_latency_ns"] = latency_json(l->latency);
    }
    return j;
}

}  // namespace pv::run
