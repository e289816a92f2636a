// MemorySystem: a guest's memory as RunConfig describes it, built before the
// VM: the resolved zone/NUMA configuration, the per-guest-node host pools
// (NodeAccounting), the userfaultfd FaultServer (only when a zone is
// demand-paged) and the guest-physical space (GuestMemory) with its areas:
//
//   [0, kFreeRamStart)   "system": eager, the VMM's fixed structures and the
//                        image (carved out of the first zone(s), their node)
//   zone pieces          one area per piece of each zone, the zone's backend,
//                        node and host policy (place_zones)
//   device window        a hole (the hypercall doorbell)
//   ROMs                 read-only areas (RunConfig::roms)
//
// Fatal memory events (out of memory on a node, a stalled fault) are passed to
// the hooks given by set_hooks(); one that happens before is kept and passed
// when the hooks are set. Destruction order: GuestMemory, then the fault
// server, then the accounting (members are declared in the reverse order).
#pragma once

#include <array>
#include <atomic>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "vmm/abi/hypercall.h"
#include "vmm/memory/fault_server.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/memory/host_pool.h"
#include "vmm/memory/memory_config.h"
#include "vmm/run/run_config.h"

namespace pv::run {

struct MemoryHooks {
    std::function<void(const Error&)> on_fatal;  // guest out of memory, fault-server failure
    std::function<void(const Error&)> on_stall;  // a fault resolution exceeded the watchdog timeout
};

class MemorySystem {
public:
    // Usage errors for a bad configuration (one line naming the flag/key),
    // Resource/Kvm errors from the host.
    static Expected<std::unique_ptr<MemorySystem>> create(const RunConfig& config);
    MemorySystem(const MemorySystem&) = delete;
    MemorySystem& operator=(const MemorySystem&) = delete;
    ~MemorySystem();

    void set_hooks(MemoryHooks hooks);
    // Records that vCPU `vcpu` runs on thread `tid` (for the fault trace).
    void set_vcpu_thread(uint32_t vcpu, uint32_t tid);

    [[nodiscard]] memory::GuestMemory& mem() { return *m_mem; }
    [[nodiscard]] const memory::GuestMemory& mem() const { return *m_mem; }
    [[nodiscard]] const memory::MemoryConfig& config() const { return m_config; }
    [[nodiscard]] memory::NodeAccounting& accounting() { return *m_accounting; }
    [[nodiscard]] memory::FaultServer* fault_server() { return m_server.get(); }

    // The RAM map for BootInfo (areas at or above kFreeRamStart, holes excluded).
    [[nodiscard]] std::vector<abi::RamRange> ram_map() const;
    // Guest node of each vCPU (index = vCPU).
    [[nodiscard]] std::vector<uint32_t> vcpu_nodes(uint32_t vcpus) const;
    // Counters now; call after the vCPUs stopped for exact fault counts.
    [[nodiscard]] MemoryReport report() const;

private:
    MemorySystem() = default;
    Status build_accounting();
    Status build_fault_server(const RunConfig& config);
    Status build_areas(const RunConfig& config);
    void fire(bool fatal, const Error& e);
    Status open_trace(const std::string& path);
    void trace(const memory::FaultRecord& r);

    memory::MemoryConfig m_config;
    std::unique_ptr<memory::NodeAccounting> m_accounting;
    std::unique_ptr<memory::FaultServer> m_server;
    std::optional<memory::GuestMemory> m_mem;

    struct AreaBase {
        uint64_t gpa = 0;
        uint64_t host = 0;
        std::string name;
    };
    std::vector<AreaBase> m_area_bases;                   // by area id; fixed once the areas are built
    std::array<std::atomic<uint32_t>, 32> m_vcpu_tids{};  // layout::kMaxVcpus
    std::mutex m_trace_lock;
    std::FILE* m_trace = nullptr;  // guarded by m_trace_lock

    std::mutex m_hooks_lock;
    MemoryHooks m_hooks;                 // guarded by m_hooks_lock
    std::optional<Error> m_early_fatal;  // guarded by m_hooks_lock
};

}  // namespace pv::run
