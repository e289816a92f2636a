#include "vmm/run/guest_paging.h"

#include <algorithm>

#include "vmm/abi/layout.h"

namespace pv::run {

GuestPaging::GuestPaging(const Config& config)
    : m_config(config), m_latency(std::make_unique<VcpuLatency[]>(std::max<uint32_t>(1, config.vcpus))) {}

GuestPaging::~GuestPaging() = default;

Expected<std::unique_ptr<GuestPaging>> GuestPaging::create(const Config& config, const memory::GuestMemory& mem,
                                                           x86::TablePool* boot_pool, mm::GuestFrame root,
                                                           WorldGate& world) {
    std::unique_ptr<GuestPaging> p(new GuestPaging(config));
    const uint32_t nodes = std::max<uint32_t>(1, config.nodes);
    std::vector<uint64_t> frames(nodes, 0);
    std::vector<uint32_t> ranges(nodes, 0);
    uint64_t frame_limit = 0;
    for (const auto& r : config.ram) {
        if (r.kind == abi::RamKind::ReadOnly || r.node >= nodes) continue;
        frames[r.node] += r.size / layout::kPage;
        ++ranges[r.node];
        frame_limit = std::max<uint64_t>(frame_limit, (r.gpa + r.size) / layout::kPage);
    }
    const uint64_t per_node = std::max<uint64_t>(1, *std::max_element(frames.begin(), frames.end()));
    const uint32_t ranges_per_node = std::max<uint32_t>(1, *std::max_element(ranges.begin(), ranges.end()));
    p->m_metadata.resize(Frames::metadata_bytes(nodes, config.vcpus, per_node, ranges_per_node));
    if (!p->m_frames.init(p->m_metadata, nodes, config.vcpus, ranges_per_node))
        return make_error(ErrorKind::Internal, "cannot initialise the guest frame allocator");
    for (const auto& r : config.ram) {
        if (r.kind == abi::RamKind::ReadOnly || r.node >= nodes) continue;
        auto range =
            mm::GuestFrameRange::from_phys(mm::GuestPhysRange::from_start_size(mm::GuestPhysAddr(r.gpa), r.size));
        if (!range || !p->m_frames.add_range(r.node, *range))
            return make_error(ErrorKind::Internal,
                              "cannot give RAM at " + std::to_string(r.gpa) + " to the guest frame allocator");
    }
    for (uint32_t n = 0; n < nodes && n < config.node_quota_frames.size(); ++n) {
        if (config.node_quota_frames[n] == 0) continue;
        mm::FrameNodeConfig nc;
        nc.quota_frames = config.node_quota_frames[n];
        if (!p->m_frames.configure(n, nc))
            return make_error(ErrorKind::Internal, "cannot set the guest frame quota of node " + std::to_string(n));
    }
    p->m_provider = std::make_unique<paging::FrameSourceAdapter<Frames>>(p->m_frames, nodes, frame_limit);
    paging::AddressSpaceConfig ac;
    ac.vcpus = config.vcpus;
    ac.fault_around_pages = config.fault_around_pages;
    paging::HostAccess access = [&mem](mm::GuestPhysAddr gpa, uint64_t len) { return mem.host_span(gpa, len); };
    PV_TRY_ASSIGN(p->m_space,
                  paging::GuestAddressSpace::create(ac, std::move(access), *p->m_provider, boot_pool, root));
    p->m_space->set_host_prefault([&mem](mm::GuestPhysAddr gpa, uint64_t len) { mem.prefault(gpa, len); });
    GuestPaging* raw = p.get();
    // Translations changed by the host are invisible to a shadow MMU: with every
    // vCPU out of guest mode, zap them all (the TLB shootdown).
    p->m_space->set_shootdown([raw, &mem, &world] {
        world.with_world_stopped([&] {
            if (auto z = mem.zap_translations(); !z) {
                std::lock_guard guard(raw->m_error_lock);
                if (!raw->m_zap_error) raw->m_zap_error = z.error();
            }
        });
    });
    return p;
}

Expected<std::unique_ptr<GuestPaging>> GuestPaging::restore(const Config& config, const memory::GuestMemory& mem,
                                                            x86::TablePool* boot_pool, mm::GuestFrame root,
                                                            WorldGate& world, std::span<const std::byte> state) {
    PV_TRY_ASSIGN(auto p, create(config, mem, boot_pool, root, world));
    if (auto s = p->m_space->restore_state(state); !s) return mm::Unexpected<Error>{s.error()};
    return p;
}

uint32_t GuestPaging::node_of(uint32_t vcpu) const {
    return vcpu < m_config.vcpu_node.size() ? m_config.vcpu_node[vcpu] : 0;
}

int64_t GuestPaging::call(uint32_t vcpu, abi::Call nr, const uint64_t (&a)[6], uint64_t& /*ret_aux*/) {
    const paging::Caller c{vcpu, node_of(vcpu)};
    switch (nr) {
        case abi::Call::Mmap: return paging::to_abi(m_space->mmap(c, a[0], a[1], a[2], a[3], a[4]));
        case abi::Call::Munmap: return paging::to_abi(m_space->munmap(c, a[0], a[1]));
        case abi::Call::Mprotect: return paging::to_abi(m_space->mprotect(c, a[0], a[1], a[2]));
        case abi::Call::Brk: return paging::to_abi(m_space->brk(c, a[0]));
        default: return static_cast<int64_t>(abi::HcError::BadCall);
    }
}

std::optional<Error> GuestPaging::flush_error() const {
    std::lock_guard guard(m_error_lock);
    return m_zap_error;
}

paging::FaultResult GuestPaging::handle_fault(uint32_t vcpu, uint64_t address, uint64_t error_code) {
    return m_space->handle_fault(mm::GuestVirtAddr(address), error_code, vcpu, node_of(vcpu));
}

}  // namespace pv::run

namespace pv::run {

void GuestPaging::record_fault_latency(uint32_t vcpu, uint64_t ns) {
    if (vcpu < m_config.vcpus) m_latency[vcpu].histogram.record(ns);
}

memory::LatencyHistogram::Snapshot GuestPaging::fault_latency() const {
    memory::LatencyHistogram::Snapshot all;
    for (uint32_t v = 0; v < m_config.vcpus; ++v) {
        auto s = m_latency[v].histogram.snapshot();
        for (unsigned b = 0; b < memory::LatencyHistogram::kBuckets; ++b) all.buckets[b] += s.buckets[b];
        all.count += s.count;
        all.sum_ns += s.sum_ns;
        all.max_ns = std::max(all.max_ns, s.max_ns);
    }
    return all;
}

}  // namespace pv::run
