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
// Concurrency: a big-reader lock, one cache-line-padded mutex per vCPU.
//   - handle_fault(vcpu = i) takes only lock i. Under it, it may read the area set
//     and the page table and INSTALL missing entries (PageTable::install: one
//     compare-and-swap per entry, so two vCPUs faulting on the same page or needing
//     the same intermediate table cannot both win; the loser returns its frame and
//     reports Spurious, or uses the winner's table). That covers the common faults:
//     a 4 KiB demand page (plus fault-around), a spurious fault, a segmentation fault.
//   - Everything that changes the set or removes/changes entries — mmap, munmap,
//     mprotect, brk, the VMM-area calls, a fault that needs a 2 MiB page, a linear
//     page or a permission upgrade, a vcpu index beyond config.vcpus — takes ALL the
//     locks in index order ("exclusive"), so it never runs beside a fault. A fault
//     needing it drops lock i first and then re-decides from scratch.
//   Why not a sequence counter: a fault must write the page table and allocate
//   frames, which a reader that may have to retry cannot undo safely; and why not a
//   reader-writer lock: its shared counter is one cache line all vCPUs write.
//   Statistics and fault-around state are per vCPU, written under that vCPU's lock;
//   stats() takes the space exclusively and sums. With serialize_faults every fault
//   takes the exclusive path (the old single-lock behaviour, kept for comparison).
// The shootdown hook runs with the space held exclusively: vCPU threads must be
// outside guest mode (WorldGate::leave / TlbCoordinator::end) before they call into
// the space, so that a vCPU blocked on its own lock counts as stopped; otherwise a
// shootdown would wait for a vCPU that waits for the lock.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
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
    bool serialize_faults = false;     // every fault takes all vCPU locks (baseline for benchmarks)
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
    // Called with the frames of a fault-around window before they are zeroed (HostPrefault).
    void set_host_prefault(HostPrefault fn);

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

    // ---- snapshots (docs/snapshot-format.md, record MemorySetAreas) ----
    // Every area (the VMM's and the guest's) and the break, encoded. Call with no
    // guest call or fault in flight (the vCPUs stopped).
    [[nodiscard]] std::vector<std::byte> save_state() const;
    // On a space just created over a restored page table (create() adopting the
    // snapshot's root; no area mapped yet; guest memory, the boot pool included,
    // holding the snapshot's contents): re-creates the areas of `state` without
    // touching the page table, takes ownership of every table (TablePool::claim or
    // FrameProvider::claim) and of every Demand leaf's frames, sets the break and
    // checks the result (check_invariants). Errors: Invalid with a one-line reason
    // (malformed state, a table or frame used twice, a leaf outside its area or
    // outside guest RAM, ...); the space must then be discarded.
    Status restore_state(std::span<const std::byte> state);

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

    struct Counters {  // PagingStats' per-vCPU part
        uint64_t faults = 0, mapped_faults = 0, spurious = 0, segv = 0, oom = 0;
        uint64_t fault_around_pages = 0, huge_faults = 0;
    };
    // One vCPU's lock and the state only its fault path writes (padded: no false sharing).
    struct alignas(64) VcpuSlot {
        std::mutex lock;
        VcpuTableMemory tables;
        std::optional<VcpuPageTable> pt;  // this vCPU's handle on m_pt's table
        uint64_t next_fault = 0;          // the page a sequential fault would hit next
        Counters counters;
    };
    // All vCPU locks, taken in index order and released in reverse.
    class Exclusive {
    public:
        explicit Exclusive(const GuestAddressSpace& as);
        ~Exclusive();
        Exclusive(const Exclusive&) = delete;
        Exclusive& operator=(const Exclusive&) = delete;

    private:
        const GuestAddressSpace& m_as;
    };

    template <class Fn>
    auto locked_op(Caller c, Fn&& fn);
    MemResult mmap_locked(uint64_t hint, uint64_t len, uint64_t prot, uint64_t flags, uint64_t node);
    MemResult place_locked(uint64_t hint, uint64_t len, uint64_t flags);
    MemResult munmap_locked(mm::GuestVirtRange r);
    MemResult mprotect_locked(mm::GuestVirtRange r, mm::Perm flags);
    MemResult brk_locked(uint64_t new_end);
    mm::Status map_vmm_area(mm::GuestVirtRange r, mm::Perm perm, GvaBackend b);
    MemResult check_user_range(uint64_t addr, uint64_t len, uint64_t lo, mm::GuestVirtRange& out) const;

    FaultResult fault_exclusive(mm::GuestVirtAddr addr, uint64_t error_code, uint32_t vcpu, uint32_t vcpu_node);
    FaultResult fault_locked(mm::GuestVirtAddr addr, uint64_t error_code, uint32_t vcpu);
    FaultResult fault_present(const Set::Area& area, mm::GuestVirtAddr page, AccessKind access, bool user);
    FaultResult fault_map(const Set::Area& area, mm::GuestVirtAddr addr, AccessKind access, uint32_t vcpu);
    uint64_t fault_around(const Set::Area& area, mm::GuestVirtAddr next, uint64_t pages, uint32_t node);
    std::optional<FaultResult> fault_shared(VcpuSlot& slot, mm::GuestVirtAddr addr, uint64_t error_code, uint32_t vcpu,
                                            uint32_t vcpu_node);
    FaultResult fault_install(VcpuSlot& slot, const Set::Area& area, mm::GuestVirtAddr addr, AccessKind access,
                              uint32_t vcpu, uint32_t vcpu_node);
    uint64_t fault_around_shared(VcpuSlot& slot, uint32_t vcpu, mm::GuestVirtAddr next, uint64_t pages, uint32_t node,
                                 mm::Perm perm);
    uint64_t sequential_span(uint64_t& next_fault, const Set::Area& area, mm::GuestVirtAddr page) const;
    Counters& counters_for(uint32_t vcpu) { return m_vcpu[vcpu < m_config.vcpus ? vcpu : 0].counters; }
    static void count(Counters& c, const FaultResult& r);
    void init_vcpu_slots();

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
    std::unique_ptr<VcpuSlot[]> m_vcpu;  // config.vcpus slots
    uint64_t m_brk = abi::kBrkBase;
    bool m_owns_root = false;
};

}  // namespace pv::paging
