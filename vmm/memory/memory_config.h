// Guest memory / NUMA topology configuration: the Cloud Hypervisor style flag
// values (--memory-zone, --numa, with QEMU's host-nodes=/policy= aliases), the
// equivalent JSON ("memory" section), validation of the whole topology and
// placement of the zones in the guest-physical RAM layout. See
// docs/memory-config.md for the syntax and every rule.
//
// Flow for the run loop:
//   MemoryConfig cfg;
//   for each --memory-zone s: PV_TRY_ASSIGN(auto z, parse_memory_zone(s)); cfg.zones.push_back(z);
//   for each --numa s:        PV_TRY_ASSIGN(auto n, parse_numa_node(s));   cfg.nodes.push_back(n);
//   --fault-around s:         PV_TRY_ASSIGN(cfg.fault_around, parse_fault_around(s));
//   (or a config file:        PV_TRY_ASSIGN(cfg, parse_memory_config_json(text));)
//   PV_TRY_ASSIGN(cfg, resolve_memory_config(std::move(cfg), limits));  // defaults + validation
//   place_zones(cfg) -> GPA pieces (one memslot each); node_pools(cfg) -> one host pool per guest node.
// Every error is ErrorKind::Usage with one line naming the flag or JSON key and
// the bad value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "vmm/base/error.h"

namespace pv::memory {

// How a zone's host memory is populated.
enum class ZoneBackend {
    Eager,   // anonymous host memory; the kernel fills first touches (prefault=on populates it all at start)
    Demand,  // first touch resolved by pagevisor's userfaultfd fault server (quota, statistics, fault-around)
};

// Host NUMA memory policy for a zone (mbind modes).
enum class ZonePolicy {
    Default,     // no mbind: with host nodes given this means bind (Cloud Hypervisor's host_numa_node)
    Bind,        // only the listed host nodes; exhaustion is an error
    Preferred,   // one host node first, then the owning guest node's fallback order
    Interleave,  // pages spread round-robin over the listed host nodes
};

inline constexpr uint32_t kMaxGuestNumaNodes = 64;
inline constexpr uint32_t kMaxHostNumaNodes = 1024;          // libnuma's usual MAX_NUMNODES
inline constexpr uint64_t kMinZoneSize = uint64_t(2) << 20;  // one 2 MiB huge page
inline constexpr size_t kMaxZoneIdLength = 64;
inline constexpr uint32_t kDefaultFaultAroundPages = 16;
inline constexpr uint32_t kMaxFaultAroundPages = 512;  // 2 MiB

struct ZoneConfig {
    std::string id;     // [A-Za-z0-9_.-]{1,64}, unique
    uint64_t size = 0;  // bytes, page aligned, >= kMinZoneSize
    ZoneBackend backend = ZoneBackend::Eager;
    std::optional<uint32_t> host_numa_node;  // Cloud Hypervisor's single host node
    std::vector<uint32_t> host_nodes;        // QEMU's host-nodes set (sorted, unique); exclusive with the above
    ZonePolicy policy = ZonePolicy::Default;
    uint64_t quota = 0;     // bytes of host memory the zone may commit; 0 = none (demand only)
    bool prefault = false;  // populate everything at start (eager only)

    bool operator==(const ZoneConfig&) const = default;
};

struct NumaNodeConfig {
    uint32_t guest_numa_id = 0;             // < kMaxGuestNumaNodes, unique
    std::vector<uint32_t> cpus;             // vCPU indices, in the order given
    std::vector<std::string> memory_zones;  // zone ids
    std::vector<uint32_t> fallback;         // other guest node ids, in order (preferred policy only)

    bool operator==(const NumaNodeConfig&) const = default;
};

struct FaultAroundConfig {
    bool enabled = true;
    uint32_t pages = kDefaultFaultAroundPages;  // power of two in [1, kMaxFaultAroundPages]

    bool operator==(const FaultAroundConfig&) const = default;
};

struct MemoryConfig {
    std::vector<ZoneConfig> zones;  // in guest-physical order (see place_zones)
    std::vector<NumaNodeConfig> nodes;
    FaultAroundConfig fault_around;

    [[nodiscard]] uint64_t total_size() const;
    [[nodiscard]] const ZoneConfig* find_zone(std::string_view id) const;
    [[nodiscard]] const NumaNodeConfig* find_node(uint32_t guest_numa_id) const;
    // The guest node whose memory_zones lists `zone_id` (resolved configs only).
    [[nodiscard]] const NumaNodeConfig* node_of_zone(std::string_view zone_id) const;

    bool operator==(const MemoryConfig&) const = default;
};

// What the topology is validated against.
struct TopologyLimits {
    uint32_t vcpus = 1;                // [1, layout::kMaxVcpus]
    uint32_t host_nodes = 1;           // numa_num_configured_nodes() (1 without libnuma support)
    std::optional<uint64_t> ram_size;  // --memory when given: the default zone's size; must equal the zones' total
};

// --memory-zone value: "id=mem0,size=1G,host_numa_node=0,backend=demand,policy=bind,quota=512M,prefault=off"
// (also host-nodes=0-1 / host_nodes=[0-1,3], repeatable host-nodes appends).
Expected<ZoneConfig> parse_memory_zone(std::string_view spec);
// --numa value: "guest_numa_id=0,cpus=[0-1],memory_zones=[mem0],fallback=[1]".
Expected<NumaNodeConfig> parse_numa_node(std::string_view spec);
// --fault-around value: "on", "off", "pages=N" (N a power of two in [1, 512]).
Expected<FaultAroundConfig> parse_fault_around(std::string_view spec);

// A whole JSON document {"memory": {...}}; any other top-level key is an error.
Expected<MemoryConfig> parse_memory_config_json(std::string_view text);
// The "memory" object itself (for a larger config file); `path` prefixes errors.
Expected<MemoryConfig> memory_config_from_json(const nlohmann::json& memory, const std::string& path = "memory");
// The "memory" object; memory_config_from_json(to_json(c)) == c.
nlohmann::json to_json(const MemoryConfig& config);
// {"memory": to_json(config)} as text, pretty-printed with `indent` (-1: one line).
std::string to_json_text(const MemoryConfig& config, int indent = -1);

// Fills the defaults and validates the whole topology (rules in docs/memory-config.md):
//  - no zones: one zone "mem0" of limits.ram_size (eager backend); no nodes: one node 0 owning every zone;
//  - vCPUs listed nowhere go to the node when there is exactly one, else it is an error.
// The result has guest node ids 0..n-1, every vCPU in exactly one node, every zone
// in exactly one node, and the zones of a node agreeing on host nodes and policy.
Expected<MemoryConfig> resolve_memory_config(MemoryConfig config, const TopologyLimits& limits);

// The host pool of one guest node (vmm/memory/host_pool.h PoolConfig), from a
// resolved config: its zones' common host nodes and effective policy, the sum of
// its zones' sizes and quotas (0 = no quota), and its fallback order.
struct NodePoolSpec {
    uint32_t guest_numa_id = 0;
    std::vector<uint32_t> host_nodes;
    ZonePolicy policy = ZonePolicy::Default;
    uint64_t size = 0;
    uint64_t quota = 0;
    std::vector<uint32_t> fallback;

    bool operator==(const NodePoolSpec&) const = default;
};
// Indexed by guest_numa_id (0..n-1).
std::vector<NodePoolSpec> node_pools(const MemoryConfig& config);

// The host nodes a zone draws from (host_numa_node or host_nodes; empty = any).
std::vector<uint32_t> zone_host_nodes(const ZoneConfig& zone);
// The policy to apply: Default with host nodes is Bind.
ZonePolicy effective_policy(const ZoneConfig& zone);

// One guest-physical piece of a zone. Zones are laid out in order over the RAM
// layout (vmm/abi/layout.h): [0, kLowRamLimit) then [k4GiB, ...); a zone that
// crosses kLowRamLimit is split in two pieces.
struct ZonePiece {
    size_t zone_index = 0;
    uint64_t gpa = 0;
    uint64_t size = 0;
    uint64_t zone_offset = 0;  // offset of this piece inside its zone

    bool operator==(const ZonePiece&) const = default;
};
std::vector<ZonePiece> place_zones(const MemoryConfig& config);

std::string_view to_string(ZoneBackend backend);
std::string_view to_string(ZonePolicy policy);
// A size as the shortest exact "<n>[K|M|G|T]" (e.g. "1G", "1536M"); parses back with the zone syntax.
std::string format_exact_size(uint64_t bytes);

}  // namespace pv::memory
