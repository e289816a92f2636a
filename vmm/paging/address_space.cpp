// GuestAddressSpace: construction, the guest memory calls and invariants.
// The page-fault path is in fault.cpp.
#include "vmm/paging/address_space.h"

#include "vmm/x86/table_pool.h"

namespace pv::paging {

using abi::MemError;
using mm::GuestVirtAddr;
using mm::GuestVirtRange;
using mm::Perm;

namespace {

constexpr uint64_t k2M = mm::bytes(mm::PageSize::Size2M);
const GuestVirtRange kMmapRange =
    GuestVirtRange::from_start_size(GuestVirtAddr(abi::kMmapBase), abi::kUserTop - abi::kMmapBase);
const GuestVirtRange kUserRange =
    GuestVirtRange::from_start_size(GuestVirtAddr(abi::kUserBase), abi::kUserTop - abi::kUserBase);

mm::Unexpected<MemError> fail(MemError e) { return {e}; }

// Area flags for guest prot bits: Write and Exec imply Read; PROT_NONE keeps only User.
Perm user_flags(uint64_t prot) {
    Perm p = Perm::User;
    if ((prot & abi::kProtMask) != 0) p |= Perm::Read;
    if ((prot & abi::kProtWrite) != 0) p |= Perm::Write;
    if ((prot & abi::kProtExec) != 0) p |= Perm::Exec;
    return p;
}

// What a MemorySet / page-table error means to the guest: everything that can
// fail after validation is a shortage (area nodes, frames, split tables).
MemError to_mem_error(mm::Error e) { return e == mm::Error::AlreadyExists ? MemError::Exists : MemError::NoMemory; }

}  // namespace

GuestAddressSpace::GuestAddressSpace(const AddressSpaceConfig& config, HostAccess access, FrameProvider& frames,
                                     x86::TablePool* boot_pool)
    : m_config(config),
      m_access(std::move(access)),
      m_frames(frames),
      m_tables(m_access, frames, boot_pool),
      m_pt(GvaPageTable::adopt(&m_tables, mm::GuestFrame(0))),
      m_ctx(m_pt, m_tables, frames, m_access),
      m_vcpu(std::make_unique<VcpuSlot[]>(config.vcpus)) {}

GuestAddressSpace::Exclusive::Exclusive(const GuestAddressSpace& as) : m_as(as) {
    for (uint32_t i = 0; i < as.m_config.vcpus; ++i) as.m_vcpu[i].lock.lock();
}

GuestAddressSpace::Exclusive::~Exclusive() {
    for (uint32_t i = m_as.m_config.vcpus; i > 0; --i) m_as.m_vcpu[i - 1].lock.unlock();
}

void GuestAddressSpace::init_vcpu_slots() {
    for (uint32_t i = 0; i < m_config.vcpus; ++i) {
        m_vcpu[i].tables = VcpuTableMemory(&m_tables, i);
        m_vcpu[i].pt.emplace(VcpuPageTable::adopt(&m_vcpu[i].tables, m_pt.root()));
    }
}

Expected<std::unique_ptr<GuestAddressSpace>> GuestAddressSpace::create(const AddressSpaceConfig& config,
                                                                       HostAccess access, FrameProvider& frames,
                                                                       x86::TablePool* boot_pool,
                                                                       std::optional<mm::GuestFrame> root) {
    static_assert(Set::node_align() <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    if (config.vcpus == 0 || config.max_areas == 0 || frames.node_count() == 0 || frames.node_count() > 254 ||
        frames.frame_limit() == 0)
        return make_error(ErrorKind::Invalid, "address space: bad configuration");
    std::unique_ptr<GuestAddressSpace> as(new GuestAddressSpace(config, std::move(access), frames, boot_pool));
    as->m_node_storage = std::make_unique<std::byte[]>(config.max_areas * Set::node_bytes());
    auto set = Set::try_create(std::span(as->m_node_storage.get(), config.max_areas * Set::node_bytes()));
    if (!set) return make_error(ErrorKind::Internal, "address space: area table");
    as->m_set.emplace(std::move(*set));
    if (root) {
        as->m_pt = GvaPageTable::adopt(&as->m_tables, *root);
        if (!as->m_pt.check_invariants()) return make_error(ErrorKind::Invalid, "address space: corrupt root table");
    } else {
        auto pt = GvaPageTable::try_create(&as->m_tables);
        if (!pt) return make_error(ErrorKind::Resource, "address space: no frame for the root page table");
        as->m_pt = *pt;
        as->m_owns_root = true;
    }
    as->init_vcpu_slots();
    return as;
}

GuestAddressSpace::~GuestAddressSpace() {
    Exclusive lock(*this);
    if (m_set) (void)m_set->clear(m_ctx);  // returns the frames of demand areas
    if (m_owns_root) m_pt.destroy();
    m_ctx.finish(nullptr);  // the VM no longer runs: no shootdown needed
}

void GuestAddressSpace::set_shootdown(std::function<void()> fn) {
    Exclusive lock(*this);
    m_shootdown = std::move(fn);
}

void GuestAddressSpace::set_host_prefault(HostPrefault fn) {
    Exclusive lock(*this);
    m_ctx.set_host_prefault(std::move(fn));
}

template <class Fn>
auto GuestAddressSpace::locked_op(Caller c, Fn&& fn) {
    Exclusive lock(*this);
    m_ctx.set_origin(c.vcpu, c.node);
    auto r = fn();
    m_ctx.finish(m_shootdown);
    return r;
}

// addr page aligned, len not 0, [addr, addr + round_up(len)) inside [lo, kUserTop).
MemResult GuestAddressSpace::check_user_range(uint64_t addr, uint64_t len, uint64_t lo, GuestVirtRange& out) const {
    if (!mm::is_aligned(addr, mm::kPageSize) || len == 0) return fail(MemError::Invalid);
    auto rounded = mm::align_up(len, mm::kPageSize);
    if (!rounded || !mm::checked_add(addr, *rounded)) return fail(MemError::Overflow);
    if (addr < lo || addr + *rounded > abi::kUserTop) return fail(MemError::OutOfRange);
    out = GuestVirtRange::from_start_size(GuestVirtAddr(addr), *rounded);
    return uint64_t{0};
}

MemResult GuestAddressSpace::mmap(Caller c, uint64_t hint, uint64_t len, uint64_t prot, uint64_t flags, uint64_t node) {
    return locked_op(c, [&] { return mmap_locked(hint, len, prot, flags, node); });
}

MemResult GuestAddressSpace::mmap_locked(uint64_t hint, uint64_t len, uint64_t prot, uint64_t flags, uint64_t node) {
    if ((prot & ~abi::kProtMask) != 0 || (flags & ~abi::kMapMask) != 0) return fail(MemError::Invalid);
    if (node != abi::kNodeAny && node >= m_frames.node_count()) return fail(MemError::Invalid);
    if ((flags & abi::kMapNoReplace) != 0) flags |= abi::kMapFixed;
    MM_TRY_ASSIGN(uint64_t start, place_locked(hint, len, flags));
    auto r = GuestVirtRange::from_start_size(GuestVirtAddr(start), *mm::align_up(len, mm::kPageSize));
    bool fixed = (flags & abi::kMapFixed) != 0;
    auto backend =
        GvaBackend::demand(static_cast<uint32_t>(node), (flags & abi::kMapPopulate) != 0, (flags & abi::kMapHuge) != 0);
    mm::Status s = m_set->map(Set::Area(r, user_flags(prot), backend), m_ctx, fixed);
    if (!s) return fail(to_mem_error(s.error()));
    m_set->merge_adjacent(r);
    return start;
}

// The start of the new area: hint itself for Fixed, else a free range near it.
MemResult GuestAddressSpace::place_locked(uint64_t hint, uint64_t len, uint64_t flags) {
    if ((flags & abi::kMapFixed) != 0) {
        GuestVirtRange r;
        MM_TRY(check_user_range(hint, len, abi::kMmapBase, r));
        if ((flags & abi::kMapNoReplace) != 0 && m_set->overlaps(r)) return fail(MemError::Exists);
        return hint;
    }
    if (!mm::is_aligned(hint, mm::kPageSize) || len == 0) return fail(MemError::Invalid);
    auto rounded = mm::align_up(len, mm::kPageSize);
    if (!rounded) return fail(MemError::Overflow);
    if (*rounded > kMmapRange.size()) return fail(MemError::NoMemory);
    uint64_t align = (flags & abi::kMapHuge) != 0 && *rounded >= k2M ? k2M : mm::kPageSize;
    auto at = m_set->find_free_area(GuestVirtAddr(hint), *rounded, kMmapRange, align);
    if (!at) return fail(MemError::NoMemory);
    return at->value();
}

MemResult GuestAddressSpace::munmap(Caller c, uint64_t addr, uint64_t len) {
    return locked_op(c, [&]() -> MemResult {
        GuestVirtRange r;
        MM_TRY(check_user_range(addr, len, abi::kUserBase, r));
        return munmap_locked(r);
    });
}

MemResult GuestAddressSpace::munmap_locked(GuestVirtRange r) {
    mm::Status s = m_set->unmap(r.start(), r.size(), m_ctx);
    if (!s) return fail(to_mem_error(s.error()));
    return uint64_t{0};
}

MemResult GuestAddressSpace::mprotect(Caller c, uint64_t addr, uint64_t len, uint64_t prot) {
    return locked_op(c, [&]() -> MemResult {
        if ((prot & ~abi::kProtMask) != 0) return fail(MemError::Invalid);
        GuestVirtRange r;
        MM_TRY(check_user_range(addr, len, abi::kUserBase, r));
        return mprotect_locked(r, user_flags(prot));
    });
}

MemResult GuestAddressSpace::mprotect_locked(GuestVirtRange r, Perm flags) {
    for (GuestVirtAddr a = r.start(); a <= r.last();) {  // every byte must be in an area
        const Set::Area* area = m_set->find(a);
        if (area == nullptr) return fail(MemError::NotMapped);
        if (area->last() >= r.last()) break;
        a = area->last() + 1;
    }
    auto update = [flags](Perm old) {
        return old == flags ? mm::FlagsUpdate<Perm>::keep() : mm::FlagsUpdate<Perm>::to(flags);
    };
    mm::Status s = m_set->protect(r.start(), r.size(), update, m_ctx);
    if (!s) return fail(to_mem_error(s.error()));
    m_set->merge_adjacent(r);
    return uint64_t{0};
}

MemResult GuestAddressSpace::brk(Caller c, uint64_t new_end) {
    return locked_op(c, [&] { return brk_locked(new_end); });
}

MemResult GuestAddressSpace::brk_locked(uint64_t new_end) {
    if (new_end == 0) return m_brk;
    if (new_end < abi::kBrkBase) return fail(MemError::Invalid);
    if (new_end > abi::kBrkLimit) return fail(MemError::NoMemory);
    uint64_t old_top = *mm::align_up(m_brk, mm::kPageSize);
    uint64_t new_top = *mm::align_up(new_end, mm::kPageSize);
    if (new_top > old_top) {
        auto r = GuestVirtRange::from_start_size(GuestVirtAddr(old_top), new_top - old_top);
        auto area = Set::Area(r, Perm::User | mm::kPermRW, GvaBackend::demand(kAnyNode, false, false));
        mm::Status s = m_set->map(area, m_ctx, false);
        if (!s) return fail(to_mem_error(s.error()));
        m_set->merge_adjacent(r);
    } else if (new_top < old_top) {
        mm::Status s = m_set->unmap(GuestVirtAddr(new_top), old_top - new_top, m_ctx);
        if (!s) return fail(to_mem_error(s.error()));
    }
    m_brk = new_end;
    return m_brk;
}

mm::Status GuestAddressSpace::map_linear(GuestVirtRange r, mm::GuestPhysAddr pa, Perm perm, bool huge) {
    return map_vmm_area(r, perm, GvaBackend::linear(r.start(), pa, huge));
}

mm::Status GuestAddressSpace::map_guard(GuestVirtRange r) { return map_vmm_area(r, Perm::None, GvaBackend::guard()); }

bool GuestAddressSpace::is_vmm_range(GuestVirtRange r) { return !r.overlaps(kUserRange); }

mm::Status GuestAddressSpace::unmap_vmm_area(GuestVirtRange r) {
    if (r.is_empty() || !r.is_aligned(mm::kPageSize)) return mm::err(mm::Error::InvalidParam);
    if (!is_vmm_range(r)) return mm::err(mm::Error::OutOfRange);
    Exclusive lock(*this);
    m_ctx.set_origin(0, 0);
    mm::Status s = m_set->unmap(r.start(), r.size(), m_ctx);
    m_ctx.finish(m_shootdown);
    return s;
}

mm::Status GuestAddressSpace::map_vmm_area(GuestVirtRange r, Perm perm, GvaBackend b) {
    if (r.is_empty() || !r.is_aligned(mm::kPageSize)) return mm::err(mm::Error::InvalidParam);
    if (!is_vmm_range(r)) return mm::err(mm::Error::OutOfRange);
    Exclusive lock(*this);
    m_ctx.set_origin(0, 0);
    mm::Status s = m_set->map(Set::Area(r, perm, b), m_ctx, false);
    m_ctx.finish(m_shootdown);
    return s;
}

PagingStats GuestAddressSpace::stats() const {
    Exclusive lock(*this);
    PagingStats s;
    for (uint32_t i = 0; i < m_config.vcpus; ++i) {
        const Counters& c = m_vcpu[i].counters;
        s.faults += c.faults;
        s.mapped_faults += c.mapped_faults;
        s.spurious += c.spurious;
        s.segv += c.segv;
        s.oom += c.oom;
        s.fault_around_pages += c.fault_around_pages;
        s.huge_faults += c.huge_faults;
    }
    s.shootdowns = m_ctx.shootdowns();
    s.frames_per_node = m_ctx.frames_per_node();
    s.provider_tables = m_tables.provider_tables();
    return s;
}

uint64_t GuestAddressSpace::current_brk() const {
    Exclusive lock(*this);
    return m_brk;
}

mm::Result<mm::x86::Mapping> GuestAddressSpace::query(GuestVirtAddr va) const {
    Exclusive lock(*this);
    return m_pt.query(va);
}

std::vector<GuestAddressSpace::AreaInfo> GuestAddressSpace::areas() const {
    Exclusive lock(*this);
    std::vector<AreaInfo> out;
    for (const auto& a : *m_set) out.push_back(AreaInfo{a.range(), a.flags(), a.backend()});
    return out;
}

bool GuestAddressSpace::check_invariants() const {
    Exclusive lock(*this);
    if (!m_set->check_invariants() || !m_pt.check_invariants() || !m_ctx.check_ownership()) return false;
    if (m_brk < abi::kBrkBase || m_brk > abi::kBrkLimit) return false;
    return check_leaves();
}

// Every user-range leaf is inside an area, with the area's page-table permission,
// at the frame its backend says; demand leaves account for every owned frame.
bool GuestAddressSpace::check_leaves() const {
    uint64_t demand_pages = 0;
    bool good = true;
    auto s = m_pt.for_each_mapping(kUserRange, [&](const mm::x86::Mapping& m) {
        const Set::Area* a = m_set->find(m.base);
        if (a == nullptr || !a->range().contains(m.range()) || m.perm != pt_perm(a->flags())) return good = false;
        const GvaBackend& b = a->backend();
        uint64_t pages = mm::bytes(m.size) / mm::kPageSize;
        if (b.kind == GvaBackend::Kind::Guard) return good = false;
        if (b.kind == GvaBackend::Kind::Linear && m.phys.value() != m.base.value() + b.delta) return good = false;
        if (b.kind == GvaBackend::Kind::Demand) {
            for (uint64_t i = 0; i < pages; ++i)
                if (m_ctx.owner_node(mm::GuestFrame::containing(m.phys) + i) == kAnyNode) return good = false;
            demand_pages += pages;
        }
        return true;
    });
    return s && good && demand_pages == m_ctx.owned_frames();
}

}  // namespace pv::paging
