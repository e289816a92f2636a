// GvaBackend: how one area of a guest address space is backed (the
// mm::MappingBackend of GuestAddressSpace's MemorySet).
//   Linear  gva -> gva + delta (guest RAM the VMM chose), mapped eagerly, frames not owned
//   Demand  zeroed frames from the provider on first touch (or at once if populate),
//           from `node` or, for kAnyNode, the faulting/calling vCPU's node; 2 MiB
//           pages where aligned when `huge`; frames owned and freed on unmap
//   Guard   never mapped: every access is a segmentation fault
// Area flags are mm::Perm as the guest sees them (Read/Write/Exec/User); the page
// table gets pt_perm(flags) (an area without Read is present, supervisor-only).
#pragma once

#include "vmm/paging/mapping_context.h"

namespace pv::paging {

// The page-table permission for an area's flags. x86 cannot express "present but
// no access", so an area without Read (PROT_NONE) keeps its pages present as
// supervisor-only read-only NX: user code faults, the contents survive.
constexpr mm::Perm pt_perm(mm::Perm area) {
    if (!mm::has(area, mm::Perm::Read)) return mm::Perm::Read;
    return area;
}

struct GvaBackend {
    using Addr = mm::GuestVirtAddr;
    using Flags = mm::Perm;
    using PageTable = MappingContext;

    enum class Kind : uint8_t { Linear, Demand, Guard };

    static GvaBackend linear(mm::GuestVirtAddr start, mm::GuestPhysAddr pa, bool huge) {
        return GvaBackend{Kind::Linear, pa.value() - start.value(), kAnyNode, false, huge};
    }
    static GvaBackend demand(uint32_t node, bool populate, bool huge) {
        return GvaBackend{Kind::Demand, 0, node, populate, huge};
    }
    static GvaBackend guard() { return GvaBackend{Kind::Guard, 0, kAnyNode, false, false}; }

    mm::Status map(Addr start, uint64_t size, Flags flags, MappingContext& ctx) const {
        auto r = mm::GuestVirtRange::from_start_size(start, size);
        switch (kind) {
            case Kind::Linear: return ctx.map_linear(r, delta, pt_perm(flags), huge);
            case Kind::Demand: return populate ? ctx.populate(r, node, huge, pt_perm(flags)) : mm::ok();
            case Kind::Guard: return mm::ok();
        }
        return mm::err(mm::Error::BadState);
    }
    mm::Status unmap(Addr start, uint64_t size, MappingContext& ctx) const {
        if (kind == Kind::Guard) return mm::ok();
        return ctx.unmap(mm::GuestVirtRange::from_start_size(start, size), kind == Kind::Demand);
    }
    mm::Status protect(Addr start, uint64_t size, Flags flags, MappingContext& ctx) const {
        if (kind == Kind::Guard) return mm::ok();
        return ctx.protect(mm::GuestVirtRange::from_start_size(start, size), pt_perm(flags));
    }
    GvaBackend split_at(uint64_t) { return *this; }  // delta is position independent
    [[nodiscard]] bool can_merge_with(const GvaBackend& right, uint64_t) const {
        return kind == right.kind && delta == right.delta && node == right.node && huge == right.huge;
    }

    Kind kind = Kind::Guard;
    uint64_t delta = 0;  // Linear: gpa = gva + delta (mod 2^64)
    uint32_t node = kAnyNode;
    bool populate = false;
    bool huge = false;
};

static_assert(mm::MappingBackend<GvaBackend>);

}  // namespace pv::paging
