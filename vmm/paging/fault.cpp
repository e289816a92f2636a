// GuestAddressSpace::handle_fault: the guest page-fault decision.
//   1. reserved-bit fault -> Segv(BadEntry); no area -> Segv(NoArea)
//   2. the AREA's permissions decide (never the page table's): guard, exec on a
//      non-exec area, write on read-only, user access to a supervisor area,
//      any access to PROT_NONE -> Segv(Protection)
//   3. page present and its entry allows the access -> Spurious: nothing is
//      replaced (a stale TLB entry on another vCPU, or a racing fault)
//   4. otherwise map: linear -> its frame; demand -> a zeroed frame (a 2 MiB
//      block when the area allows huge pages and the block is free), plus
//      fault-around when this vCPU faults sequentially.
#include "vmm/paging/address_space.h"

namespace pv::paging {

using mm::GuestVirtAddr;
using mm::GuestVirtRange;
using mm::Perm;

namespace {

constexpr uint64_t k2M = mm::bytes(mm::PageSize::Size2M);

Perm needed_perm(AccessKind access, bool user) {
    Perm p = access == AccessKind::Exec ? Perm::Exec : access == AccessKind::Write ? Perm::Write : Perm::Read;
    return user ? p | Perm::User : p;
}

}  // namespace

FaultResult GuestAddressSpace::handle_fault(GuestVirtAddr addr, uint64_t error_code, uint32_t vcpu,
                                            uint32_t vcpu_node) {
    std::lock_guard lock(m_lock);
    m_ctx.set_origin(vcpu, vcpu_node);
    FaultResult r = fault_locked(addr, error_code, vcpu);
    m_ctx.finish(m_shootdown);
    ++m_stats.faults;
    switch (r.kind) {
        case FaultResult::Kind::Mapped: ++m_stats.mapped_faults; break;
        case FaultResult::Kind::Spurious: ++m_stats.spurious; break;
        case FaultResult::Kind::Segv: ++m_stats.segv; break;
        case FaultResult::Kind::OutOfMemory: ++m_stats.oom; break;
    }
    return r;
}

FaultResult GuestAddressSpace::fault_locked(GuestVirtAddr addr, uint64_t error_code, uint32_t vcpu) {
    AccessKind access = access_kind(error_code);
    bool user = (error_code & kPfUser) != 0;
    if ((error_code & kPfReserved) != 0) return FaultResult::segv(addr, access, SegvReason::BadEntry);
    const Set::Area* area = m_set->find(addr);
    if (area == nullptr) return FaultResult::segv(addr, access, SegvReason::NoArea);
    if (area->backend().kind == GvaBackend::Kind::Guard || !mm::has(area->flags(), needed_perm(access, user)))
        return FaultResult::segv(addr, access, SegvReason::Protection);
    auto present = m_pt.query(addr.page_base());
    if (present) return fault_present(*area, addr.page_base(), access, user);
    if (present.error() != mm::Error::NotFound) return FaultResult::segv(addr, access, SegvReason::BadEntry);
    return fault_map(*area, addr, access, vcpu);
}

// Present: the area allows the access. If the entry does too, the fault is spurious;
// if not (an entry weaker than its area), the entry is raised to the area's rights.
// The frame is never replaced.
FaultResult GuestAddressSpace::fault_present(const Set::Area& area, GuestVirtAddr page, AccessKind access, bool user) {
    auto m = m_pt.query(page);
    if (m && mm::has(m->perm, needed_perm(access, user))) return FaultResult::spurious();
    auto r = GuestVirtRange::from_start_size(page, mm::kPageSize);
    if (!m_pt.protect_region(r, pt_perm(area.flags()))) return FaultResult::oom(page, access, m_ctx.origin_node());
    return FaultResult::spurious();
}

FaultResult GuestAddressSpace::fault_map(const Set::Area& area, GuestVirtAddr addr, AccessKind access, uint32_t vcpu) {
    const GvaBackend& b = area.backend();
    GuestVirtAddr page = addr.page_base();
    Perm perm = pt_perm(area.flags());
    uint32_t node = b.node == kAnyNode ? m_ctx.origin_node() : b.node;
    if (b.kind == GvaBackend::Kind::Linear) {
        mm::Status s = m_pt.map(page, mm::GuestPhysAddr(page.value() + b.delta), mm::PageSize::Size4K, perm);
        return s ? FaultResult::mapped(1) : FaultResult::oom(addr, access, node);
    }
    if (b.huge) {
        auto block = GuestVirtRange::from_start_size(page.align_down(k2M), k2M);
        if (area.range().contains(block) && m_ctx.is_unmapped(block)) {
            if (auto n = m_ctx.map_demand_huge(block.start(), node, perm)) {
                ++m_stats.huge_faults;
                return FaultResult::mapped(*n);
            }
        }
    }
    if (!m_ctx.map_demand_page(page, node, perm)) return FaultResult::oom(addr, access, node);
    uint64_t extra = 0;
    if (vcpu < m_next_fault.size()) {
        bool sequential = m_next_fault[vcpu] == page.value();
        uint64_t window = m_config.fault_around_pages > 1 ? m_config.fault_around_pages - 1 : 0;
        uint64_t room = (area.last() - page) / mm::kPageSize;  // pages after `page` inside the area
        uint64_t span = sequential ? (window < room ? window : room) : 0;
        extra = fault_around(area, page + mm::kPageSize, span, node);
        m_next_fault[vcpu] = page.value() + (span + 1) * mm::kPageSize;
    }
    m_stats.fault_around_pages += extra;
    return FaultResult::mapped(1 + extra);
}

// Maps up to `pages` demand pages from `next` on, skipping present ones and
// stopping quietly when frames run out (fault-around is an optimisation).
uint64_t GuestAddressSpace::fault_around(const Set::Area& area, GuestVirtAddr next, uint64_t pages, uint32_t node) {
    uint64_t mapped = 0;
    Perm perm = pt_perm(area.flags());
    for (uint64_t i = 0; i < pages; ++i) {
        GuestVirtAddr p = next + i * mm::kPageSize;
        if (m_pt.query(p)) continue;
        if (!m_ctx.map_demand_page(p, node, perm)) break;
        ++mapped;
    }
    return mapped;
}

}  // namespace pv::paging
