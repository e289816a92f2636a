// GuestAddressSpace: one guest-virtual address space owned by pagevisor — a
// MemorySet<GvaBackend> over the guest page table — with the page-fault decision
// and the mmap/munmap/mprotect/brk calls of the memory hypercalls.
//
// Layout (vmm/paging/mem_abi.h): guest calls act only on [kUserBase, kUserTop):
// the break grows from kBrkBase up to kBrkLimit, mmap places areas in
// [kMmapBase, kUserTop). Everything below kUserBase (the fixed identity-mapped
// structures) is the VMM's: map_linear/map_guard put VMM areas there, and no
// guest call can reach them.
//
// Invariants (check_invariants): the set's and the page table's own; every leaf
// of the page table inside [kUserBase, kUserTop) lies in an area and carries
// pt_perm(area flags); Demand leaves point at owned frames, Linear leaves at
// gva + delta; frame accounting matches; the break lies in [kBrkBase, kBrkLimit].
//
// Errors of the guest calls are abi::MemError values; bad input changes nothing.
// Frames and tables removed by a call are returned to the provider only after the
// shootdown hook (set_shootdown, e.g. TlbCoordinator::shootdown) has returned.
//
// Concurrency: every public method takes the one lock of the space, so vCPU
// threads may fault and call concurrently. The shootdown hook runs under that
// lock: vCPU threads must leave guest mode (TlbCoordinator::end) before they call
// into the space, or a shootdown could wait for a vCPU waiting for the lock.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "mm/memory_set.h"
#include "vmm/paging/backend.h"
#include "vmm/paging/fault.h"
#include "vmm/paging/mem_abi.h"

namespace pv::x86 {
class TablePool;
}

namespace pv::paging {

struct AddressSpaceConfig {
    uint32_t vcpus = 1;                // vCPU indices 0..vcpus-1 (fault-around state per vCPU)
    uint32_t fault_around_pages = 16;  // pages mapped per sequential fault; 0 or 1 = off
    size_t max_areas = 4096;           // capacity of the area table
};

// Who makes a call: its vCPU and that vCPU's guest node (kAnyNode resolves to it).
struct Caller {
    uint32_t vcpu = 0;
    uint32_t node = 0;
};

struct PagingStats {
    uint64_t faults = 0;         // handle_fault calls
    uint64_t mapped_faults = 0;  // ... that mapped something
    uint64_t spurious = 0;
    uint64_t segv = 0;
    uint64_t oom = 0;
    uint64_t fault_around_pages = 0;  // pages mapped beyond the faulting one
    uint64_t huge_faults = 0;         // faults served with a 2 MiB page
    uint64_t shootdowns = 0;
    std::vector<uint64_t> frames_per_node;  // owned 4 KiB frames mapped now, per guest node
    uint64_t provider_tables = 0;           // page-table frames taken from the provider
};

using MemResult = mm::Result<uint64_t, abi::MemError>;
// The hypercall return value: the result, or the negative MemError.
inline int64_t to_abi(const MemResult& r) { return r ? static_cast<int64_t>(*r) : static_cast<int64_t>(r.error()); }

class GuestAddressSpace {
public:
    using Set = mm::MemorySet<GvaBackend>;

    // A new, empty page table when `root` is empty; otherwise adopts `root` (e.g. the
    // boot tables built in `boot_pool`, which the caller must stop editing). Tables
    // come from `boot_pool` (may be null) first, then from `frames`. `frames` and
    // `boot_pool` must outlive the space.
    static Expected<std::unique_ptr<GuestAddressSpace>> create(const AddressSpaceConfig& config, HostAccess access,
                                                               FrameProvider& frames, x86::TablePool* boot_pool,
                                                               std::optional<mm::GuestFrame> root);
    ~GuestAddressSpace();
    GuestAddressSpace(const GuestAddressSpace&) = delete;
    GuestAddressSpace& operator=(const GuestAddressSpace&) = delete;

    [[nodiscard]] mm::GuestFrame root() const { return m_pt.root(); }  // CR3
    // Run after a call removed or downgraded translations, before frames are reused.
    void set_shootdown(std::function<void()> fn);

    // ---- guest calls (abi/mem_abi.h) ----
    MemResult mmap(Caller c, uint64_t hint, uint64_t len, uint64_t prot, uint64_t flags, uint64_t node);
    MemResult munmap(Caller c, uint64_t addr, uint64_t len);
    MemResult mprotect(Caller c, uint64_t addr, uint64_t len, uint64_t prot);
    MemResult brk(Caller c, uint64_t new_end);

    // ---- page faults ----
    FaultResult handle_fault(mm::GuestVirtAddr addr, uint64_t error_code, uint32_t vcpu, uint32_t vcpu_node);

    // ---- VMM areas (outside [kUserBase, kUserTop) only; OutOfRange otherwise) ----
    // They allocate page tables as cpu 0 / node 0: call them during setup or from
    // vCPU 0's thread (mm/frames.h lets one thread at a time use a cpu id).
    mm::Status map_linear(mm::GuestVirtRange r, mm::GuestPhysAddr pa, mm::Perm perm, bool huge);
    mm::Status map_guard(mm::GuestVirtRange r);
    mm::Status unmap_vmm_area(mm::GuestVirtRange r);

    // ---- inspection ----
    [[nodiscard]] PagingStats stats() const;
    [[nodiscard]] uint64_t current_brk() const;
    [[nodiscard]] mm::Result<mm::x86::Mapping> query(mm::GuestVirtAddr va) const;
    struct AreaInfo {
        mm::GuestVirtRange range;
        mm::Perm flags;
        GvaBackend backend;
    };
    [[nodiscard]] std::vector<AreaInfo> areas() const;
    [[nodiscard]] bool check_invariants() const;

private:
    GuestAddressSpace(const AddressSpaceConfig& config, HostAccess access, FrameProvider& frames,
                      x86::TablePool* boot_pool);

    template <class Fn>
    auto locked_op(Caller c, Fn&& fn);
    MemResult mmap_locked(uint64_t hint, uint64_t len, uint64_t prot, uint64_t flags, uint64_t node);
    MemResult place_locked(uint64_t hint, uint64_t len, uint64_t flags);
    MemResult munmap_locked(mm::GuestVirtRange r);
    MemResult mprotect_locked(mm::GuestVirtRange r, mm::Perm flags);
    MemResult brk_locked(uint64_t new_end);
    mm::Status map_vmm_area(mm::GuestVirtRange r, mm::Perm perm, GvaBackend b);
    MemResult check_user_range(uint64_t addr, uint64_t len, uint64_t lo, mm::GuestVirtRange& out) const;

    FaultResult fault_locked(mm::GuestVirtAddr addr, uint64_t error_code, uint32_t vcpu);
    FaultResult fault_present(const Set::Area& area, mm::GuestVirtAddr page, AccessKind access, bool user);
    FaultResult fault_map(const Set::Area& area, mm::GuestVirtAddr addr, AccessKind access, uint32_t vcpu);
    uint64_t fault_around(const Set::Area& area, mm::GuestVirtAddr next, uint64_t pages, uint32_t node);

    bool check_leaves() const;
    static bool is_vmm_range(mm::GuestVirtRange r);

    AddressSpaceConfig m_config;
    HostAccess m_access;
    FrameProvider& m_frames;
    std::unique_ptr<std::byte[]> m_node_storage;
    PagingTableMemory m_tables;
    GvaPageTable m_pt;
    MappingContext m_ctx;
    std::optional<Set> m_set;
    std::function<void()> m_shootdown;
    std::vector<uint64_t> m_next_fault;  // per vCPU: the page a sequential fault would hit next
    uint64_t m_brk = abi::kBrkBase;
    bool m_owns_root = false;
    PagingStats m_stats;
    mutable std::mutex m_lock;
};

}  // namespace pv::paging
