#include "vmm/run/services.h"

namespace pv::run {

Services::Services(uint32_t vcpus, std::function<void(std::string_view)> sink)
    : m_handler_sets(std::make_unique<std::atomic<uint64_t>[]>(vcpus)),
      m_vcpus(vcpus),
      m_sink(std::move(sink)),
      m_partial(vcpus) {}

void Services::emit_locked(uint32_t vcpu, std::string_view line) {
    std::string out = m_vcpus > 1 ? "[vcpu " + std::to_string(vcpu) + "] " : std::string();
    out += line;
    m_console += out;
    m_console += '\n';
    if (m_sink) m_sink(out);
}

int64_t Services::set_fault_handler(uint32_t vcpu, uint64_t gva) {
    if (gva >= (uint64_t{1} << 47)) return static_cast<int64_t>(abi::HcError::Invalid);
    m_fault_handler.store(gva, std::memory_order_release);
    if (vcpu < m_vcpus) m_handler_sets[vcpu].fetch_add(1, std::memory_order_acq_rel);
    return 0;
}

void Services::console(uint32_t vcpu, std::string_view text) {
    std::lock_guard guard(m_lock);
    if (vcpu >= m_vcpus) return;
    std::string& partial = m_partial[vcpu];
    for (char c : text) {
        if (c == '\n') {
            emit_locked(vcpu, partial);
            partial.clear();
        } else {
            partial += c;
        }
    }
}

void Services::report(uint32_t vcpu, std::span<const hc::ReportValue> fields) {
    std::lock_guard guard(m_lock);
    for (const auto& f : fields) m_reports.push_back({vcpu, f});
}

void Services::finish(std::string& console, std::vector<ReportEntry>& reports) {
    std::lock_guard guard(m_lock);
    for (uint32_t i = 0; i < m_vcpus; ++i) {
        if (!m_partial[i].empty()) emit_locked(i, m_partial[i]);
        m_partial[i].clear();
    }
    console = std::move(m_console);
    reports = std::move(m_reports);
    m_console.clear();
    m_reports.clear();
}

}  // namespace pv::run
