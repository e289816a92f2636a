// PagingTableMemory: the mm::x86::TableMemory of a guest address space. Tables
// come from the fixed boot pool (layout::kPageTablePoolAddr, when one is given)
// first and then from the frame provider, so the page table grows with the guest.
//
// table(f) is bounds checked: a pool frame through the pool, any other frame
// through the HostAccess, which refuses anything outside guest RAM. A corrupt
// entry therefore makes a walk fail (OutOfRange -> the page table's Corrupted),
// never touch host memory outside guest RAM.
//
// Frees are deferred: a freed table may still be cached by a vCPU's
// paging-structure cache until the next TLB shootdown, so free_table() only
// queues it and release_deferred() (called after the shootdown) returns it.
//
// Threads: table() any time; alloc_table_for(cpu)/free_unpublished(cpu) from the
// thread that owns `cpu` while it holds its vCPU lock of the address space (the
// concurrent fault path, through a VcpuTableMemory); everything else with the
// address space held exclusively (all vCPU locks).
#pragma once

#include <atomic>
#include <mutex>
#include <vector>

#include "mm/addr.h"
#include "mm/result.h"
#include "vmm/paging/frame_source.h"
#include "vmm/paging/host_access.h"

namespace pv::x86 {
class TablePool;
}

namespace pv::paging {

class PagingTableMemory {
public:
    // `frames` and `boot_pool` (may be null) must outlive this object.
    PagingTableMemory(HostAccess access, FrameProvider& frames, x86::TablePool* boot_pool);

    [[nodiscard]] mm::Result<uint64_t*> table(mm::GuestFrame frame) const;
    [[nodiscard]] mm::Result<mm::GuestFrame> alloc_table();
    void free_table(mm::GuestFrame frame);

    // The concurrent fault path: a zeroed table (boot pool first, under
    // m_pool_lock: a table is needed once per 2 MiB of fresh address space, so this
    // rare lock is off the common path), and the immediate return of one that was
    // never linked into the page table (so no vCPU can have cached it).
    [[nodiscard]] mm::Result<mm::GuestFrame> alloc_table_for(uint32_t cpu, uint32_t node);
    void free_unpublished(uint32_t cpu, mm::GuestFrame frame);

    // Node (and CPU) that the next provider-backed tables are charged to.
    void set_origin(uint32_t cpu, uint32_t node) {
        m_cpu = cpu;
        m_node = node;
    }
    [[nodiscard]] bool has_deferred() const { return !m_deferred.empty(); }
    // Gives every table freed since the last call back to its owner (after a shootdown).
    void release_deferred();

    // Restoring a snapshot: forget the boot pool's tables (reset_pool), then take
    // ownership of each table of the restored page table (adopt_table: the boot pool's
    // or the provider's frame, claimed; AlreadyExists if it is taken twice).
    void reset_pool();
    [[nodiscard]] mm::Status adopt_table(mm::GuestFrame frame);

    // Tables currently allocated from the provider (not the boot pool), deferred ones included.
    [[nodiscard]] uint64_t provider_tables() const { return m_provider_tables.load(std::memory_order_relaxed); }

private:
    [[nodiscard]] bool in_boot_pool(mm::GuestFrame frame) const;

    HostAccess m_access;
    FrameProvider& m_frames;
    x86::TablePool* m_pool;
    std::mutex m_pool_lock;  // m_pool's alloc/free (TablePool is not thread-safe)
    std::vector<mm::GuestFrame> m_deferred;
    std::atomic<uint64_t> m_provider_tables{0};
    uint32_t m_cpu = 0;
    uint32_t m_node = 0;
};

// One vCPU's view of the table memory for PageTable::install on the concurrent
// fault path: tables come from the provider for this vCPU's cpu id and node, and
// free_table (called by install only for tables it never linked) returns them at
// once. Used only by the thread that holds this vCPU's lock.
class VcpuTableMemory {
public:
    VcpuTableMemory() = default;
    explicit VcpuTableMemory(PagingTableMemory* shared, uint32_t cpu) : m_shared(shared), m_cpu(cpu) {}

    void set_node(uint32_t node) { m_node = node; }
    [[nodiscard]] mm::Result<uint64_t*> table(mm::GuestFrame frame) const { return m_shared->table(frame); }
    [[nodiscard]] mm::Result<mm::GuestFrame> alloc_table() { return m_shared->alloc_table_for(m_cpu, m_node); }
    void free_table(mm::GuestFrame frame) { m_shared->free_unpublished(m_cpu, frame); }

private:
    PagingTableMemory* m_shared = nullptr;
    uint32_t m_cpu = 0;
    uint32_t m_node = 0;
};

}  // namespace pv::paging
