#include "vmm/run/metrics.h"

#include <chrono>
#include <cstdio>
#include <iostream>

#include "vmm/kvm/kvm.h"
#include "vmm/run/workload_summary.h"

namespace pv::run {

nlohmann::ordered_json latency_json(const memory::LatencyHistogram::Snapshot& s) {
    nlohmann::ordered_json buckets = nlohmann::ordered_json::array();
    for (unsigned b = 0; b < memory::LatencyHistogram::kBuckets; ++b) {
        if (s.buckets[b] == 0) continue;
        uint64_t le = b >= 63 ? UINT64_MAX : (uint64_t{1} << (b + 1)) - 1;
        buckets.push_back({{"le", le}, {"count", s.buckets[b]}});
    }
    return {{"count", s.count},     {"mean_ns", s.mean_ns()}, {"p50_ns", s.p50_ns()},
            {"p99_ns", s.p99_ns()}, {"max_ns", s.max_ns},     {"buckets", buckets}};
}

nlohmann::ordered_json memory_json(const MemoryReport& m) {
    nlohmann::ordered_json nodes = nlohmann::ordered_json::array();
    for (const auto& n : m.nodes)
        nodes.push_back({{"node", n.node},
                         {"used_pages", n.used_pages()},
                         {"demand_pages", n.demand_pages},
                         {"eager_resident_pages", n.eager_resident_pages},
                         {"quota_pages", n.quota_pages},
                         {"free_pages", n.free_pages},
                         {"borrowed_pages", n.borrowed_pages},
                         {"refused_charges", n.refused_charges}});
    nlohmann::ordered_json areas = nlohmann::ordered_json::array();
    for (const auto& a : m.areas)
        areas.push_back({{"name", a.name},
                         {"gpa", a.gpa},
                         {"size", a.size},
                         {"kind", a.kind},
                         {"node", a.node},
                         {"resident_pages", a.resident_pages}});
    nlohmann::ordered_json j = {{"ram_bytes", m.ram_bytes}, {"nodes", nodes}, {"areas", areas}};
    nlohmann::ordered_json latency = nlohmann::ordered_json::object();
    if (m.demand) {
        const FaultReport& f = *m.demand;
        j["demand"] = {{"faults", f.faults},
                       {"pages_installed", f.pages_installed},
                       {"fault_around", f.fault_around},
                       {"fault_around_window", f.fault_around_window},
                       {"fault_around_pages", f.fault_around_pages},
                       {"eexist_races", f.eexist_races},
                       {"oom_refusals", f.oom_refusals},
                       {"unaccounted_pages", f.unaccounted_pages},
                       {"stalls", f.stalls},
                       {"thread_cpus", f.thread_cpus}};
        latency["demand"] = latency_json(f.latency);
    }
    if (m.guest_virtual) {
        const GuestVirtualReport& g = *m.guest_virtual;
        j["guest_virtual"] = {{"faults", g.faults},
                              {"mapped_faults", g.mapped_faults},
                              {"spurious", g.spurious},
                              {"segv", g.segv},
                              {"oom", g.oom},
                              {"fault_around_pages", g.fault_around_pages},
                              {"huge_faults", g.huge_faults},
                              {"shootdowns", g.shootdowns},
                              {"page_table_frames", g.page_table_frames},
                              {"frames_per_node", g.frames_per_node},
                              {"latency_ns", latency_json(g.latency)}};
    }
    // Per backend. Eager faults are resolved by the kernel: pagevisor does not see them one by one.
    j["fault_latency_ns"] = latency;
    return j;
}

nlohmann::ordered_json run_metrics(const RunConfig& config, const RunResult& r) {
    using namespace std::chrono;
    nlohmann::ordered_json vcpus = nlohmann::ordered_json::array();
    for (size_t i = 0; i < r.vcpus.size(); ++i)
        vcpus.push_back({{"vcpu", i},
                         {"exits", r.vcpus[i].exits},
                         {"hypercalls", r.vcpus[i].hypercalls},
                         {"cpu", i < r.vcpu_cpus.size() ? r.vcpu_cpus[i] : -1}});
    nlohmann::ordered_json guest = nlohmann::ordered_json::array();
    for (const auto& e : r.reports) {
        nlohmann::ordered_json v;
        switch (e.field.type) {
            case abi::FieldType::U64: v = e.field.u64; break;
            case abi::FieldType::I64: v = e.field.i64; break;
            case abi::FieldType::F64: v = e.field.f64; break;
            default: v = nullptr;
        }
        guest.push_back({{"vcpu", e.vcpu}, {"key", e.field.key}, {"value", v}});
    }
    nlohmann::ordered_json vm = {{"workload", config.workload},
                                 {"seed", config.seed},
                                 {"vcpus", config.vcpus},
                                 {"memory_bytes", r.memory},
                                 {"kvm_flavour", std::string(kvm::flavour_name(r.flavour))},
                                 {"exit_status", r.exit_status},
                                 {"wall_ns", r.time_to_exit.count()},
                                 {"time_to_first_entry_ns", r.time_to_first_entry.count()}};
    vm["guest_exit_code"] =
        r.guest_exit_code ? nlohmann::ordered_json(*r.guest_exit_code) : nlohmann::ordered_json(nullptr);
    vm["error"] = r.error ? nlohmann::ordered_json(r.error->to_string()) : nlohmann::ordered_json(nullptr);
    vm["time_to_first_hypercall_ns"] = r.time_to_first_hypercall
                                           ? nlohmann::ordered_json(r.time_to_first_hypercall->count())
                                           : nlohmann::ordered_json(nullptr);
    nlohmann::ordered_json line = {
        {"utc_timestamp_ms", duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count()},
        {"format_version", kMetricsFormatVersion},
        {"source", "run"},
        {"vm", vm},
        {"vcpu", vcpus},
        {"memory", memory_json(r.memory_report)},
        {"guest", guest}};
    // Allocator workloads only (docs/workloads.md).
    if (auto w = workload_summary(config, r)) line["workload"] = workload_json(*w, r.memory_report);
    return line;
}

Status append_metrics_line(const std::string& path, const nlohmann::ordered_json& line) {
    // replace: a workload name or path with invalid UTF-8 must not throw (found by fuzz_cli)
    const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (path == "-") {
        std::cout << text << std::flush;
        return {};
    }
    std::FILE* f = std::fopen(path.c_str(), "a");
    if (f == nullptr) return errno_error(ErrorKind::Io, "cannot open metrics file '" + path + "'");
    bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    ok = std::fclose(f) == 0 && ok;
    if (!ok) return errno_error(ErrorKind::Io, "cannot write metrics file '" + path + "'");
    return {};
}

}  // namespace pv::run
