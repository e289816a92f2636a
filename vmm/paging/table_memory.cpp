#include "vmm/paging/table_memory.h"

#include <cstring>

#include "vmm/abi/layout.h"
#include "vmm/x86/table_pool.h"

namespace pv::paging {

PagingTableMemory::PagingTableMemory(HostAccess access, FrameProvider& frames, x86::TablePool* boot_pool)
    : m_access(std::move(access)), m_frames(frames), m_pool(boot_pool) {}

bool PagingTableMemory::in_boot_pool(mm::GuestFrame frame) const {
    constexpr uint64_t kFirst = layout::kPageTablePoolAddr / layout::kPage;
    return m_pool != nullptr && frame.number() >= kFirst && frame.number() - kFirst < x86::TablePool::kFrames;
}

mm::Result<uint64_t*> PagingTableMemory::table(mm::GuestFrame frame) const {
    if (in_boot_pool(frame)) return m_pool->table(frame);
    auto span = m_access(frame.start_address(), mm::kPageSize);
    if (!span) return mm::err(mm::Error::OutOfRange);
    return reinterpret_cast<uint64_t*>(span->data());
}

mm::Result<mm::GuestFrame> PagingTableMemory::alloc_table() { return alloc_table_for(m_cpu, m_node); }

mm::Result<mm::GuestFrame> PagingTableMemory::alloc_table_for(uint32_t cpu, uint32_t node) {
    if (m_pool != nullptr) {
        std::lock_guard guard(m_pool_lock);
        if (auto f = m_pool->alloc_table()) return *f;
    }
    MM_TRY_ASSIGN(Grant g, m_frames.alloc(cpu, node));
    auto span = m_access(g.frame.start_address(), mm::kPageSize);
    if (!span) {  // the provider handed out a frame outside guest RAM: refuse it
        (void)m_frames.free(cpu, g.frame);
        return mm::err(mm::Error::BadState);
    }
    std::memset(span->data(), 0, mm::kPageSize);
    m_provider_tables.fetch_add(1, std::memory_order_relaxed);
    return g.frame;
}

void PagingTableMemory::free_unpublished(uint32_t cpu, mm::GuestFrame frame) {
    if (in_boot_pool(frame)) {
        std::lock_guard guard(m_pool_lock);
        (void)m_pool->release_table(frame);
        return;
    }
    if (m_frames.free(cpu, frame)) m_provider_tables.fetch_sub(1, std::memory_order_relaxed);
}

void PagingTableMemory::reset_pool() {
    if (m_pool == nullptr) return;
    std::lock_guard guard(m_pool_lock);
    m_pool->reset();
}

mm::Status PagingTableMemory::adopt_table(mm::GuestFrame frame) {
    if (in_boot_pool(frame)) {
        std::lock_guard guard(m_pool_lock);
        return m_pool->claim(frame) ? mm::ok() : mm::err(mm::Error::AlreadyExists);
    }
    if (!m_access(frame.start_address(), mm::kPageSize)) return mm::err(mm::Error::OutOfRange);
    MM_TRY(m_frames.claim(frame, 1));
    m_provider_tables.fetch_add(1, std::memory_order_relaxed);
    return mm::ok();
}

void PagingTableMemory::free_table(mm::GuestFrame frame) { m_deferred.push_back(frame); }

// Tables reached through guest-written entries may be anything (a boot table, a data
// frame, one frame listed twice): a free that fails is ignored, it only hurts the guest.
void PagingTableMemory::release_deferred() {
    for (mm::GuestFrame f : m_deferred) {
        if (in_boot_pool(f)) {
            std::lock_guard guard(m_pool_lock);
            (void)m_pool->release_table(f);
        } else if (m_frames.free(m_cpu, f)) {
            m_provider_tables.fetch_sub(1, std::memory_order_relaxed);
        }
    }
    m_deferred.clear();
}

}  // namespace pv::paging
