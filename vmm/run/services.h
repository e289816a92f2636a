// VmServices for one VM: console lines and reports, collected under one lock.
// Console text is split into lines per vCPU (a vCPU may write a line in
// several calls); each complete line goes to the sink, prefixed "[vcpu i] "
// when the VM has more than one vCPU.
#pragma once

#include <atomic>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/hypercall/dispatcher.h"
#include "vmm/run/run_config.h"

namespace pv::run {

class Services final : public hc::VmServices {
public:
    Services(uint32_t vcpus, std::function<void(std::string_view)> sink);

    void console(uint32_t vcpu, std::string_view text) override;
    void report(uint32_t vcpu, std::span<const hc::ReportValue> fields) override;
    // Any canonical lower-half (user) address or 0; Invalid otherwise.
    int64_t set_fault_handler(uint32_t vcpu, uint64_t gva) override;
    [[nodiscard]] uint64_t fault_handler() const { return m_fault_handler.load(std::memory_order_acquire); }
    // How many times `vcpu` called SetFaultHandler successfully: a call made after a
    // segmentation fault was delivered re-arms delivery on that vCPU (docs/hypercall-abi.md).
    [[nodiscard]] uint64_t fault_handler_sets(uint32_t vcpu) const {
        return vcpu < m_vcpus ? m_handler_sets[vcpu].load(std::memory_order_acquire) : 0;
    }

    // Emits unterminated lines, then moves the collected text and reports out.
    void finish(std::string& console, std::vector<ReportEntry>& reports);

private:
    void emit_locked(uint32_t vcpu, std::string_view line);

    std::atomic<uint64_t> m_fault_handler{0};
    std::unique_ptr<std::atomic<uint64_t>[]> m_handler_sets;  // per vCPU, written by that vCPU's thread
    std::mutex m_lock;
    uint32_t m_vcpus;
    std::function<void(std::string_view)> m_sink;
    std::vector<std::string> m_partial;  // per vCPU, guarded by m_lock
    std::string m_console;               // guarded by m_lock
    std::vector<ReportEntry> m_reports;  // guarded by m_lock
};

}  // namespace pv::run
