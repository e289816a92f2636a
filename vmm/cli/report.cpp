// The readable block printed after `pagevisor run`.
#include <cstdio>
#include <sstream>

#include "vmm/cli/cli.h"
#include "vmm/memory/memory_size.h"

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
