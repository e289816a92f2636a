// What to run (RunConfig) and what happened (RunResult): the in-process API of
// a VM's lifecycle, used by the CLI, the tests and the benchmarks.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/base/error.h"
#include "vmm/hypercall/report.h"
#include "vmm/kvm/types.h"

namespace pv::run {

// Hooks that make a VM misbehave on purpose, for tests of the error paths.
struct DebugHooks {
    bool corrupt_idt = false;  // clear every IDT gate: the first exception triple-faults
};

struct RunConfig {
    std::string guest_path;            // ELF image (vmm/loader)
    std::string workload = "hello";    // BootInfo::workload
    std::array<uint64_t, 8> params{};  // BootInfo::params
    uint64_t seed = 0;                 // BootInfo::seed
    uint64_t memory = 256ULL << 20;    // bytes of guest RAM
    uint32_t vcpus = 1;                // 1..layout::kMaxVcpus
    std::chrono::milliseconds timeout{30'000};
    // Called with each complete console line (prefixed "[vcpu i] " when vcpus > 1),
    // from vCPU threads, one call at a time. May be empty.
    std::function<void(std::string_view line)> console_sink;
    std::string kvm_device = "/dev/kvm";
    DebugHooks debug;
};

struct ReportEntry {
    uint32_t vcpu = 0;
    hc::ReportValue field;
};

struct VcpuCounts {
    uint64_t exits = 0;
    uint64_t hypercalls = 0;
};

struct RunResult {
    // The process exit status: the guest's code & 0xff when it called Exit, 0 when
    // every vCPU stopped, else pv::exit_status(error->kind).
    int exit_status = 0;
    std::optional<int64_t> guest_exit_code;  // as passed to Exit
    std::optional<Error> error;              // why the VM stopped, if not by the guest's choice
    std::string console;                     // every console line, '\n'-terminated
    std::vector<ReportEntry> reports;
    std::vector<VcpuCounts> vcpus;
    std::chrono::nanoseconds time_to_first_entry{0};                  // from VM creation to vCPU 0's first KVM_RUN
    std::optional<std::chrono::nanoseconds> time_to_first_hypercall;  // from VM creation
    std::chrono::nanoseconds time_to_exit{0};                         // from VM creation
    kvm::Flavour flavour = kvm::Flavour::Unknown;
    uint64_t memory = 0;

    [[nodiscard]] uint64_t total_hypercalls() const;
    [[nodiscard]] uint64_t total_exits() const;
};

// Creates the VM, boots the image, runs it to completion and tears it down.
// Errors before the guest runs (bad config, image, KVM) are returned as an
// Error; everything after is in RunResult (error set when the guest failed).
Expected<RunResult> run_vm(const RunConfig& config);

}  // namespace pv::run
