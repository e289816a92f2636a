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
#include "vmm/memory/fault_stats.h"
#include "vmm/memory/memory_config.h"

namespace pv::run {

// Hooks that make a VM misbehave on purpose, for tests of the error paths.
struct DebugHooks {
    bool corrupt_idt = false;  // clear every IDT gate: the first exception triple-faults
    // vCPU 0's thread tries socket() once its seccomp filter is installed; the
    // errno (0: it worked) is RunResult::seccomp_probe_errno.
    bool probe_seccomp = false;
};

// A read-only guest-physical area (KVM_MEM_READONLY) filled with `contents`.
struct RomConfig {
    std::string name;
    uint64_t gpa = 0;   // page aligned, outside RAM and the device window
    uint64_t size = 0;  // bytes (page aligned); 0: contents rounded up to a page
    std::vector<std::byte> contents;
};

// System-call filters on the threads that handle guest input (vCPU threads,
// fault-server threads; docs/security.md).
enum class SeccompMode {
    Off,   // no filter
    Kill,  // a forbidden call kills the process with SIGSYS (Firecracker's default)
    Trap,  // a forbidden call prints its name and fails with EPERM (finding missing calls)
};

struct RunConfig {
    std::string guest_path;             // ELF image (vmm/loader)
    std::string workload = "hello";     // BootInfo::workload
    std::array<uint64_t, 8> params{};   // BootInfo::params
    uint64_t seed = 0;                  // BootInfo::seed
    abi::WorkloadArgs workload_args{};  // BootInfo::args (allocator workloads)
    uint64_t memory = 256ULL << 20;     // bytes of guest RAM when memory_config has no zones
    // Zones, guest NUMA nodes and fault-around (docs/memory-config.md). No zones:
    // one eager zone "mem0" of `memory` bytes on guest node 0.
    memory::MemoryConfig memory_config;
    std::vector<RomConfig> roms;
    uint32_t vcpus = 1;  // 1..layout::kMaxVcpus
    // Thread placement: vCPU i runs on vcpu_cpus[i % size], fault-server thread j
    // on fault_cpus[j % size]; empty: not pinned (the scheduler decides).
    std::vector<int> vcpu_cpus;
    std::vector<int> fault_cpus;
    unsigned fault_threads = 1;                      // userfaultfd server threads (1..16)
    bool fault_busy_poll = false;                    // server threads spin on read() instead of poll()
    std::chrono::milliseconds fault_watchdog{2000};  // a fault resolution slower than this stops the guest
    SeccompMode seccomp = SeccompMode::Kill;
    // Per-fault trace: one JSON line per demand fault (docs/metrics.md); empty: none.
    std::string fault_trace_path;
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

// Guest memory after the run (vmm/run/memory_system.h).
struct NodeMemoryReport {
    uint32_t node = 0;
    uint64_t demand_pages = 0;          // frames charged for this node's demand faults (held now)
    uint64_t eager_resident_pages = 0;  // resident pages of its eager (and system, ROM) areas
    uint64_t quota_pages = 0;           // 0 = unlimited
    uint64_t free_pages = 0;            // quota - used, or the host nodes' free memory
    uint64_t borrowed_pages = 0;        // charges paid by fallback nodes
    uint64_t refused_charges = 0;       // out-of-memory refusals
    [[nodiscard]] uint64_t used_pages() const { return demand_pages + eager_resident_pages; }
};

struct AreaReport {
    std::string name;
    uint64_t gpa = 0;
    uint64_t size = 0;
    std::string kind;  // eager, demand, read-only, hole
    uint32_t node = 0;
    uint64_t resident_pages = 0;
};

struct FaultReport {
    uint64_t faults = 0;              // userfaultfd events served
    uint64_t pages_installed = 0;     // incl. fault-around
    uint64_t fault_around_pages = 0;  // installed beyond the faulting page
    uint64_t eexist_races = 0;
    uint64_t oom_refusals = 0;
    uint64_t unaccounted_pages = 0;
    uint64_t stalls = 0;
    bool fault_around = false;
    uint32_t fault_around_window = 0;            // pages
    memory::LatencyHistogram::Snapshot latency;  // per fault: event read -> page installed
    std::vector<int> thread_cpus;                // per server thread, -1 = not pinned
};

// Guest-virtual memory served by pagevisor (vmm/paging, vmm/run/guest_paging.h).
struct GuestVirtualReport {
    uint64_t faults = 0;                         // guest #PF handled
    uint64_t mapped_faults = 0;                  // ... that mapped pages
    uint64_t spurious = 0;                       // ... already mapped (nothing replaced)
    uint64_t segv = 0;                           // ... not allowed: segmentation fault
    uint64_t oom = 0;                            // ... no frame on the node
    uint64_t fault_around_pages = 0;             // pages mapped beyond the faulting one
    uint64_t huge_faults = 0;                    // faults served with a 2 MiB page
    uint64_t shootdowns = 0;                     // translation flushes (every vCPU stopped, memslots re-created)
    uint64_t page_table_frames = 0;              // page-table frames taken from the guest frame allocator
    std::vector<uint64_t> frames_per_node;       // 4 KiB frames mapped at the end, per guest node
    memory::LatencyHistogram::Snapshot latency;  // per guest #PF: exit handled to resume decision
};

struct MemoryReport {
    std::vector<NodeMemoryReport> nodes;
    std::vector<AreaReport> areas;
    std::optional<FaultReport> demand;  // set when a zone is demand-paged
    std::optional<GuestVirtualReport> guest_virtual;
    uint64_t ram_bytes = 0;
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
    MemoryReport memory_report;
    std::vector<int> vcpu_cpus;              // where each vCPU thread was pinned (-1: not pinned)
    std::optional<int> seccomp_probe_errno;  // DebugHooks::probe_seccomp

    [[nodiscard]] uint64_t total_hypercalls() const;
    [[nodiscard]] uint64_t total_exits() const;
};

// Creates the VM, boots the image, runs it to completion and tears it down.
// Errors before the guest runs (bad config, image, KVM) are returned as an
// Error; everything after is in RunResult (error set when the guest failed).
Expected<RunResult> run_vm(const RunConfig& config);

}  // namespace pv::run
