// GuestPaging: a VM's guest-virtual memory served by pagevisor (issue 6):
// the GuestAddressSpace (vmm/paging) adopting the boot page tables, the
// per-guest-node frame allocator (mm/frames.h) over the RAM map, the TLB
// shootdown coordinator, and the memory hypercalls (Mmap, Munmap, Mprotect,
// Brk) it answers for the dispatcher.
//
// Frames for guest mappings come from the RAM map ranges of each guest node,
// the same guest-physical memory the boot tables identity-map below
// abi::kUserBase (the "RAM window"): a workload that writes through the window
// to memory it also mmapped aliases it, like a kernel's direct map.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "mm/frames.h"
#include "vmm/abi/hypercall.h"
#include "vmm/hypercall/dispatcher.h"
#include "vmm/memory/fault_stats.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/paging/address_space.h"
#include "vmm/paging/frame_source.h"
#include "vmm/run/world_gate.h"

namespace pv::x86 {
class TablePool;
}

namespace pv::run {

class GuestPaging final : public hc::MemoryCalls {
public:
    using Frames = mm::FrameAllocator<std::mutex>;

    struct Config {
        uint32_t vcpus = 1;
        uint32_t fault_around_pages = 16;
        std::vector<abi::RamRange> ram;   // the boot RAM map
        std::vector<uint32_t> vcpu_node;  // guest node of each vCPU
        uint32_t nodes = 1;
        // Per guest node: at most this many frames handed to guest mappings and their
        // page tables at once (0 or absent = no limit). From the zones' quota
        // (docs/memory-config.md): a node's quota bytes / 4 KiB. A node with a limit
        // is served under its node lock (exact bound, no per-vCPU cache: mm/frames.h).
        std::vector<uint64_t> node_quota_frames;
    };

    // Translations the guest may have cached are dropped with every vCPU held
    // outside guest mode by `world` (memslots re-created: zap_translations).
    static Expected<std::unique_ptr<GuestPaging>> create(const Config& config, const memory::GuestMemory& mem,
                                                         x86::TablePool* boot_pool, mm::GuestFrame root,
                                                         WorldGate& world);
    ~GuestPaging() override;

    // ---- snapshots (issue 9; docs/snapshot-format.md, record MemorySetAreas) ----
    // The guest-virtual state a snapshot carries beyond guest memory: every area (the
    // VMM's boot areas and the guest's) and the break, encoded
    // (GuestAddressSpace::save_state). Call with the vCPUs stopped.
    [[nodiscard]] std::vector<std::byte> save_state() const { return m_space->save_state(); }
    // A GuestPaging over a page table that already exists in guest memory (restored
    // from a snapshot): create() adopting `root` (the snapshot's CR3), then the areas
    // of `state` re-created without touching the page table (the VMM's boot areas
    // included: do not map them again), and exactly the frames the page table uses
    // (its tables, in the boot pool or not, and the Demand areas' leaves) taken out of
    // the frame allocator and the boot pool. Guest memory must already hold the
    // snapshot's contents (lazily through userfaultfd is fine: the tables are read
    // through the host mapping). Errors: Invalid, one line, for a malformed state or a
    // page table that does not match it (a frame used twice, a leaf outside the areas
    // or outside the RAM map, a quota exceeded).
    static Expected<std::unique_ptr<GuestPaging>> restore(const Config& config, const memory::GuestMemory& mem,
                                                          x86::TablePool* boot_pool, mm::GuestFrame root,
                                                          WorldGate& world, std::span<const std::byte> state);

    // hc::MemoryCalls: Mmap/Munmap/Mprotect/Brk from vCPU `vcpu`'s thread.
    int64_t call(uint32_t vcpu, abi::Call nr, const uint64_t (&args)[6], uint64_t& ret_aux) override;

    // A #PF from vCPU `vcpu`'s thread (outside guest mode: TlbCoordinator::end done).
    paging::FaultResult handle_fault(uint32_t vcpu, uint64_t address, uint64_t error_code);

    // A failed translation flush, if any (the VM must stop: translations may be stale).
    [[nodiscard]] std::optional<Error> flush_error() const;
    [[nodiscard]] paging::GuestAddressSpace& space() { return *m_space; }
    [[nodiscard]] paging::PagingStats stats() const { return m_space->stats(); }
    [[nodiscard]] uint32_t node_of(uint32_t vcpu) const;

    // Time pagevisor spent serving one guest #PF of `vcpu` (exit to resume
    // decision), into that vCPU's histogram (no shared cache line on the fault
    // path); fault_latency() merges them.
    void record_fault_latency(uint32_t vcpu, uint64_t ns);
    [[nodiscard]] memory::LatencyHistogram::Snapshot fault_latency() const;

private:
    struct alignas(64) VcpuLatency {
        memory::LatencyHistogram histogram;
    };

    explicit GuestPaging(const Config& config);

    Config m_config;
    std::vector<std::byte> m_metadata;
    Frames m_frames;
    std::unique_ptr<paging::FrameSourceAdapter<Frames>> m_provider;
    std::unique_ptr<paging::GuestAddressSpace> m_space;
    std::unique_ptr<VcpuLatency[]> m_latency;  // per vCPU
    mutable std::mutex m_error_lock;
    std::optional<Error> m_zap_error;  // guarded by m_error_lock
};

}  // namespace pv::run
