// MappingContext: what the guest-virtual backends map into (the MemorySet's
// PageTable type): the guest page table plus everything needed to fill it —
// the frame provider, host access for zeroing, frame ownership and the list of
// frames to give back once the TLBs are clean.
//
// Ownership: a frame mapped by a Demand backend is OWNED (recorded with its node
// in m_frame_node); a Linear backend's frames are not. A 2 MiB block from
// alloc_contiguous stays one allocation even when a partial munmap/mprotect
// splits its mapping: it is returned whole (free_contiguous) when its last
// 4 KiB page is unmapped.
//
// Deferred release: unmap never frees a frame or a table at once; it queues
// them. The owner calls finish(): if any translation was removed or downgraded it
// runs the TLB shootdown first, then returns the queued frames and tables.
// Threads: install_demand_page and the const queries may run concurrently on
// several vCPU threads (each holding its own vCPU lock of the address space);
// everything else needs the address space held exclusively. Ownership is a
// fixed table of atomics sized by FrameProvider::frame_limit() for that reason.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "mm/paging/page_table.h"
#include "vmm/paging/frame_source.h"
#include "vmm/paging/host_access.h"
#include "vmm/paging/table_memory.h"

namespace pv::paging {

using GvaPageTable = mm::x86::PageTable<PagingTableMemory>;
using VcpuPageTable = mm::x86::PageTable<VcpuTableMemory>;  // a vCPU's handle on the same table
inline constexpr uint32_t kAnyNode = 0xFFFF'FFFF;
inline constexpr uint64_t kHugePages = mm::bytes(mm::PageSize::Size2M) / mm::kPageSize;

class MappingContext {
public:
    MappingContext(GvaPageTable& pt, PagingTableMemory& tables, FrameProvider& frames, const HostAccess& access);

    [[nodiscard]] GvaPageTable& page_table() { return m_pt; }
    [[nodiscard]] const GvaPageTable& page_table() const { return m_pt; }

    // Who the current operation allocates for: `node` resolves kAnyNode.
    void set_origin(uint32_t cpu, uint32_t node);

    // Backend operations (all-or-nothing, see mm/memory_set.h).
    mm::Status map_linear(mm::GuestVirtRange r, uint64_t delta, mm::Perm pt_perm, bool huge);
    mm::Status populate(mm::GuestVirtRange r, uint32_t node, bool huge, mm::Perm pt_perm);
    mm::Status unmap(mm::GuestVirtRange r, bool owned);
    mm::Status protect(mm::GuestVirtRange r, mm::Perm pt_perm);

    // One demand page (or 2 MiB block when `huge_block` is given and free):
    // allocates, zeroes and maps. Returns the pages mapped. NoMemory when the
    // provider is exhausted; nothing changed then.
    mm::Result<uint64_t> map_demand_page(mm::GuestVirtAddr page, uint32_t node, mm::Perm pt_perm);
    mm::Result<uint64_t> map_demand_huge(mm::GuestVirtAddr block, uint32_t node, mm::Perm pt_perm);
    // The concurrent fault path: a zeroed frame from `node` for `cpu`, installed at
    // `page` through the vCPU's handle `pt` if nothing is mapped there. true when
    // installed; false when another vCPU got there first (our frame went back to the
    // provider, nothing replaced). NoMemory when the provider is exhausted.
    mm::Result<bool> install_demand_page(VcpuPageTable& pt, uint32_t cpu, mm::GuestVirtAddr page, uint32_t node,
                                         mm::Perm pt_perm);
    // Restoring a snapshot: while on, map_linear and populate record nothing in the
    // page table (it already holds the restored entries), and adopt() takes ownership
    // of a restored Demand leaf's frames (`pages` 1, or kHugePages for a 2 MiB block):
    // AlreadyExists if one is owned already, OutOfRange past the frame limit.
    void set_restoring(bool on) { m_restoring = on; }
    [[nodiscard]] mm::Status adopt(mm::GuestFrame f, uint64_t pages, uint32_t node);

    // Fault-around on the concurrent path, in two steps: frames for a window are
    // allocated first (alloc_frame), their host pages populated with one
    // HostPrefault call per contiguous run of frames (prefault), then each is zeroed
    // and installed like install_demand_page (install_demand_frame; the frame goes
    // back to the provider unless it was installed). free_frame returns an unused one.
    static constexpr size_t kPrefaultBatch = 32;  // frames per prefault() call, at most
    void set_host_prefault(HostPrefault fn) { m_prefault = std::move(fn); }
    [[nodiscard]] mm::Result<Grant> alloc_frame(uint32_t cpu, uint32_t node) { return m_frames.alloc(cpu, node); }
    void free_frame(uint32_t cpu, const Grant& g) { (void)m_frames.free(cpu, g.frame); }
    void prefault(std::span<const Grant> frames) const;
    mm::Result<bool> install_demand_frame(VcpuPageTable& pt, uint32_t cpu, mm::GuestVirtAddr page, const Grant& g,
                                          mm::Perm pt_perm);

    // Whether nothing is mapped in r.
    [[nodiscard]] bool is_unmapped(mm::GuestVirtRange r) const;

    // TLB shootdown (if needed), then return deferred frames and tables.
    void finish(const std::function<void()>& shootdown);
    // Marks that a translation was downgraded (forces a shootdown at finish()).
    void note_downgrade() { m_need_flush = true; }

    [[nodiscard]] uint32_t origin_node() const { return m_node; }
    [[nodiscard]] uint32_t owner_node(mm::GuestFrame f) const;  // kAnyNode if not owned
    [[nodiscard]] std::vector<uint64_t> frames_per_node() const;
    [[nodiscard]] uint64_t owned_frames() const { return m_owned.load(std::memory_order_relaxed); }
    [[nodiscard]] uint64_t shootdowns() const { return m_shootdowns; }
    [[nodiscard]] bool check_ownership() const;

private:
    struct PendingFree {
        mm::GuestFrame frame;
        uint64_t count;  // 1, or kHugePages for a contiguous block
    };
    struct Leaf {
        mm::GuestVirtRange va;
        mm::GuestPhysAddr pa;
    };

    mm::Status zero(mm::GuestFrame f, uint64_t pages) const;
    [[nodiscard]] bool can_own(mm::GuestFrame f, uint64_t pages, uint32_t node) const;
    void own(mm::GuestFrame f, uint64_t pages, uint32_t node);
    void release_owned(mm::GuestFrame f, uint64_t pages);
    mm::Status populate_block(mm::GuestVirtAddr at, uint64_t size, uint32_t node, bool huge, mm::Perm pt_perm);

    GvaPageTable& m_pt;
    PagingTableMemory& m_tables;
    FrameProvider& m_frames;
    const HostAccess& m_access;
    uint64_t m_frame_limit;
    uint32_t m_nodes;
    std::unique_ptr<std::atomic<uint8_t>[]> m_frame_node;  // per frame number: 0 = not owned, else node + 1
    std::unique_ptr<std::atomic<uint64_t>[]> m_per_node;   // owned frames mapped, per node
    std::atomic<uint64_t> m_owned{0};
    std::unordered_map<uint64_t, uint64_t> m_huge_live;  // 2 MiB block base frame -> pages still mapped
    std::vector<PendingFree> m_pending;
    uint64_t m_shootdowns = 0;
    uint32_t m_cpu = 0;
    uint32_t m_node = 0;
    bool m_need_flush = false;
    bool m_restoring = false;
    HostPrefault m_prefault;
};

}  // namespace pv::paging
