// MemorySystem: RunConfig -> zones, pools, fault server, guest-physical areas.
#include "vmm/run/memory_system.h"

#include <numa.h>

#include <algorithm>

#include "vmm/abi/layout.h"
#include "vmm/sandbox/seccomp.h"

namespace pv::run {
namespace {

using memory::AreaKind;
using memory::AreaSpec;

memory::NumaPolicy to_numa_policy(memory::ZonePolicy p, bool has_hosts) {
    switch (p) {
        case memory::ZonePolicy::Default: return has_hosts ? memory::NumaPolicy::Bind : memory::NumaPolicy::Default;
        case memory::ZonePolicy::Bind: return memory::NumaPolicy::Bind;
        case memory::ZonePolicy::Preferred: return memory::NumaPolicy::Preferred;
        case memory::ZonePolicy::Interleave: return memory::NumaPolicy::Interleave;
    }
    return memory::NumaPolicy::Default;
}

std::vector<memory::PoolConfig> pool_configs(const memory::MemoryConfig& cfg) {
    std::vector<memory::PoolConfig> pools;
    for (const auto& spec : memory::node_pools(cfg)) {
        memory::PoolConfig p;
        p.guest_node = spec.guest_numa_id;
        for (uint32_t h : spec.host_nodes) p.host_nodes.add(h);
        p.policy = to_numa_policy(spec.policy, !spec.host_nodes.empty());
        p.quota_pages = spec.quota / layout::kPage;
        p.fallback = spec.fallback;
        pools.push_back(std::move(p));
    }
    return pools;
}

uint32_t host_node_count() { return numa_available() >= 0 ? static_cast<uint32_t>(numa_num_configured_nodes()) : 1; }

mm::GuestPhysRange gpa_range(uint64_t start, uint64_t size) {
    return mm::GuestPhysRange::from_start_size(mm::GuestPhysAddr(start), size);
}

}  // namespace

Expected<std::unique_ptr<MemorySystem>> MemorySystem::create(const RunConfig& config) {
    std::unique_ptr<MemorySystem> s(new MemorySystem());
    memory::TopologyLimits limits;
    limits.vcpus = config.vcpus;
    limits.host_nodes = host_node_count();
    if (config.memory_config.zones.empty()) limits.ram_size = config.memory;
    PV_TRY_ASSIGN(s->m_config, memory::resolve_memory_config(config.memory_config, limits));
    if (s->m_config.total_size() < layout::kMinRamSize)
        return make_error(ErrorKind::Usage, "guest memory must total at least 48M (the zones give " +
                                                memory::format_exact_size(s->m_config.total_size()) + ")");
    PV_TRY(s->build_accounting());
    PV_TRY(s->build_fault_server(config));
    memory::DemandHooks hooks{s->m_server.get(), s->m_accounting.get()};
    PV_TRY_ASSIGN(memory::GuestMemory mem, memory::GuestMemory::create_empty(hooks));
    s->m_mem.emplace(std::move(mem));
    PV_TRY(s->build_areas(config));
    for (const auto& a : s->m_mem->areas()) {
        if (a.id >= s->m_area_bases.size()) s->m_area_bases.resize(a.id + 1);
        s->m_area_bases[a.id] = {a.gpa.start().value(), mm::host_addr(a.host).value(), a.name};
    }
    if (!config.fault_trace_path.empty()) PV_TRY(s->open_trace(config.fault_trace_path));
    return s;
}

MemorySystem::~MemorySystem() {
    m_mem.reset();  // unregisters from the server and uncharges before they go
    m_server.reset();
    if (m_trace != nullptr) std::fclose(m_trace);
}

Status MemorySystem::open_trace(const std::string& path) {
    if (!m_server) return {};  // no demand area: nothing to trace
    m_trace = std::fopen(path.c_str(), "w");
    if (m_trace == nullptr) return errno_error(ErrorKind::Io, "cannot open fault trace file '" + path + "'");
    std::setvbuf(m_trace, nullptr, _IOFBF, 1 << 20);
    return {};
}

void MemorySystem::set_vcpu_thread(uint32_t vcpu, uint32_t tid) {
    if (vcpu < m_vcpu_tids.size()) m_vcpu_tids[vcpu].store(tid, std::memory_order_relaxed);
}

// {"t_ns":..,"gpa":..,"hva":..,"vcpu":..,"area":"..","backend":"demand","node":..,"write":..,"latency_ns":..}
void MemorySystem::trace(const memory::FaultRecord& r) {
    int vcpu = -1;
    for (size_t i = 0; i < m_vcpu_tids.size(); ++i)
        if (r.tid != 0 && m_vcpu_tids[i].load(std::memory_order_relaxed) == r.tid) vcpu = static_cast<int>(i);
    uint64_t gpa = 0;
    const char* area = "";
    if (r.range_id < m_area_bases.size() && m_area_bases[r.range_id].host != 0) {
        const auto& b = m_area_bases[r.range_id];
        gpa = b.gpa + ((r.address & ~(layout::kPage - 1)) - b.host);
        area = b.name.c_str();
    }
    std::lock_guard guard(m_trace_lock);
    if (m_trace == nullptr) return;
    std::fprintf(
        m_trace,
        "{\"t_ns\":%llu,\"gpa\":%llu,\"hva\":%llu,\"vcpu\":%d,\"tid\":%u,\"area\":\"%s\",\"backend\":\"demand\","
        "\"node\":%u,\"write\":%s,\"latency_ns\":%llu}\n",
        static_cast<unsigned long long>(r.time_ns), static_cast<unsigned long long>(gpa),
        static_cast<unsigned long long>(r.address), vcpu, r.tid, area, r.node, r.write ? "true" : "false",
        static_cast<unsigned long long>(r.latency_ns));
}

Status MemorySystem::build_accounting() {
    PV_TRY_ASSIGN(auto topology, memory::HostTopology::detect());
    PV_TRY_ASSIGN(auto accounting, memory::NodeAccounting::create(pool_configs(m_config), std::move(topology)));
    m_accounting = std::make_unique<memory::NodeAccounting>(std::move(accounting));
    return {};
}

Status MemorySystem::build_fault_server(const RunConfig& config) {
    bool demand = std::any_of(m_config.zones.begin(), m_config.zones.end(),
                              [](const auto& z) { return z.backend == memory::ZoneBackend::Demand; });
    if (!demand) return {};
    if (config.fault_threads == 0 || config.fault_threads > 16)
        return make_error(ErrorKind::Usage, "--fault-threads must be between 1 and 16");
    memory::FaultServer::Options o;
    o.threads = config.fault_threads;
    o.wait = config.fault_busy_poll ? memory::FaultServer::Wait::BusyPoll : memory::FaultServer::Wait::Poll;
    o.cpus = config.fault_cpus;
    const auto& fa = m_config.fault_around;
    o.fault_around = fa.enabled && fa.pages > 1 ? memory::FaultServer::FaultAround::Sequential
                                                : memory::FaultServer::FaultAround::Off;
    o.fault_around_pages = fa.enabled ? fa.pages : 1;
    o.watchdog_timeout = config.fault_watchdog;
    memory::NodeAccounting* acct = m_accounting.get();
    o.charger.charge = [acct](uint32_t node, uint64_t pages) { return acct->charge(node, pages).has_value(); };
    o.charger.uncharge = [acct](uint32_t node, uint64_t pages) { (void)acct->uncharge(node, pages); };
    o.on_fatal = [this](const Error& e) { fire(true, e); };
    o.on_stall = [this](const Error& e) { fire(false, e); };
    if (!config.fault_trace_path.empty()) o.on_fault = [this](const memory::FaultRecord& r) { trace(r); };
    if (config.seccomp != SeccompMode::Off) {
        auto action = config.seccomp == SeccompMode::Trap ? sandbox::Action::Trap : sandbox::Action::KillProcess;
        o.on_thread_start = [this, action] {
            if (auto s = sandbox::install_thread_filter(sandbox::ThreadProfile::FaultServer, action); !s)
                fire(true, s.error());
        };
    }
    PV_TRY_ASSIGN(m_server, memory::FaultServer::create(std::move(o)));
    return {};
}

Status MemorySystem::build_areas(const RunConfig& config) {
    const auto pools = pool_configs(m_config);
    auto policy_of = [&](uint32_t node) -> std::optional<memory::PoolConfig> {
        if (node < pools.size() && pools[node].policy != memory::NumaPolicy::Default) return pools[node];
        return std::nullopt;
    };
    std::vector<size_t> pieces_of_zone(m_config.zones.size(), 0);
    for (const auto& p : memory::place_zones(m_config)) ++pieces_of_zone[p.zone_index];
    for (const auto& piece : memory::place_zones(m_config)) {
        const auto& zone = m_config.zones[piece.zone_index];
        const auto* owner = m_config.node_of_zone(zone.id);
        const uint32_t node = owner != nullptr ? owner->guest_numa_id : 0;
        AreaSpec spec;
        spec.node = node;
        spec.policy = policy_of(node);
        uint64_t start = piece.gpa, end = piece.gpa + piece.size;
        if (start < layout::kFreeRamStart) {  // the fixed structures and the image: always eager
            spec.name = "system";
            spec.kind = AreaKind::Eager;
            spec.gpa = gpa_range(start, std::min(end, layout::kFreeRamStart) - start);
            PV_TRY(m_mem->map(spec));
            start = std::min(end, layout::kFreeRamStart);
        }
        if (start == end) continue;
        spec.name = pieces_of_zone[piece.zone_index] > 1 && piece.zone_offset != 0
                        ? zone.id + "+" + memory::format_exact_size(piece.zone_offset)
                        : zone.id;
        spec.kind = zone.backend == memory::ZoneBackend::Demand ? AreaKind::Demand : AreaKind::Eager;
        spec.prefault = zone.prefault;
        spec.gpa = gpa_range(start, end - start);
        PV_TRY(m_mem->map(spec));
    }
    AreaSpec hole;
    hole.name = "device-window";
    hole.kind = AreaKind::Hole;
    hole.gpa = gpa_range(layout::kDeviceWindowAddr, layout::kDeviceWindowSize);
    PV_TRY(m_mem->map(hole));
    for (const auto& rom : config.roms) {
        uint64_t size =
            rom.size != 0 ? rom.size : (rom.contents.size() + layout::kPage - 1) / layout::kPage * layout::kPage;
        if (size == 0 || size % layout::kPage != 0 || rom.gpa % layout::kPage != 0 || rom.contents.size() > size)
            return make_error(ErrorKind::Usage, "ROM '" + rom.name +
                                                    "' must be a non-empty, page-aligned range at least "
                                                    "as large as its contents");
        auto range = mm::GuestPhysRange::try_create(mm::GuestPhysAddr(rom.gpa), size);
        if (!range || rom.gpa + size > (uint64_t{1} << 46))
            return make_error(ErrorKind::Usage, "ROM '" + rom.name + "' lies outside the guest-physical address space");
        AreaSpec spec;
        spec.name = rom.name;
        spec.kind = AreaKind::ReadOnly;
        spec.gpa = *range;
        spec.contents = rom.contents;
        if (auto r = m_mem->map(spec); !r) return make_error(ErrorKind::Usage, r.error().message);
    }
    return {};
}

void MemorySystem::set_hooks(MemoryHooks hooks) {
    std::optional<Error> early;
    {
        std::lock_guard guard(m_hooks_lock);
        m_hooks = std::move(hooks);
        early = std::exchange(m_early_fatal, std::nullopt);
    }
    if (early && m_hooks.on_fatal) m_hooks.on_fatal(*early);
}

void MemorySystem::fire(bool fatal, const Error& e) {
    std::function<void(const Error&)> hook;
    {
        std::lock_guard guard(m_hooks_lock);
        hook = fatal ? m_hooks.on_fatal : m_hooks.on_stall;
        if (!hook) {
            if (!m_early_fatal) m_early_fatal = e;
            return;
        }
    }
    hook(e);
}

std::vector<abi::RamRange> MemorySystem::ram_map() const {
    std::vector<abi::RamRange> out;
    for (const auto& a : m_mem->areas()) {
        if (a.kind == AreaKind::Hole || a.gpa.start().value() < layout::kFreeRamStart) continue;
        abi::RamKind kind = a.kind == AreaKind::Demand     ? abi::RamKind::Demand
                            : a.kind == AreaKind::ReadOnly ? abi::RamKind::ReadOnly
                                                           : abi::RamKind::Eager;
        out.push_back(abi::RamRange{a.gpa.start().value(), a.gpa.size(), a.node, kind});
    }
    return out;
}

std::vector<uint32_t> MemorySystem::vcpu_nodes(uint32_t vcpus) const {
    std::vector<uint32_t> nodes(vcpus, 0);
    for (const auto& n : m_config.nodes)
        for (uint32_t cpu : n.cpus)
            if (cpu < vcpus) nodes[cpu] = n.guest_numa_id;
    return nodes;
}

MemoryReport MemorySystem::report() const {
    MemoryReport r;
    r.ram_bytes = m_mem->size();
    std::vector<uint64_t> eager(m_accounting->node_count(), 0);
    for (const auto& s : m_mem->stats()) {
        r.areas.push_back({s.area.name, s.area.gpa.start().value(), s.area.gpa.size(),
                           std::string(memory::to_string(s.area.kind)), s.area.node, s.resident_pages});
        if (s.area.kind != AreaKind::Demand && s.area.kind != AreaKind::Hole && s.area.node < eager.size())
            eager[s.area.node] += s.resident_pages;
    }
    for (uint32_t n = 0; n < m_accounting->node_count(); ++n) {
        auto st = m_accounting->stats(n);
        if (!st) continue;
        r.nodes.push_back({n, m_accounting->held_pages(n), eager[n], st->quota_pages, st->free_pages,
                           st->borrowed_pages, st->refused_charges});
    }
    if (m_server) {
        auto fs = m_server->stats();
        FaultReport f;
        f.faults = fs.faults;
        f.pages_installed = fs.pages_installed;
        f.fault_around_pages = fs.fault_around_pages;
        f.eexist_races = fs.eexist_races;
        f.oom_refusals = fs.oom_refusals;
        f.unaccounted_pages = fs.unaccounted_pages;
        f.stalls = fs.stalls;
        f.fault_around = m_server->options().fault_around != memory::FaultServer::FaultAround::Off;
        f.fault_around_window = f.fault_around ? m_server->options().fault_around_pages : 1;
        f.latency = fs.latency;
        f.thread_cpus = fs.thread_cpus;
        r.demand = f;
    }
    return r;
}

}  // namespace pv::run
