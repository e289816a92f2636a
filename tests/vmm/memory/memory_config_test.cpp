// Memory/NUMA configuration: flag syntax, JSON, topology validation, placement.
#include "vmm/memory/memory_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "tests/support/seed.h"
#include "vmm/abi/layout.h"

namespace pv::memory {
namespace {

constexpr uint64_t kMiB = uint64_t(1) << 20;
constexpr uint64_t kGiB = uint64_t(1) << 30;

// ---------------------------------------------------------------- flag syntax

TEST(MemoryZoneSpec, ParsesEveryKey) {
    auto z = parse_memory_zone("id=mem0,size=1G,host_numa_node=0,backend=demand,policy=bind,quota=512M,prefault=off");
    ASSERT_TRUE(z.has_value()) << z.error().message;
    EXPECT_EQ(z->id, "mem0");
    EXPECT_EQ(z->size, kGiB);
    EXPECT_EQ(z->host_numa_node, 0u);
    EXPECT_TRUE(z->host_nodes.empty());
    EXPECT_EQ(z->backend, ZoneBackend::Demand);
    EXPECT_EQ(z->policy, ZonePolicy::Bind);
    EXPECT_EQ(z->quota, 512 * kMiB);
    EXPECT_FALSE(z->prefault);
}

TEST(MemoryZoneSpec, DefaultsWhenOnlyIdAndSize) {
    auto z = parse_memory_zone("size=64M,id=a");
    ASSERT_TRUE(z.has_value()) << z.error().message;
    EXPECT_EQ(*z, (ZoneConfig{"a", 64 * kMiB, ZoneBackend::Eager, std::nullopt, {}, ZonePolicy::Default, 0, false}));
}

TEST(MemoryZoneSpec, QemuHostNodesAliases) {
    struct Case {
        const char* spec;
        std::vector<uint32_t> nodes;
        ZonePolicy policy;
    };
    const Case cases[] = {
        {"id=a,size=4M,host-nodes=0-1,policy=interleave", {0, 1}, ZonePolicy::Interleave},
        {"id=a,size=4M,host-nodes=3,host-nodes=0-1,policy=bind", {0, 1, 3}, ZonePolicy::Bind},  // QEMU appends
        {"id=a,size=4M,host_nodes=[5,0-2],policy=preferred", {0, 1, 2, 5}, ZonePolicy::Preferred},
        {"id=a,size=4M,host-nodes=[2]", {2}, ZonePolicy::Default},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.spec);
        auto z = parse_memory_zone(c.spec);
        ASSERT_TRUE(z.has_value()) << z.error().message;
        EXPECT_EQ(z->host_nodes, c.nodes);
        EXPECT_EQ(z->policy, c.policy);
    }
}

TEST(MemoryZoneSpec, SizesAndSwitches) {
    struct Case {
        const char* spec;
        uint64_t size;
        bool prefault;
    };
    const Case cases[] = {
        {"id=a,size=2M", 2 * kMiB, false},
        {"id=a,size=4096K,prefault=on", 4 * kMiB, true},
        {"id=a,size=1GiB,prefault=true", kGiB, true},
        {"id=a,size=3145728,prefault=no", 3 * kMiB, false},
        {"id=a,size=1t", kGiB * 1024, false},
        {"id=a,size=8mb,prefault=yes", 8 * kMiB, true},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.spec);
        auto z = parse_memory_zone(c.spec);
        ASSERT_TRUE(z.has_value()) << z.error().message;
        EXPECT_EQ(z->size, c.size);
        EXPECT_EQ(z->prefault, c.prefault);
    }
}

// Each invalid spec is a one-line Usage error naming the flag and containing `needle`.
struct BadSpec {
    const char* spec;
    const char* needle;
};

void expect_usage_error(const Error& e, const char* needle) {
    EXPECT_EQ(e.kind, ErrorKind::Usage);
    EXPECT_NE(e.message.find(needle), std::string::npos) << e.message;
    EXPECT_EQ(e.message.find('\n'), std::string::npos) << e.message;
}

TEST(MemoryZoneSpec, RejectsInvalidSpecs) {
    const BadSpec cases[] = {
        {"", "--memory-zone: empty value"},
        {"id=a", "missing size="},
        {"size=1G", "missing id="},
        {"id=a,size=1X", "--memory-zone 'size=1X': unknown unit"},
        {"id=a,size=G", "expected a size"},
        {"id=a,size=1M", "below the minimum zone size"},
        {"id=a,size=2097153", "not a multiple of 4 KiB"},
        {"id=a,size=2T", "above the maximum"},
        {"id=a,size=99999999999999999999", "too large"},
        {"id=a,size=16777216T", "too large"},
        {"id=a,size=1G,size=2G", "'size' is given twice"},
        {"id=a,size=1G,hugepages=on", "--memory-zone 'hugepages=on': unknown key"},
        {"id=a b,size=1G", "invalid zone id"},
        {"id=,size=1G", "invalid zone id"},
        {"id=a,size=1G,backend=readonly", "unknown backend 'readonly'"},
        {"id=a,size=1G,policy=local", "unknown policy 'local'"},
        {"id=a,size=1G,prefault=maybe", "expected on or off"},
        {"id=a,size=1G,host_numa_node=-1", "expected an unsigned integer"},
        {"id=a,size=1G,host_numa_node=4294967296", "out of range"},
        {"id=a,size=1G,host_numa_node=1024", "out of range"},
        {"id=a,size=1G,host-nodes=1-0", "reversed"},
        {"id=a,size=1G,host-nodes=0-4294967295", "out of range"},
        {"id=a,size=1G,host-nodes=0,host-nodes=0", "host node 0 is listed twice"},
        {"id=a,size=1G,quota=5", "not a multiple of 4 KiB"},
        {"id=a,size=1G,,", "expected key=value"},
        {"id=a,size=1G,host-nodes=[0", "unmatched '['"},
        {"id=a,size=1G,host-nodes=0]", "unmatched ']'"},
        {"id=a,size=1G,host-nodes=[[0]]", "nested '['"},
        {"=a", "expected key=value"},
        {"id=a\n,size=1G", "invalid zone id 'a\\x0A'"},
    };
    for (const BadSpec& c : cases) {
        SCOPED_TRACE(c.spec);
        auto z = parse_memory_zone(c.spec);
        ASSERT_FALSE(z.has_value());
        expect_usage_error(z.error(), c.needle);
        EXPECT_EQ(z.error().message.rfind("--memory-zone", 0), 0u) << z.error().message;
    }
}

TEST(NumaSpec, ParsesCloudHypervisorLists) {
    auto n = parse_numa_node("guest_numa_id=1,cpus=[0-3,5],memory_zones=[mem0,mem1],fallback=[0,2]");
    ASSERT_TRUE(n.has_value()) << n.error().message;
    EXPECT_EQ(*n, (NumaNodeConfig{1, {0, 1, 2, 3, 5}, {"mem0", "mem1"}, {0, 2}}));

    auto single = parse_numa_node("guest_numa_id=0,cpus=2,memory_zones=a");
    ASSERT_TRUE(single.has_value()) << single.error().message;
    EXPECT_EQ(*single, (NumaNodeConfig{0, {2}, {"a"}, {}}));

    auto empty = parse_numa_node("guest_numa_id=3,cpus=[],memory_zones=[]");
    ASSERT_TRUE(empty.has_value()) << empty.error().message;
    EXPECT_EQ(*empty, (NumaNodeConfig{3, {}, {}, {}}));
}

TEST(NumaSpec, RejectsInvalidSpecs) {
    const BadSpec cases[] = {
        {"cpus=[0]", "missing guest_numa_id="},
        {"guest_numa_id=x", "expected an unsigned integer, got 'x'"},
        {"guest_numa_id=64", "out of range (the maximum is 63)"},
        {"guest_numa_id=0,cpus=[0-32]", "out of range (the maximum is 31)"},
        {"guest_numa_id=0,cpus=[1,0-2]", "vCPU 1 is listed twice"},
        {"guest_numa_id=0,cpus=[0,,1]", "expected an unsigned integer"},
        {"guest_numa_id=0,cpus=[a-b]", "expected an unsigned integer"},
        {"guest_numa_id=0,memory_zones=[a,b c]", "invalid zone id"},
        {"guest_numa_id=0,fallback=[64]", "out of range"},
        {"guest_numa_id=0,distances=[1@20]", "unknown key"},
        {"guest_numa_id=0,guest_numa_id=1", "given twice"},
    };
    for (const BadSpec& c : cases) {
        SCOPED_TRACE(c.spec);
        auto n = parse_numa_node(c.spec);
        ASSERT_FALSE(n.has_value());
        expect_usage_error(n.error(), c.needle);
        EXPECT_EQ(n.error().message.rfind("--numa", 0), 0u) << n.error().message;
    }
}

TEST(FaultAroundSpec, ParsesAndRejects) {
    EXPECT_EQ(*parse_fault_around("on"), (FaultAroundConfig{true, kDefaultFaultAroundPages}));
    EXPECT_EQ(*parse_fault_around("off"), (FaultAroundConfig{false, kDefaultFaultAroundPages}));
    EXPECT_EQ(*parse_fault_around("pages=64"), (FaultAroundConfig{true, 64}));
    EXPECT_EQ(*parse_fault_around("pages=1"), (FaultAroundConfig{true, 1}));
    for (const char* bad : {"pages=0", "pages=3", "pages=1024", "pages=", "maybe", ""}) {
        SCOPED_TRACE(bad);
        auto r = parse_fault_around(bad);
        ASSERT_FALSE(r.has_value());
        expect_usage_error(r.error(), "--fault-around");
    }
}

// ---------------------------------------------------------------- topology

MemoryConfig from_flags(const std::vector<std::string>& zones, const std::vector<std::string>& numa) {
    MemoryConfig c;
    for (const auto& z : zones) {
        auto r = parse_memory_zone(z);
        EXPECT_TRUE(r.has_value()) << z << ": " << r.error().message;
        if (r) c.zones.push_back(*r);
    }
    for (const auto& n : numa) {
        auto r = parse_numa_node(n);
        EXPECT_TRUE(r.has_value()) << n << ": " << r.error().message;
        if (r) c.nodes.push_back(*r);
    }
    return c;
}

TEST(ResolveMemoryConfig, DefaultTopologyIsOneEagerZoneOnOneNode) {
    auto r = resolve_memory_config({}, TopologyLimits{.vcpus = 2, .host_nodes = 1, .ram_size = 256 * kMiB});
    ASSERT_TRUE(r.has_value()) << r.error().message;
    ASSERT_EQ(r->zones.size(), 1u);
    EXPECT_EQ(r->zones[0],
              (ZoneConfig{"mem0", 256 * kMiB, ZoneBackend::Eager, std::nullopt, {}, ZonePolicy::Default, 0, false}));
    ASSERT_EQ(r->nodes.size(), 1u);
    EXPECT_EQ(r->nodes[0], (NumaNodeConfig{0, {0, 1}, {"mem0"}, {}}));
    EXPECT_EQ(r->fault_around, FaultAroundConfig{});
}

TEST(ResolveMemoryConfig, ZonesWithoutNumaGoToOneNode) {
    auto c = from_flags({"id=a,size=64M", "id=b,size=32M,backend=demand"}, {});
    auto r = resolve_memory_config(c, TopologyLimits{.vcpus = 3, .host_nodes = 1, .ram_size = std::nullopt});
    ASSERT_TRUE(r.has_value()) << r.error().message;
    ASSERT_EQ(r->nodes.size(), 1u);
    EXPECT_EQ(r->nodes[0], (NumaNodeConfig{0, {0, 1, 2}, {"a", "b"}, {}}));
    EXPECT_EQ(r->total_size(), 96 * kMiB);
    EXPECT_EQ(r->node_of_zone("b"), &r->nodes[0]);
}

TEST(ResolveMemoryConfig, TwoGuestNodesOnOneHostNode) {
    auto c = from_flags({"id=m0,size=64M,host_numa_node=0,policy=preferred,backend=demand,quota=32M",
                         "id=m1,size=64M,host_numa_node=0,policy=preferred"},
                        {"guest_numa_id=0,cpus=[0],memory_zones=[m0],fallback=[1]",
                         "guest_numa_id=1,cpus=[1],memory_zones=[m1],fallback=[0]"});
    auto r = resolve_memory_config(c, TopologyLimits{.vcpus = 2, .host_nodes = 1, .ram_size = 128 * kMiB});
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(*r, c);  // nothing to fill in
    EXPECT_EQ(r->node_of_zone("m1")->guest_numa_id, 1u);
    EXPECT_EQ(effective_policy(r->zones[0]), ZonePolicy::Preferred);
}

TEST(ResolveMemoryConfig, UnlistedCpusGoToTheOnlyNode) {
    auto c = from_flags({"id=a,size=64M"}, {"guest_numa_id=0,cpus=[3],memory_zones=[a]"});
    auto r = resolve_memory_config(c, TopologyLimits{.vcpus = 4, .host_nodes = 1, .ram_size = std::nullopt});
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->nodes[0].cpus, (std::vector<uint32_t>{3, 0, 1, 2}));
}

TEST(ResolveMemoryConfig, HostNodeDefaultPolicyMeansBind) {
    auto z = parse_memory_zone("id=a,size=64M,host_numa_node=1");
    ASSERT_TRUE(z.has_value());
    EXPECT_EQ(effective_policy(*z), ZonePolicy::Bind);
    EXPECT_EQ(zone_host_nodes(*z), std::vector<uint32_t>{1});
    auto unbound = parse_memory_zone("id=a,size=64M");
    EXPECT_EQ(effective_policy(*unbound), ZonePolicy::Default);
    EXPECT_TRUE(zone_host_nodes(*unbound).empty());
}

struct BadTopology {
    std::vector<std::string> zones;
    std::vector<std::string> numa;
    TopologyLimits limits;
    const char* needle;
};

TEST(ResolveMemoryConfig, RejectsInvalidTopologies) {
    const TopologyLimits one{.vcpus = 2, .host_nodes = 1, .ram_size = std::nullopt};
    const TopologyLimits two_hosts{.vcpus = 2, .host_nodes = 2, .ram_size = std::nullopt};
    const std::string big = "id=a,size=64M";
    const BadTopology cases[] = {
        {{}, {}, one, "no guest memory size"},
        {{big, "id=a,size=64M"}, {}, one, "memory zone id 'a' is used twice"},
        {{big},
         {},
         TopologyLimits{.vcpus = 2, .host_nodes = 1, .ram_size = 128 * kMiB},
         "--memory 128 MiB differs from the memory zones' total 64 MiB"},
        {{"id=a,size=32M"}, {}, one, "below the minimum 48 MiB"},
        {{"id=a,size=16M", "id=b,size=64M"}, {}, one, "the first zone (at guest-physical 0) must be at least 32 MiB"},
        {{"id=a,size=1T", "id=b,size=2M"}, {}, one, "above the maximum 1 TiB"},
        {{"id=a,size=64M,host_numa_node=2"},
         {},
         two_hosts,
         "memory zone 'a': host node 2 does not exist (the host has 2 NUMA nodes)"},
        {{"id=a,size=64M,host-nodes=0-1"}, {}, one, "host node 1 does not exist (the host has 1 NUMA node)"},
        {{"id=a,size=64M,host_numa_node=0,host-nodes=0"}, {}, one, "not both"},
        {{"id=a,size=64M,policy=bind"}, {}, one, "policy=bind needs host_numa_node or host-nodes"},
        {{"id=a,size=64M,host-nodes=0-1,policy=preferred"},
         {},
         two_hosts,
         "policy=preferred takes exactly one host node"},
        {{"id=a,size=64M,quota=128M,backend=demand"}, {}, one, "quota=128M exceeds size=64M"},
        {{"id=a,size=64M,quota=32M"}, {}, one, "quota=32M needs backend=demand"},
        {{"id=a,size=64M,prefault=on,backend=demand"}, {}, one, "prefault=on needs backend=eager"},
        {{big}, {"guest_numa_id=0,memory_zones=[a,a]"}, one, "listed by guest nodes 0 and 0"},
        {{big}, {"guest_numa_id=0,memory_zones=[b]"}, one, "guest node 0: memory_zones names unknown zone 'b'"},
        {{big, "id=b,size=4M"}, {"guest_numa_id=0,memory_zones=[a]"}, one, "memory zone 'b' belongs to no guest node"},
        {{big}, {"guest_numa_id=0,memory_zones=[a]", "guest_numa_id=0"}, one, "guest node 0 is defined twice"},
        {{big}, {"guest_numa_id=0,memory_zones=[a],cpus=[2]"}, one, "cpus lists vCPU 2 but the guest has 2 vCPUs"},
        {{big},
         {"guest_numa_id=0,memory_zones=[a],cpus=[0]", "guest_numa_id=1,cpus=[0]"},
         one,
         "vCPU 0 is in guest nodes 0 and 1"},
        {{big},
         {"guest_numa_id=0,memory_zones=[a],cpus=[0]", "guest_numa_id=1"},
         one,
         "vCPU 1 is in no guest node (with 2 nodes"},
        {{big},
         {"guest_numa_id=0,memory_zones=[a],cpus=[0-1],fallback=[1]", "guest_numa_id=1"},
         one,
         "fallback needs policy=preferred, but memory zone 'a' has policy=default"},
        {{"id=a,size=64M,host_numa_node=0"},
         {"guest_numa_id=0,memory_zones=[a],cpus=[0-1],fallback=[1]", "guest_numa_id=1"},
         one,
         "has policy=bind"},
        {{"id=a,size=64M,host_numa_node=0,policy=preferred"},
         {"guest_numa_id=0,memory_zones=[a],cpus=[0-1],fallback=[0]"},
         one,
         "fallback lists the node itself"},
        {{"id=a,size=64M,host_numa_node=0,policy=preferred"},
         {"guest_numa_id=0,memory_zones=[a],cpus=[0-1],fallback=[5]"},
         one,
         "fallback names guest node 5, which does not exist"},
        {{"id=a,size=64M,host_numa_node=0,policy=preferred"},
         {"guest_numa_id=0,memory_zones=[a],cpus=[0-1],fallback=[1]", "guest_numa_id=1"},
         one,
         "fallback guest node 1 has no memory"},
        {{big},
         {"guest_numa_id=1,cpus=[0-1],fallback=[0]", "guest_numa_id=0,memory_zones=[a]"},
         one,
         "guest node 1: fallback given but the node has no memory zones"},
        {{big},
         {"guest_numa_id=2,memory_zones=[a]"},
         one,
         "guest node 2: guest_numa_id must be below the number of guest nodes (1)"},
        {{big, "id=b,size=4M,host_numa_node=0"},
         {},
         one,
         "memory zones 'a' and 'b' must have the same host nodes and policy"},
        {{"id=a,size=64M,host-nodes=0-1,policy=interleave", "id=b,size=4M,host-nodes=0,policy=interleave"},
         {},
         two_hosts,
         "memory zones 'a' and 'b' must have the same host nodes"},
        {{"id=a,size=64M,backend=demand,quota=4M", "id=b,size=4M,backend=demand"},
         {},
         one,
         "demand zones 'a' and 'b' must all have a quota or none"},
        {{big},
         {},
         TopologyLimits{.vcpus = 0, .host_nodes = 1, .ram_size = std::nullopt},
         "vCPU count 0 is out of range"},
        {{big},
         {},
         TopologyLimits{.vcpus = 33, .host_nodes = 1, .ram_size = std::nullopt},
         "vCPU count 33 is out of range"},
    };
    for (const BadTopology& c : cases) {
        SCOPED_TRACE(c.needle);
        auto r = resolve_memory_config(from_flags(c.zones, c.numa), c.limits);
        ASSERT_FALSE(r.has_value());
        expect_usage_error(r.error(), c.needle);
    }
}

TEST(ResolveMemoryConfig, ChecksFieldsSetDirectly) {
    // Configs built in code skip the parsers: resolve re-checks every field.
    MemoryConfig c;
    c.zones.push_back(
        ZoneConfig{"a", 64 * kMiB + 1, ZoneBackend::Eager, std::nullopt, {}, ZonePolicy::Default, 0, false});
    const TopologyLimits limits{.vcpus = 1, .host_nodes = 1, .ram_size = std::nullopt};
    auto r = resolve_memory_config(c, limits);
    ASSERT_FALSE(r.has_value());
    expect_usage_error(r.error(), "memory zone 'a': size: 67108865 bytes is not a multiple of 4 KiB");
    c.zones[0].size = 64 * kMiB;
    c.fault_around.pages = 6;
    r = resolve_memory_config(c, limits);
    ASSERT_FALSE(r.has_value());
    expect_usage_error(r.error(), "fault-around pages: 6 is not a power of two");
    c.fault_around.pages = 8;
    c.zones[0].id = "";
    r = resolve_memory_config(c, limits);
    ASSERT_FALSE(r.has_value());
    expect_usage_error(r.error(), "invalid zone id ''");
}

TEST(NodePools, OnePoolPerGuestNodeInIdOrder) {
    auto c = from_flags(
        {"id=a,size=64M,backend=demand,quota=16M,host_numa_node=1,policy=preferred",
         "id=b,size=32M,host_numa_node=1,policy=preferred,prefault=on",
         "id=c,size=8M,backend=demand,quota=4M,host_numa_node=1,policy=preferred",
         "id=d,size=16M,host-nodes=0-1,policy=interleave"},
        {"guest_numa_id=1,cpus=[1],memory_zones=[d]", "guest_numa_id=0,cpus=[0],memory_zones=[a,b,c],fallback=[1]"});
    auto r = resolve_memory_config(c, TopologyLimits{.vcpus = 2, .host_nodes = 2, .ram_size = std::nullopt});
    ASSERT_TRUE(r.has_value()) << r.error().message;
    const std::vector<NodePoolSpec> expected = {
        {0, {1}, ZonePolicy::Preferred, 104 * kMiB, 20 * kMiB, {1}},
        {1, {0, 1}, ZonePolicy::Interleave, 16 * kMiB, 0, {}},
    };
    EXPECT_EQ(node_pools(*r), expected);
}

// ---------------------------------------------------------------- placement

TEST(PlaceZones, FollowsTheRamLayoutAroundTheHole) {
    auto c = from_flags({"id=a,size=2G", "id=b,size=2G", "id=c,size=64M"}, {});
    auto pieces = place_zones(c);
    const std::vector<ZonePiece> expected = {
        {0, 0, 2 * kGiB, 0},
        {1, 2 * kGiB, layout::kLowRamLimit - 2 * kGiB, 0},
        {1, layout::k4GiB, 2 * kGiB - (layout::kLowRamLimit - 2 * kGiB), layout::kLowRamLimit - 2 * kGiB},
        {2, layout::k4GiB + 2 * kGiB - (layout::kLowRamLimit - 2 * kGiB), 64 * kMiB, 0},
    };
    EXPECT_EQ(pieces, expected);
}

TEST(PlaceZones, ExactlyThreeGiBStaysBelowTheHole) {
    auto c = from_flags({"id=a,size=3G", "id=b,size=4M"}, {});
    auto pieces = place_zones(c);
    ASSERT_EQ(pieces.size(), 2u);
    EXPECT_EQ(pieces[0], (ZonePiece{0, 0, 3 * kGiB, 0}));
    EXPECT_EQ(pieces[1], (ZonePiece{1, layout::k4GiB, 4 * kMiB, 0}));
}

}  // namespace
}  // namespace pv::memory
