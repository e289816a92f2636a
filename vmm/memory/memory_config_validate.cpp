// resolve_memory_config: defaults and whole-topology validation.
#include <algorithm>
#include <string>

#include "vmm/abi/layout.h"
#include "vmm/memory/memory_config.h"
#include "vmm/memory/memory_config_detail.h"
#include "vmm/memory/memory_size.h"

namespace pv::memory {
namespace {

using detail::quote;
using detail::usage;

std::string zone_name(const ZoneConfig& zone) { return "memory zone " + quote(zone.id); }
std::string node_name(const NumaNodeConfig& node) { return "guest node " + std::to_string(node.guest_numa_id); }

std::string plural(uint32_t n, const std::string& what) { return std::to_string(n) + " " + what + (n == 1 ? "" : "s"); }

Status check_limits(const TopologyLimits& limits) {
    if (limits.vcpus == 0 || limits.vcpus > layout::kMaxVcpus)
        return usage("vCPU count " + std::to_string(limits.vcpus) + " is out of range [1, " +
                     std::to_string(layout::kMaxVcpus) + "]");
    if (limits.host_nodes == 0 || limits.host_nodes > kMaxHostNumaNodes)
        return make_error(ErrorKind::Invalid,
                          "host NUMA node count " + std::to_string(limits.host_nodes) + " is out of range");
    return {};
}

// Field rules that involve more than one key of a zone, and the host's nodes.
Status check_zone(const ZoneConfig& zone, uint32_t host_nodes) {
    const std::string name = zone_name(zone);
    PV_TRY(detail::check_zone_id(zone.id));
    if (auto st = detail::check_zone_size(zone.size); !st)
        return mm::Unexpected<Error>{st.error().with_context(name + ": size")};
    if (auto st = detail::check_quota(zone.quota); !st)
        return mm::Unexpected<Error>{st.error().with_context(name + ": quota")};
    if (zone.quota > zone.size)
        return usage(name + ": quota=" + format_exact_size(zone.quota) +
                     " exceeds size=" + format_exact_size(zone.size));
    if (zone.quota != 0 && zone.backend != ZoneBackend::Demand)
        return usage(name + ": quota=" + format_exact_size(zone.quota) +
                     " needs backend=demand (the kernel fills eager zones)");
    if (zone.prefault && zone.backend != ZoneBackend::Eager)
        return usage(name + ": prefault=on needs backend=eager (a demand zone is filled on first touch)");
    if (zone.host_numa_node && !zone.host_nodes.empty())
        return usage(name + ": give host_numa_node or host-nodes, not both");
    if (auto st = detail::check_u32_values(zone.host_nodes, kMaxHostNumaNodes, "host node"); !st)
        return mm::Unexpected<Error>{st.error().with_context(name + ": host-nodes")};
    const std::vector<uint32_t> nodes = zone_host_nodes(zone);
    for (uint32_t n : nodes)
        if (n >= host_nodes)
            return usage(name + ": host node " + std::to_string(n) + " does not exist (the host has " +
                         plural(host_nodes, "NUMA node") + ")");
    if (zone.policy != ZonePolicy::Default && nodes.empty())
        return usage(name + ": policy=" + std::string(to_string(zone.policy)) + " needs host_numa_node or host-nodes");
    if (zone.policy == ZonePolicy::Preferred && nodes.size() != 1)
        return usage(name + ": policy=preferred takes exactly one host node (got " + std::to_string(nodes.size()) +
                     ")");
    return {};
}

Status check_zones(MemoryConfig& config, const TopologyLimits& limits) {
    if (config.zones.empty()) {
        if (!limits.ram_size) return usage("no guest memory size: give --memory or --memory-zone");
        ZoneConfig zone;  // eager: today's behaviour, until demand paging is the run loop's default
        zone.id = "mem0";
        zone.size = *limits.ram_size;
        config.zones.push_back(std::move(zone));
    }
    for (size_t i = 0; i < config.zones.size(); ++i) {
        PV_TRY(check_zone(config.zones[i], limits.host_nodes));
        for (size_t j = 0; j < i; ++j)
            if (config.zones[j].id == config.zones[i].id)
                return usage("memory zone id " + quote(config.zones[i].id) + " is used twice");
    }
    const uint64_t total = config.total_size();
    if (limits.ram_size && *limits.ram_size != total)
        return usage("--memory " + format_size(*limits.ram_size) + " differs from the memory zones' total " +
                     format_size(total) + " (omit --memory or make them equal)");
    if (total < layout::kMinRamSize)
        return usage("guest memory " + format_size(total) + " is below the minimum " +
                     format_size(layout::kMinRamSize));
    if (total > kMaxRamSize)
        return usage("guest memory " + format_size(total) + " is above the maximum " + format_size(kMaxRamSize));
    // The VMM writes the fixed structures below kFreeRamStart before boot: keep them in one zone.
    if (config.zones.front().size < layout::kFreeRamStart)
        return usage(zone_name(config.zones.front()) + ": the first zone (at guest-physical 0) must be at least " +
                     format_size(layout::kFreeRamStart) + " to hold the fixed guest structures, got " +
                     format_size(config.zones.front().size));
    return {};
}

// Every zone in exactly one node; node ids unique.
Status check_node_zones(const MemoryConfig& config) {
    for (size_t i = 0; i < config.nodes.size(); ++i) {
        const NumaNodeConfig& node = config.nodes[i];
        for (size_t j = 0; j < i; ++j)
            if (config.nodes[j].guest_numa_id == node.guest_numa_id)
                return usage(node_name(node) + " is defined twice");
        if (node.guest_numa_id >= kMaxGuestNumaNodes)
            return usage(node_name(node) + ": guest_numa_id is above " + std::to_string(kMaxGuestNumaNodes - 1));
        for (const std::string& id : node.memory_zones)
            if (config.find_zone(id) == nullptr)
                return usage(node_name(node) + ": memory_zones names unknown zone " + quote(id));
    }
    for (const NumaNodeConfig& node : config.nodes)
        if (node.guest_numa_id >= config.nodes.size())
            return usage(node_name(node) + ": guest_numa_id must be below the number of guest nodes (" +
                         std::to_string(config.nodes.size()) + "): ids are 0..n-1");
    for (const ZoneConfig& zone : config.zones) {
        std::vector<uint32_t> owners;
        for (const NumaNodeConfig& node : config.nodes)
            owners.insert(owners.end(), std::count(node.memory_zones.begin(), node.memory_zones.end(), zone.id),
                          node.guest_numa_id);
        if (owners.empty())
            return usage(zone_name(zone) + " belongs to no guest node (list it in a --numa memory_zones=)");
        if (owners.size() > 1)
            return usage(zone_name(zone) + " is listed by guest nodes " + std::to_string(owners[0]) + " and " +
                         std::to_string(owners[1]));
    }
    return {};
}

// Every vCPU in exactly one node; unlisted vCPUs go to a single node.
Status check_node_cpus(MemoryConfig& config, uint32_t vcpus) {
    std::vector<int64_t> owner(layout::kMaxVcpus, -1);
    for (const NumaNodeConfig& node : config.nodes)
        for (uint32_t cpu : node.cpus) {
            if (cpu >= vcpus)
                return usage(node_name(node) + ": cpus lists vCPU " + std::to_string(cpu) + " but the guest has " +
                             plural(vcpus, "vCPU"));
            if (owner[cpu] >= 0)
                return usage("vCPU " + std::to_string(cpu) + " is in guest nodes " + std::to_string(owner[cpu]) +
                             " and " + std::to_string(node.guest_numa_id));
            owner[cpu] = node.guest_numa_id;
        }
    for (uint32_t cpu = 0; cpu < vcpus; ++cpu) {
        if (owner[cpu] >= 0) continue;
        if (config.nodes.size() != 1)
            return usage("vCPU " + std::to_string(cpu) + " is in no guest node (with " +
                         plural(static_cast<uint32_t>(config.nodes.size()), "node") +
                         " every vCPU must be listed in a --numa cpus=)");
        config.nodes.front().cpus.push_back(cpu);
    }
    return {};
}

// One host pool per guest node (vmm/memory/host_pool.h): its zones share host
// nodes and policy, and its demand zones all have a quota or none has.
Status check_node_pool(const MemoryConfig& config, const NumaNodeConfig& node) {
    const ZoneConfig* first = nullptr;
    const ZoneConfig* first_demand = nullptr;
    for (const std::string& id : node.memory_zones) {
        const ZoneConfig* zone = config.find_zone(id);
        if (first == nullptr) first = zone;
        if (zone_host_nodes(*zone) != zone_host_nodes(*first) || effective_policy(*zone) != effective_policy(*first))
            return usage(node_name(node) + ": memory zones " + quote(first->id) + " and " + quote(zone->id) +
                         " must have the same host nodes and policy (one host pool per guest node)");
        if (zone->backend != ZoneBackend::Demand) continue;
        if (first_demand == nullptr) first_demand = zone;
        if ((zone->quota == 0) != (first_demand->quota == 0))
            return usage(node_name(node) + ": demand zones " + quote(first_demand->id) + " and " + quote(zone->id) +
                         " must all have a quota or none (the node's quota is their sum)");
    }
    return {};
}

Status check_fallback(const MemoryConfig& config) {
    for (const NumaNodeConfig& node : config.nodes) {
        if (node.fallback.empty()) continue;
        if (auto st = detail::check_u32_values(node.fallback, kMaxGuestNumaNodes, "guest node"); !st)
            return mm::Unexpected<Error>{st.error().with_context(node_name(node) + ": fallback")};
        if (node.memory_zones.empty())
            return usage(node_name(node) + ": fallback given but the node has no memory zones");
        for (const std::string& id : node.memory_zones)
            if (effective_policy(*config.find_zone(id)) != ZonePolicy::Preferred)
                return usage(node_name(node) + ": fallback needs policy=preferred, but memory zone " + quote(id) +
                             " has policy=" + std::string(to_string(effective_policy(*config.find_zone(id)))));
        for (uint32_t other : node.fallback) {
            const NumaNodeConfig* target = config.find_node(other);
            if (other == node.guest_numa_id) return usage(node_name(node) + ": fallback lists the node itself");
            if (target == nullptr)
                return usage(node_name(node) + ": fallback names guest node " + std::to_string(other) +
                             ", which does not exist");
            if (target->memory_zones.empty())
                return usage(node_name(node) + ": fallback guest node " + std::to_string(other) + " has no memory");
        }
    }
    return {};
}

}  // namespace

Expected<MemoryConfig> resolve_memory_config(MemoryConfig config, const TopologyLimits& limits) {
    PV_TRY(check_limits(limits));
    if (auto st = detail::check_fault_around_pages(config.fault_around.pages); !st)
        return mm::Unexpected<Error>{st.error().with_context("fault-around pages")};
    PV_TRY(check_zones(config, limits));
    if (config.nodes.empty()) {
        NumaNodeConfig node;
        for (const ZoneConfig& zone : config.zones) node.memory_zones.push_back(zone.id);
        config.nodes.push_back(std::move(node));
    }
    PV_TRY(check_node_zones(config));
    PV_TRY(check_node_cpus(config, limits.vcpus));
    for (const NumaNodeConfig& node : config.nodes) PV_TRY(check_node_pool(config, node));
    PV_TRY(check_fallback(config));
    return config;
}

std::vector<NodePoolSpec> node_pools(const MemoryConfig& config) {
    std::vector<NodePoolSpec> pools(config.nodes.size());
    for (const NumaNodeConfig& node : config.nodes) {
        if (node.guest_numa_id >= pools.size()) continue;  // not resolved: ids must be 0..n-1
        NodePoolSpec& pool = pools[node.guest_numa_id];
        pool.guest_numa_id = node.guest_numa_id;
        pool.fallback = node.fallback;
        for (const std::string& id : node.memory_zones) {
            const ZoneConfig* zone = config.find_zone(id);
            if (zone == nullptr) continue;
            pool.host_nodes = zone_host_nodes(*zone);
            pool.policy = effective_policy(*zone);
            pool.size += zone->size;
            pool.quota += zone->quota;
        }
    }
    return pools;
}

}  // namespace pv::memory
