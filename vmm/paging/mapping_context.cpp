#include "vmm/paging/mapping_context.h"

#include <algorithm>
#include <cstring>

namespace pv::paging {

using mm::GuestFrame;
using mm::GuestPhysAddr;
using mm::GuestVirtAddr;
using mm::GuestVirtRange;
using mm::PageSize;

namespace {
constexpr uint64_t k2M = mm::bytes(PageSize::Size2M);
}

MappingContext::MappingContext(GvaPageTable& pt, PagingTableMemory& tables, FrameProvider& frames,
                               const HostAccess& access)
    : m_pt(pt),
      m_tables(tables),
      m_frames(frames),
      m_access(access),
      m_frame_limit(frames.frame_limit()),
      m_nodes(frames.node_count()),
      m_frame_node(std::make_unique<std::atomic<uint8_t>[]>(m_frame_limit)),
      m_per_node(std::make_unique<std::atomic<uint64_t>[]>(m_nodes)) {}

void MappingContext::set_origin(uint32_t cpu, uint32_t node) {
    m_cpu = cpu;
    m_node = node;
    m_tables.set_origin(cpu, node);
}

mm::Status MappingContext::map_linear(GuestVirtRange r, uint64_t delta, mm::Perm pt_perm, bool huge) {
    GuestPhysAddr pa(r.start().value() + delta);
    if (!m_access(pa, r.size())) return mm::err(mm::Error::OutOfRange);  // linear areas map guest RAM only
    if (m_restoring) return mm::ok();
    return m_pt.map_region(r, pa, pt_perm, huge);
}

mm::Status MappingContext::populate(GuestVirtRange r, uint32_t node, bool huge, mm::Perm pt_perm) {
    if (m_restoring) return mm::ok();
    GuestVirtAddr at = r.start();
    uint64_t left = r.size();
    while (left > 0) {
        bool block = huge && at.is_aligned(k2M) && left >= k2M;
        uint64_t step = block ? k2M : mm::kPageSize;
        mm::Status s = populate_block(at, step, node, block, pt_perm);
        if (!s) {
            if (at > r.start()) (void)unmap(GuestVirtRange::from_start_size(r.start(), at - r.start()), true);
            return s;
        }
        at += step;
        left -= step;
    }
    return mm::ok();
}

// One 4 KiB page, or one 2 MiB block (huge) that falls back to 4 KiB pages when
// no contiguous block is free.
mm::Status MappingContext::populate_block(GuestVirtAddr at, uint64_t size, uint32_t node, bool huge, mm::Perm pt_perm) {
    if (huge && map_demand_huge(at, node, pt_perm)) return mm::ok();
    for (uint64_t off = 0; off < size; off += mm::kPageSize) {
        auto r = map_demand_page(at + off, node, pt_perm);
        if (!r) {
            if (off > 0) (void)unmap(GuestVirtRange::from_start_size(at, off), true);
            return mm::err(r.error());
        }
    }
    return mm::ok();
}

mm::Result<uint64_t> MappingContext::map_demand_page(GuestVirtAddr page, uint32_t node, mm::Perm pt_perm) {
    MM_TRY_ASSIGN(Grant g, m_frames.alloc(m_cpu, node == kAnyNode ? m_node : node));
    mm::Status s = can_own(g.frame, 1, g.node) ? zero(g.frame, 1) : mm::err(mm::Error::BadState);
    if (s) s = m_pt.map(page, g.frame.start_address(), PageSize::Size4K, pt_perm);
    if (!s) {  // never visible to a vCPU: give it back at once
        (void)m_frames.free(m_cpu, g.frame);
        return mm::err(s.error());
    }
    own(g.frame, 1, g.node);
    return uint64_t{1};
}

mm::Result<uint64_t> MappingContext::map_demand_huge(GuestVirtAddr block, uint32_t node, mm::Perm pt_perm) {
    MM_TRY_ASSIGN(Grant g, m_frames.alloc_contiguous(node == kAnyNode ? m_node : node, kHugePages));
    mm::Status s = g.frame.number() % kHugePages == 0 && can_own(g.frame, kHugePages, g.node)
                       ? zero(g.frame, kHugePages)
                       : mm::err(mm::Error::BadState);
    if (s) s = m_pt.map(block, g.frame.start_address(), PageSize::Size2M, pt_perm);
    if (!s) {
        (void)m_frames.free_contiguous(g.frame, kHugePages);
        return mm::err(s.error());
    }
    own(g.frame, kHugePages, g.node);
    m_huge_live[g.frame.number()] = kHugePages;
    return kHugePages;
}

mm::Result<bool> MappingContext::install_demand_page(VcpuPageTable& pt, uint32_t cpu, GuestVirtAddr page, uint32_t node,
                                                     mm::Perm pt_perm) {
    MM_TRY_ASSIGN(Grant g, m_frames.alloc(cpu, node));
    return install_demand_frame(pt, cpu, page, g, pt_perm);
}

void MappingContext::prefault(std::span<const Grant> frames) const {
    if (!m_prefault || frames.empty()) return;
    // A few frames, popped from a per-CPU cache (descending runs): sort, then one call per run.
    uint64_t f[kPrefaultBatch];
    size_t n = frames.size() < kPrefaultBatch ? frames.size() : kPrefaultBatch;
    for (size_t i = 0; i < n; ++i) f[i] = frames[i].frame.number();
    std::sort(f, f + n);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && f[j] == f[j - 1] + 1) ++j;
        m_prefault(GuestFrame(f[i]).start_address(), (j - i) * mm::kPageSize);
        i = j;
    }
}

mm::Result<bool> MappingContext::install_demand_frame(VcpuPageTable& pt, uint32_t cpu, GuestVirtAddr page,
                                                      const Grant& g, mm::Perm pt_perm) {
    mm::Status s = can_own(g.frame, 1, g.node) ? zero(g.frame, 1) : mm::err(mm::Error::BadState);
    if (s) s = pt.install(page, g.frame.start_address(), PageSize::Size4K, pt_perm);
    if (!s) {  // never visible to a vCPU: give it back at once
        (void)m_frames.free(cpu, g.frame);
        if (s.error() == mm::Error::AlreadyExists) return false;
        return mm::err(s.error());
    }
    own(g.frame, 1, g.node);
    return true;
}

bool MappingContext::is_unmapped(GuestVirtRange r) const {
    bool any = false;
    auto s = m_pt.for_each_mapping(r, [&any](const mm::x86::Mapping&) { return !(any = true); });
    return s && !any;
}

mm::Status MappingContext::unmap(GuestVirtRange r, bool owned) {
    std::vector<Leaf> leaves;
    MM_TRY(m_pt.for_each_mapping(r, [&](const mm::x86::Mapping& m) {
        GuestVirtRange piece = m.range().intersect(r);
        leaves.push_back(Leaf{piece, m.phys + (piece.start() - m.base)});
        return true;
    }));
    MM_TRY(m_pt.unmap_region(r));
    if (!leaves.empty()) m_need_flush = true;
    if (owned) {
        for (const Leaf& l : leaves) release_owned(GuestFrame::containing(l.pa), l.va.size() / mm::kPageSize);
    }
    return mm::ok();
}

mm::Status MappingContext::protect(GuestVirtRange r, mm::Perm pt_perm) {
    if (!is_unmapped(r)) m_need_flush = true;  // conservative: upgrades need no flush, downgrades do
    return m_pt.protect_region(r, pt_perm);
}

mm::Status MappingContext::zero(GuestFrame f, uint64_t pages) const {
    auto span = m_access(f.start_address(), pages * mm::kPageSize);
    if (!span) return mm::err(mm::Error::BadState);  // the provider's frame is not guest RAM
    std::memset(span->data(), 0, span->size());
    return mm::ok();
}

// A provider frame outside [0, frame_limit) or of an unknown node is refused
// (never mapped) rather than tracked.
bool MappingContext::can_own(GuestFrame f, uint64_t pages, uint32_t node) const {
    return node < m_nodes && f.number() < m_frame_limit && pages <= m_frame_limit - f.number();
}

// Relaxed: readers of the totals either hold the space exclusively (the vCPU
// locks order them) or accept a snapshot (stats).
void MappingContext::own(GuestFrame f, uint64_t pages, uint32_t node) {
    for (uint64_t i = f.number(); i < f.number() + pages; ++i)
        m_frame_node[i].store(static_cast<uint8_t>(node + 1), std::memory_order_relaxed);
    m_per_node[node].fetch_add(pages, std::memory_order_relaxed);
    m_owned.fetch_add(pages, std::memory_order_relaxed);
}

mm::Status MappingContext::adopt(GuestFrame f, uint64_t pages, uint32_t node) {
    if ((pages != 1 && pages != kHugePages) || !can_own(f, pages, node)) return mm::err(mm::Error::OutOfRange);
    for (uint64_t k = 0; k < pages; ++k)
        if (owner_node(f + k) != kAnyNode) return mm::err(mm::Error::AlreadyExists);
    own(f, pages, node);
    if (pages == kHugePages) m_huge_live[f.number()] = kHugePages;
    return mm::ok();
}

uint32_t MappingContext::owner_node(GuestFrame f) const {
    if (f.number() >= m_frame_limit) return kAnyNode;
    uint8_t n = m_frame_node[f.number()].load(std::memory_order_relaxed);
    return n == 0 ? kAnyNode : n - 1U;
}

std::vector<uint64_t> MappingContext::frames_per_node() const {
    std::vector<uint64_t> out(m_nodes);
    for (uint32_t i = 0; i < m_nodes; ++i) out[i] = m_per_node[i].load(std::memory_order_relaxed);
    return out;
}

void MappingContext::release_owned(GuestFrame f, uint64_t pages) {
    for (uint64_t k = 0; k < pages; ++k) {
        GuestFrame fr = f + k;
        uint32_t node = owner_node(fr);
        if (node == kAnyNode) continue;  // not ours (cannot happen unless the table was corrupted)
        m_frame_node[fr.number()].store(0, std::memory_order_relaxed);
        m_per_node[node].fetch_sub(1, std::memory_order_relaxed);
        m_owned.fetch_sub(1, std::memory_order_relaxed);
        uint64_t base = mm::align_down(fr.number(), kHugePages);
        auto it = m_huge_live.find(base);
        if (it == m_huge_live.end()) {
            m_pending.push_back(PendingFree{fr, 1});
        } else if (--it->second == 0) {
            m_pending.push_back(PendingFree{GuestFrame(base), kHugePages});
            m_huge_live.erase(it);
        }
    }
}

void MappingContext::finish(const std::function<void()>& shootdown) {
    if (m_need_flush || !m_pending.empty() || m_tables.has_deferred()) {
        if (shootdown) shootdown();
        ++m_shootdowns;
    }
    for (const PendingFree& p : m_pending) {
        if (p.count == 1)
            (void)m_frames.free(m_cpu, p.frame);
        else
            (void)m_frames.free_contiguous(p.frame, p.count);
    }
    m_pending.clear();
    m_tables.release_deferred();
    m_need_flush = false;
}

bool MappingContext::check_ownership() const {
    std::vector<uint64_t> per_node(m_nodes, 0);
    uint64_t total = 0;
    for (uint64_t f = 0; f < m_frame_limit; ++f) {
        uint8_t n = m_frame_node[f].load(std::memory_order_relaxed);
        if (n == 0) continue;
        if (n - 1U >= per_node.size()) return false;
        ++per_node[n - 1U];
        ++total;
    }
    if (total != owned_frames() || per_node != frames_per_node()) return false;
    for (const auto& [base, live] : m_huge_live) {
        uint64_t owned = 0;
        for (uint64_t i = 0; i < kHugePages; ++i) owned += owner_node(GuestFrame(base + i)) != kAnyNode ? 1 : 0;
        if (live == 0 || owned != live) return false;
    }
    return true;
}

}  // namespace pv::paging
