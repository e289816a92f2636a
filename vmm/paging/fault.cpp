// GuestAddressSpace::handle_fault: the guest page-fault decision. The common
// cases run under the faulting vCPU's lock only (fault_shared: steps 1-3 and 4 for
// a 4 KiB demand page, installed with compare-and-swap); the rest (linear pages,
// 2 MiB blocks, raising a weak entry) under all vCPU locks (fault_exclusive).
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
    if (vcpu < m_config.vcpus && !m_config.serialize_faults) {
        VcpuSlot& slot = m_vcpu[vcpu];
        std::lock_guard lock(slot.lock);
        if (auto r = fault_shared(slot, addr, error_code, vcpu, vcpu_node)) {
            count(slot.counters, *r);
            return *r;
        }
    }
    return fault_exclusive(addr, error_code, vcpu, vcpu_node);
}

void GuestAddressSpace::count(Counters& c, const FaultResult& r) {
    ++c.faults;
    switch (r.kind) {
        case FaultResult::Kind::Mapped: ++c.mapped_faults; break;
        case FaultResult::Kind::Spurious: ++c.spurious; break;
        case FaultResult::Kind::Segv: ++c.segv; break;
        case FaultResult::Kind::OutOfMemory: ++c.oom; break;
    }
}

// The uncommon faults, with every vCPU lock held: decided again from scratch, since
// the space may have changed since the shared attempt dropped its lock.
FaultResult GuestAddressSpace::fault_exclusive(GuestVirtAddr addr, uint64_t error_code, uint32_t vcpu,
                                               uint32_t vcpu_node) {
    Exclusive lock(*this);
    m_ctx.set_origin(vcpu, vcpu_node);
    FaultResult r = fault_locked(addr, error_code, vcpu);
    m_ctx.finish(m_shootdown);
    count(counters_for(vcpu), r);
    return r;
}

// Under this vCPU's lock only: the set and the tables cannot lose anything, other
// vCPUs may install entries. nullopt: needs the exclusive path.
std::optional<FaultResult> GuestAddressSpace::fault_shared(VcpuSlot& slot, GuestVirtAddr addr, uint64_t error_code,
                                                           uint32_t vcpu, uint32_t vcpu_node) {
    AccessKind access = access_kind(error_code);
    bool user = (error_code & kPfUser) != 0;
    if ((error_code & kPfReserved) != 0) return FaultResult::segv(addr, access, SegvReason::BadEntry);
    const Set::Area* area = m_set->find(addr);
    if (area == nullptr) return FaultResult::segv(addr, access, SegvReason::NoArea);
    if (area->backend().kind == GvaBackend::Kind::Guard || !mm::has(area->flags(), needed_perm(access, user)))
        return FaultResult::segv(addr, access, SegvReason::Protection);
    auto present = slot.pt->query(addr.page_base());
    if (present) {
        if (mm::has(present->perm, needed_perm(access, user))) return FaultResult::spurious();
        return std::nullopt;  // an entry weaker than its area: raised exclusively
    }
    if (present.error() != mm::Error::NotFound) return FaultResult::segv(addr, access, SegvReason::BadEntry);
    const GvaBackend& b = area->backend();
    if (b.kind != GvaBackend::Kind::Demand || b.huge) return std::nullopt;
    return fault_install(slot, *area, addr, access, vcpu, vcpu_node);
}

FaultResult GuestAddressSpace::fault_install(VcpuSlot& slot, const Set::Area& area, GuestVirtAddr addr,
                                             AccessKind access, uint32_t vcpu, uint32_t vcpu_node) {
    GuestVirtAddr page = addr.page_base();
    Perm perm = pt_perm(area.flags());
    uint32_t node = area.backend().node == kAnyNode ? vcpu_node : area.backend().node;
    slot.tables.set_node(vcpu_node);
    auto r = m_ctx.install_demand_page(*slot.pt, vcpu, page, node, perm);
    if (!r) {
        if (r.error() == mm::Error::Corrupted) return FaultResult::segv(addr, access, SegvReason::BadEntry);
        return FaultResult::oom(addr, access, node);  // as the exclusive path: any other failure is a shortage
    }
    if (!*r) return FaultResult::spurious();  // another vCPU mapped it first: its frame stays
    uint64_t span = sequential_span(slot.next_fault, area, page);
    uint64_t extra = fault_around_shared(slot, vcpu, page + mm::kPageSize, span, node, perm);
    slot.counters.fault_around_pages += extra;
    return FaultResult::mapped(1 + extra);
}

// Pages to map after `page` (fault-around): the window if this vCPU faults
// sequentially, else 0. Advances the vCPU's expectation.
uint64_t GuestAddressSpace::sequential_span(uint64_t& next_fault, const Set::Area& area, GuestVirtAddr page) const {
    bool sequential = next_fault == page.value();
    uint64_t window = m_config.fault_around_pages > 1 ? m_config.fault_around_pages - 1 : 0;
    uint64_t room = (area.last() - page) / mm::kPageSize;  // pages after `page` inside the area
    uint64_t span = sequential ? (window < room ? window : room) : 0;
    next_fault = page.value() + (span + 1) * mm::kPageSize;
    return span;
}

// Fault-around on the shared path: present pages (or ones another vCPU wins) are
// skipped; it stops quietly when frames run out. Frames come a chunk at a time, so
// that their host pages are populated with one call per run (MappingContext::prefault)
// instead of a host page fault each when they are zeroed.
uint64_t GuestAddressSpace::fault_around_shared(VcpuSlot& slot, uint32_t vcpu, GuestVirtAddr next, uint64_t pages,
                                                uint32_t node, Perm perm) {
    constexpr uint64_t kChunk = MappingContext::kPrefaultBatch;
    uint64_t mapped = 0;
    for (uint64_t i = 0; i < pages;) {
        GuestVirtAddr at[kChunk];
        Grant grant[kChunk];
        uint64_t n = 0;
        bool exhausted = false;
        for (; i < pages && n < kChunk; ++i) {
            GuestVirtAddr p = next + i * mm::kPageSize;
            if (slot.pt->query(p)) continue;
            auto g = m_ctx.alloc_frame(vcpu, node);
            if (!g) {
                exhausted = true;
                break;
            }
            at[n] = p;
            grant[n] = *g;
            ++n;
        }
        m_ctx.prefault(std::span<const Grant>(grant, n));
        for (uint64_t k = 0; k < n; ++k) {
            auto r = m_ctx.install_demand_frame(*slot.pt, vcpu, at[k], grant[k], perm);
            if (!r) {
                for (uint64_t rest = k + 1; rest < n; ++rest) m_ctx.free_frame(vcpu, grant[rest]);
                return mapped;
            }
            mapped += *r ? 1 : 0;
        }
        if (exhausted) break;
    }
    return mapped;
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
                ++counters_for(vcpu).huge_faults;
                return FaultResult::mapped(*n);
            }
        }
    }
    if (!m_ctx.map_demand_page(page, node, perm)) return FaultResult::oom(addr, access, node);
    uint64_t extra = 0;
    if (vcpu < m_config.vcpus) {
        uint64_t span = sequential_span(m_vcpu[vcpu].next_fault, area, page);
        extra = fault_around(area, page + mm::kPageSize, span, node);
    }
    counters_for(vcpu).fault_around_pages += extra;
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
