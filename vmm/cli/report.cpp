// The readable block printed after `pagevisor run`.
#include <cstdio>
#include <sstream>

#include "vmm/cli/cli.h"
#include "vmm/memory/memory_size.h"
#include "vmm/run/workload_summary.h"

namespace pv::cli {
namespace {

std::string format_duration(std::chrono::nanoseconds ns) {
    char buf[32];
    double v = static_cast<double>(ns.count());
    if (v < 1e3)
        (void)std::snprintf(buf, sizeof buf, "%.0f ns", v);
    else if (v < 1e6)
        (void)std::snprintf(buf, sizeof buf, "%.1f us", v / 1e3);
    else if (v < 1e9)
        (void)std::snprintf(buf, sizeof buf, "%.2f ms", v / 1e6);
    else
        (void)std::snprintf(buf, sizeof buf, "%.3f s", v / 1e9);
    return buf;
}

std::string format_value(const hc::ReportValue& f) {
    char buf[64];
    switch (f.type) {
        case abi::FieldType::U64:
            (void)std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(f.u64));
            break;
        case abi::FieldType::I64: (void)std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(f.i64)); break;
        case abi::FieldType::F64: (void)std::snprintf(buf, sizeof buf, "%.6g", f.f64); break;
        default: (void)std::snprintf(buf, sizeof buf, "?");
    }
    return buf;
}

void line(std::ostringstream& o, const char* label, const std::string& value) {
    char buf[32];
    (void)std::snprintf(buf, sizeof buf, "  %-24s ", label);
    o << buf << value << "\n";
}

std::string pages_text(uint64_t pages) {
    return std::to_string(pages) + " (" + memory::format_size(pages * 4096) + ")";
}

void memory_lines(std::ostringstream& o, const run::MemoryReport& m) {
    for (const auto& n : m.nodes) {
        std::string v = "used " + pages_text(n.used_pages()) + ", demand " + std::to_string(n.demand_pages) +
                        ", eager " + std::to_string(n.eager_resident_pages) + ", free " + std::to_string(n.free_pages);
        if (n.quota_pages != 0) v += ", quota " + std::to_string(n.quota_pages);
        if (n.borrowed_pages != 0) v += ", borrowed " + std::to_string(n.borrowed_pages);
        if (n.refused_charges != 0) v += ", refused " + std::to_string(n.refused_charges);
        line(o, ("node " + std::to_string(n.node) + " pages").c_str(), v);
    }
    if (m.guest_virtual && m.guest_virtual->faults + m.guest_virtual->shootdowns != 0) {
        const auto& g = *m.guest_virtual;
        line(o, "guest page faults",
             std::to_string(g.faults) + " (" + std::to_string(g.mapped_faults) + " mapped, " +
                 std::to_string(g.fault_around_pages) + " pages by fault-around, " + std::to_string(g.spurious) +
                 " spurious, " + std::to_string(g.segv) + " segv, " + std::to_string(g.oom) + " oom), " +
                 std::to_string(g.shootdowns) + " shootdowns");
        if (g.latency.count != 0)
            line(o, "guest fault latency",
                 "p50 " + format_duration(std::chrono::nanoseconds(g.latency.p50_ns())) + ", p99 " +
                     format_duration(std::chrono::nanoseconds(g.latency.p99_ns())) + ", max " +
                     format_duration(std::chrono::nanoseconds(g.latency.max_ns)));
    }
    if (!m.demand) return;
    const auto& f = *m.demand;
    line(o, "demand faults",
         std::to_string(f.faults) + " (" + std::to_string(f.pages_installed) + " pages, " +
             std::to_string(f.fault_around_pages) + " by fault-around " +
             (f.fault_around ? "window " + std::to_string(f.fault_around_window) : "off") + ")");
    if (f.latency.count != 0)
        line(o, "demand fault latency",
             "p50 " + format_duration(std::chrono::nanoseconds(f.latency.p50_ns())) + ", p99 " +
                 format_duration(std::chrono::nanoseconds(f.latency.p99_ns())) + ", max " +
                 format_duration(std::chrono::nanoseconds(f.latency.max_ns)));
    if (f.oom_refusals != 0 || f.stalls != 0)
        line(o, "demand failures",
             std::to_string(f.oom_refusals) + " out-of-memory refusals, " + std::to_string(f.stalls) + " stalls");
}

std::string rate_text(std::optional<double> per_sec) {
    if (!per_sec) return "n/a (the guest had no TSC frequency)";
    char buf[48];
    if (*per_sec >= 1e6)
        (void)std::snprintf(buf, sizeof buf, "%.2f M", *per_sec / 1e6);
    else if (*per_sec >= 1e3)
        (void)std::snprintf(buf, sizeof buf, "%.1f K", *per_sec / 1e3);
    else
        (void)std::snprintf(buf, sizeof buf, "%.0f", *per_sec);
    return buf;
}

std::string frames_text(const run::MemoryReport& m) {
    std::string v;
    const auto& frames = m.guest_virtual->frames_per_node;
    for (size_t n = 0; n < frames.size(); ++n) {
        if (!v.empty()) v += ", ";
        v += "node " + std::to_string(n) + ": " + std::to_string(frames[n]);
        for (const auto& node : m.nodes)
            if (node.node == n) v += " (host pages backing the node: " + std::to_string(node.used_pages()) + ")";
    }
    return v.empty() ? "none" : v;
}

// The allocator workload's results (docs/workloads.md), when the guest reported them.
void workload_lines(std::ostringstream& o, const run::WorkloadSummary& w, const run::MemoryReport& m) {
    o << "  workload summary (" << w.name << "):\n";
    line(o, "  result", w.verdict());
    line(o, "  ops",
         std::to_string(w.ops) + " (" + std::to_string(w.allocs) + " allocs, " + std::to_string(w.frees) + " frees, " +
             std::to_string(w.failures) + " refused) on " + std::to_string(w.vcpus) +
             (w.vcpus == 1 ? " vCPU" : " vCPUs"));
    std::string rate = rate_text(w.ops_per_sec);
    if (w.ns != 0)
        rate += " (" + std::to_string(w.ops) + " ops in " + format_duration(std::chrono::nanoseconds(w.ns)) + ")";
    line(o, "  ops/s (guest time)", rate);
    line(o, "  verification errors", std::to_string(w.verify_errors));
    line(o, "  invariant checks",
         std::to_string(w.invariant_checks) + " (" + std::to_string(w.invariant_failures) + " failed)");
    line(o, "  peak", memory::format_size(w.bytes_peak) + " in " + std::to_string(w.live_peak) + " live blocks");
    line(o, "  heap",
         memory::format_size(w.heap_bytes) + " mapped, " + std::to_string(w.pages_touched) + " pages touched");
    if (m.guest_virtual) {
        const auto& g = *m.guest_virtual;
        line(o, "  guest page faults",
             std::to_string(g.faults) + " (" + std::to_string(g.fault_around_pages) + " more pages by fault-around)");
        line(o, "  frames mapped at exit", frames_text(m));
    }
    if (auto l = run::workload_fault_latency(m))
        line(o, "  fault latency",
             "p50 " + format_duration(std::chrono::nanoseconds(l->latency.p50_ns())) + ", p99 " +
                 format_duration(std::chrono::nanoseconds(l->latency.p99_ns())) + " (" + l->source + ", " +
                 std::to_string(l->latency.count) + " samples)");
    else
        line(o, "  fault latency", "n/a (no fault was timed)");
}

}  // namespace

std::string format_report(const run::RunConfig& config, const run::RunResult& r) {
    std::ostringstream o;
    o << "pagevisor report\n";
    line(o, "workload", config.workload);
    line(o, "vCPUs", std::to_string(config.vcpus));
    line(o, "memory", memory::format_size(r.memory != 0 ? r.memory : config.memory));
    line(o, "KVM flavour", std::string(kvm::flavour_name(r.flavour)));
    std::string status = std::to_string(r.exit_status);
    if (r.guest_exit_code)
        status += " (guest exit code " + std::to_string(*r.guest_exit_code) + ")";
    else if (r.error)
        status += " (error)";
    else
        status += " (every vCPU stopped)";
    line(o, "exit status", status);
    line(o, "wall time", format_duration(r.time_to_exit));
    line(o, "time to first hypercall",
         r.time_to_first_hypercall ? format_duration(*r.time_to_first_hypercall) : "none");
    line(o, "hypercalls", std::to_string(r.total_hypercalls()) + " (" + std::to_string(r.total_exits()) + " exits)");
    memory_lines(o, r.memory_report);
    if (auto w = run::workload_summary(config, r)) workload_lines(o, *w, r.memory_report);
    if (!r.reports.empty()) o << "  guest report:\n";
    for (const auto& e : r.reports) {
        char buf[64];
        (void)std::snprintf(buf, sizeof buf, "    %-24s ", e.field.key.c_str());
        o << buf << format_value(e.field);
        if (config.vcpus > 1) o << "  (vcpu " << e.vcpu << ")";
        o << "\n";
    }
    return o.str();
}

}  // namespace pv::cli
