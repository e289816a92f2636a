// Memory/NUMA configuration: JSON reading and errors, round trips (fixed and
// randomized), flag/JSON equivalence, and garbage input that must never crash.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tests/support/seed.h"
#include "vmm/abi/layout.h"
#include "vmm/memory/memory_config.h"

namespace pv::memory {
namespace {

constexpr uint64_t kMiB = uint64_t(1) << 20;

const char* const kExampleJson = R"({"memory": {
  "zones": [
    {"id": "mem0", "size": "1G", "host_numa_node": 0, "backend": "demand", "policy": "preferred", "quota": "512M"},
    {"id": "mem1", "size": 268435456, "host_nodes": [0], "policy": "preferred", "prefault": true}
  ],
  "numa": [
    {"guest_numa_id": 0, "cpus": [0, 1], "memory_zones": ["mem0"], "fallback": [1]},
    {"guest_numa_id": 1, "cpus": [2], "memory_zones": ["mem1"], "fallback": [0]}
  ],
  "fault_around": {"enabled": true, "pages": 32}
}})";

MemoryConfig example_from_flags() {
    MemoryConfig c;
    c.zones.push_back(
        *parse_memory_zone("id=mem0,size=1G,host_numa_node=0,backend=demand,policy=preferred,quota=512M"));
    c.zones.push_back(*parse_memory_zone("id=mem1,size=256M,host-nodes=0,policy=preferred,prefault=on"));
    c.nodes.push_back(*parse_numa_node("guest_numa_id=0,cpus=[0-1],memory_zones=[mem0],fallback=[1]"));
    c.nodes.push_back(*parse_numa_node("guest_numa_id=1,cpus=[2],memory_zones=[mem1],fallback=[0]"));
    c.fault_around = *parse_fault_around("pages=32");
    return c;
}

TEST(MemoryConfigJson, ExampleEqualsTheSameFlags) {
    auto parsed = parse_memory_config_json(kExampleJson);
    ASSERT_TRUE(parsed.has_value()) << parsed.error().message;
    EXPECT_EQ(*parsed, example_from_flags());
    auto resolved =
        resolve_memory_config(*parsed, TopologyLimits{.vcpus = 3, .host_nodes = 1, .ram_size = std::nullopt});
    ASSERT_TRUE(resolved.has_value()) << resolved.error().message;
    EXPECT_EQ(*resolved, *parsed);
}

TEST(MemoryConfigJson, RoundTripsThroughText) {
    const MemoryConfig c = example_from_flags();
    for (int indent : {-1, 2}) {
        auto back = parse_memory_config_json(to_json_text(c, indent));
        ASSERT_TRUE(back.has_value()) << back.error().message;
        EXPECT_EQ(*back, c);
    }
    auto j = to_json(c);
    EXPECT_EQ(j["zones"][0]["size"], "1G");
    EXPECT_EQ(j["zones"][1]["size"], "256M");
    EXPECT_EQ(j["zones"][0]["quota"], "512M");
    EXPECT_EQ(j["zones"][1]["host_nodes"], nlohmann::json::array({0}));
    EXPECT_FALSE(j["zones"][1].contains("host_numa_node"));
}

TEST(MemoryConfigJson, EmptyMemoryObjectIsTheDefault) {
    auto c = parse_memory_config_json(R"({"memory": {}})");
    ASSERT_TRUE(c.has_value()) << c.error().message;
    EXPECT_EQ(*c, MemoryConfig{});
}

TEST(MemoryConfigJson, SectionReaderUsesTheGivenPath) {
    auto r = memory_config_from_json(nlohmann::json{{"zones", 5}}, "vm.memory");
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().message, "config: vm.memory.zones: expected an array, got an unsigned integer");
}

struct BadJson {
    const char* text;
    const char* message;  // the exact message
};

TEST(MemoryConfigJson, ErrorsNameTheKeyPath) {
    const BadJson cases[] = {
        {R"([])", "config: (top level): expected an object, got an array"},
        {R"({})", "config: (top level): missing \"memory\""},
        {R"({"memory": {}, "cpus": 2})", "config: (top level): unknown key 'cpus' (known: memory)"},
        {R"({"memory": {"zone": []}})", "config: memory: unknown key 'zone' (known: zones, numa, fault_around)"},
        {R"({"memory": {"zones": [{"id": "a", "size": "1G"}, {"id": "b", "size": "1X"}]}})",
         "config: memory.zones[1].size: unknown unit in '1X' (use K, M, G or T)"},
        {R"({"memory": {"zones": [{"id": "a", "size": 4097}]}})",
         "config: memory.zones[0].size: 4097 bytes is not a multiple of 4 KiB"},
        {R"({"memory": {"zones": [{"id": "a", "size": -1}]}})",
         "config: memory.zones[0].size: expected a size (\"512M\" or a byte count), got a negative integer"},
        {R"({"memory": {"zones": [{"id": "a", "size": 1.5}]}})",
         "config: memory.zones[0].size: expected a size (\"512M\" or a byte count), got a fractional number"},
        {R"({"memory": {"zones": [{"id": "a"}]}})", "config: memory.zones[0]: missing \"size\""},
        {R"({"memory": {"zones": [{"size": "1G"}]}})", "config: memory.zones[0]: missing \"id\""},
        {R"({"memory": {"zones": [{"id": "a", "size": "1G", "sise": 1}]}})",
         "config: memory.zones[0]: unknown key 'sise' (known: id, size, backend, host_numa_node, host_nodes, policy, "
         "quota, prefault)"},
        {R"({"memory": {"zones": [{"id": 7, "size": "1G"}]}})",
         "config: memory.zones[0].id: expected a string, got an unsigned integer"},
        {R"({"memory": {"zones": [{"id": "a", "size": "1G", "backend": "lazy"}]}})",
         "config: memory.zones[0].backend: unknown backend 'lazy' (use eager or demand)"},
        {R"({"memory": {"zones": [{"id": "a", "size": "1G", "policy": "bind "}]}})",
         "config: memory.zones[0].policy: unknown policy 'bind ' (use default, bind, preferred or interleave)"},
        {R"({"memory": {"zones": [{"id": "a", "size": "1G", "prefault": "on"}]}})",
         "config: memory.zones[0].prefault: expected true or false, got a string"},
        {R"({"memory": {"zones": [{"id": "a", "size": "1G", "host_nodes": [0, 0]}]}})",
         "config: memory.zones[0].host_nodes: host node 0 is listed twice"},
        {R"({"memory": {"zones": [{"id": "a", "size": "1G", "host_numa_node": 99999}]}})",
         "config: memory.zones[0].host_numa_node: 99999 is out of range (the maximum is 1023)"},
        {R"({"memory": {"numa": [{"cpus": [0]}]}})", "config: memory.numa[0]: missing \"guest_numa_id\""},
        {R"({"memory": {"numa": [{"guest_numa_id": 0, "cpus": [0, "1"]}]}})",
         "config: memory.numa[0].cpus[1]: expected an unsigned integer, got a string"},
        {R"({"memory": {"numa": [{"guest_numa_id": 0, "cpus": [40]}]}})",
         "config: memory.numa[0].cpus[0]: 40 is out of range (the maximum is 31)"},
        {R"({"memory": {"numa": [{"guest_numa_id": 0, "memory_zones": ["a", "b c"]}]}})",
         "config: memory.numa[0].memory_zones[1]: invalid zone id 'b c' (1-64 of A-Z a-z 0-9 _ - .)"},
        {R"({"memory": {"numa": {}}})", "config: memory.numa: expected an array, got an object"},
        {R"({"memory": {"fault_around": {"pages": 3}}})",
         "config: memory.fault_around.pages: 3 is not a power of two in [1, 512]"},
        {R"({"memory": {"fault_around": {"enabled": 1}}})",
         "config: memory.fault_around.enabled: expected true or false, got an unsigned integer"},
        {R"({"memory": {"fault_around": "off"}})", "config: memory.fault_around: expected an object, got a string"},
    };
    for (const BadJson& c : cases) {
        SCOPED_TRACE(c.text);
        auto r = parse_memory_config_json(c.text);
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error().kind, ErrorKind::Usage);
        EXPECT_EQ(r.error().message, c.message);
    }
}

TEST(MemoryConfigJson, SyntaxErrorIsOneUsageLine) {
    for (const char* text : {"", "{", R"({"memory": })", "{\"memory\": {\"zones\": [\x01]}}", "\xff\xfe"}) {
        auto r = parse_memory_config_json(text);
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error().kind, ErrorKind::Usage);
        EXPECT_EQ(r.error().message.rfind("config: invalid JSON: ", 0), 0u) << r.error().message;
        for (char ch : r.error().message) EXPECT_TRUE(ch >= 0x20 && ch < 0x7F) << r.error().message;
    }
}

// ---------------------------------------------------------------- randomized

// Host-pool settings shared by the zones of one guest node.
struct RandomPool {
    ZonePolicy policy = ZonePolicy::Default;
    std::optional<uint32_t> host_numa_node;
    std::vector<uint32_t> host_nodes;
    bool quota = false;
};

RandomPool random_pool(std::mt19937_64& rng, uint32_t host_nodes) {
    RandomPool p;
    p.policy = static_cast<ZonePolicy>(rng() % 4);
    p.quota = rng() % 2 != 0;
    const bool wants_nodes = p.policy != ZonePolicy::Default || rng() % 2 != 0;
    if (!wants_nodes) return p;
    if (p.policy == ZonePolicy::Preferred || rng() % 2 != 0) {
        p.host_numa_node = static_cast<uint32_t>(rng() % host_nodes);
        return p;
    }
    for (uint32_t n = 0; n < host_nodes; ++n)
        if (rng() % 2 != 0 || (n + 1 == host_nodes && p.host_nodes.empty())) p.host_nodes.push_back(n);
    return p;
}

ZoneConfig random_zone(std::mt19937_64& rng, size_t index, const RandomPool& pool) {
    auto pick = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
    ZoneConfig z;
    z.id = (pick(2) != 0 ? "z" : "zone.") + std::to_string(index) + (pick(3) == 0 ? "_x-y" : "");
    z.size = (index == 0 ? 48 * kMiB : 2 * kMiB) + pick(64) * (pick(2) != 0 ? kMiB : layout::kPage);
    z.backend = pick(2) != 0 ? ZoneBackend::Demand : ZoneBackend::Eager;
    if (z.backend == ZoneBackend::Demand && pool.quota) z.quota = (1 + pick(z.size / layout::kPage)) * layout::kPage;
    if (z.backend == ZoneBackend::Eager) z.prefault = pick(2) != 0;
    z.policy = pool.policy;
    z.host_numa_node = pool.host_numa_node;
    z.host_nodes = pool.host_nodes;
    return z;
}

// A random config that resolve_memory_config accepts for `limits` (and leaves unchanged).
MemoryConfig random_valid_config(std::mt19937_64& rng, const TopologyLimits& limits) {
    auto pick = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
    MemoryConfig c;
    const size_t node_count = 1 + pick(4);
    const size_t zone_count = node_count + pick(4);
    // Node ids 0..n-1 in a random order; zones dealt so that every node owns at least one.
    std::vector<RandomPool> pools;
    for (size_t i = 0; i < node_count; ++i) {
        c.nodes.push_back(NumaNodeConfig{static_cast<uint32_t>(i), {}, {}, {}});
        pools.push_back(random_pool(rng, limits.host_nodes));
    }
    for (size_t i = 0; i < zone_count; ++i) {
        const size_t owner = i < node_count ? i : pick(node_count);
        c.zones.push_back(random_zone(rng, i, pools[owner]));
        c.nodes[owner].memory_zones.push_back(c.zones.back().id);
    }
    std::shuffle(c.nodes.begin(), c.nodes.end(), rng);
    for (uint32_t cpu = 0; cpu < limits.vcpus; ++cpu) c.nodes[pick(node_count)].cpus.push_back(cpu);
    for (NumaNodeConfig& node : c.nodes) {
        if (pools[node.guest_numa_id].policy != ZonePolicy::Preferred) continue;  // fallback only for preferred
        for (const NumaNodeConfig& other : c.nodes)
            if (other.guest_numa_id != node.guest_numa_id && pick(2) != 0) node.fallback.push_back(other.guest_numa_id);
    }
    c.fault_around = FaultAroundConfig{pick(2) != 0, uint32_t(1) << pick(10)};
    return c;
}

// The same zone as a --memory-zone value (keys in random order, both host-node spellings).
std::string zone_spec(const ZoneConfig& z, std::mt19937_64& rng) {
    std::vector<std::string> items = {"id=" + z.id,
                                      "size=" + format_exact_size(z.size),
                                      "backend=" + std::string(to_string(z.backend)),
                                      "policy=" + std::string(to_string(z.policy)),
                                      "quota=" + format_exact_size(z.quota),
                                      std::string("prefault=") + (z.prefault ? "on" : "off")};
    if (z.host_numa_node) items.push_back("host_numa_node=" + std::to_string(*z.host_numa_node));
    for (uint32_t n : z.host_nodes)
        items.push_back(rng() % 2 != 0 ? "host-nodes=" + std::to_string(n) : "host_nodes=[" + std::to_string(n) + "]");
    std::shuffle(items.begin(), items.end(), rng);
    std::string out;
    for (const auto& s : items) out += (out.empty() ? "" : ",") + s;
    return out;
}

template <class T>
std::string list(const std::vector<T>& values) {
    std::string out = "[";
    for (const auto& v : values) {
        if (out.size() > 1) out += ",";
        if constexpr (std::is_same_v<T, std::string>)
            out += v;
        else
            out += std::to_string(v);
    }
    return out + "]";
}

std::string node_spec(const NumaNodeConfig& n) {
    return "guest_numa_id=" + std::to_string(n.guest_numa_id) + ",cpus=" + list(n.cpus) +
           ",memory_zones=" + list(n.memory_zones) + ",fallback=" + list(n.fallback);
}

TEST(MemoryConfigRandomized, ValidConfigsRoundTripAndMatchTheirFlags) {
    const uint64_t seed = pv::test::test_seed(0x3c0f);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (int iter = 0; iter < 300; ++iter) {
        const TopologyLimits limits{.vcpus = static_cast<uint32_t>(1 + rng() % layout::kMaxVcpus),
                                    .host_nodes = static_cast<uint32_t>(1 + rng() % 4),
                                    .ram_size = std::nullopt};
        const MemoryConfig c = random_valid_config(rng, limits);
        auto resolved = resolve_memory_config(c, limits);
        ASSERT_TRUE(resolved.has_value()) << resolved.error().message << "\n" << to_json_text(c, 2);
        ASSERT_EQ(*resolved, c);

        auto back = parse_memory_config_json(to_json_text(c, iter % 2 != 0 ? 2 : -1));
        ASSERT_TRUE(back.has_value()) << back.error().message;
        ASSERT_EQ(*back, c) << to_json_text(c, 2);

        MemoryConfig flags;
        for (const ZoneConfig& z : c.zones) {
            const std::string spec = zone_spec(z, rng);
            auto parsed = parse_memory_zone(spec);
            ASSERT_TRUE(parsed.has_value()) << spec << ": " << parsed.error().message;
            flags.zones.push_back(*parsed);
        }
        for (const NumaNodeConfig& n : c.nodes) {
            auto parsed = parse_numa_node(node_spec(n));
            ASSERT_TRUE(parsed.has_value()) << node_spec(n) << ": " << parsed.error().message;
            flags.nodes.push_back(*parsed);
        }
        flags.fault_around = c.fault_around;
        ASSERT_EQ(flags, c) << to_json_text(c, 2);
    }
}

std::string random_text(std::mt19937_64& rng, const std::string& alphabet, size_t max_len) {
    std::string s(rng() % (max_len + 1), ' ');
    for (char& ch : s) ch = rng() % 8 == 0 ? static_cast<char>(rng()) : alphabet[rng() % alphabet.size()];
    return s;
}

void expect_clean_error_or_value(const Error* e) {
    if (e == nullptr) return;
    EXPECT_EQ(e->kind, ErrorKind::Usage);
    EXPECT_EQ(e->message.find('\n'), std::string::npos) << e->message;
}

TEST(MemoryConfigRandomized, GarbageSpecsNeverCrash) {
    const uint64_t seed = pv::test::test_seed(0x6a7b);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    const std::string alphabet = "idszebackpolyqutfn_-=,[]0123456789KMGT";
    const std::vector<std::string> seeds = {"id=a,size=64M,host-nodes=[0-1],policy=bind",
                                            "guest_numa_id=0,cpus=[0-3,5],memory_zones=[a,b],fallback=[1]"};
    for (int iter = 0; iter < 4000; ++iter) {
        std::string s = random_text(rng, alphabet, 48);
        if (iter % 2 == 0) {  // a mutated valid spec reaches deeper
            s = seeds[rng() % seeds.size()];
            for (int k = 0; k < 3; ++k) s[rng() % s.size()] = alphabet[rng() % alphabet.size()];
        }
        SCOPED_TRACE(s);
        auto z = parse_memory_zone(s);
        expect_clean_error_or_value(z ? nullptr : &z.error());
        auto n = parse_numa_node(s);
        expect_clean_error_or_value(n ? nullptr : &n.error());
        auto f = parse_fault_around(s);
        expect_clean_error_or_value(f ? nullptr : &f.error());
    }
}

TEST(MemoryConfigRandomized, GarbageJsonNeverCrashes) {
    const uint64_t seed = pv::test::test_seed(0x15a0);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    const std::string base = kExampleJson;
    const std::string alphabet = "{}[]\",:0123456789-. aeilnrstu";
    const TopologyLimits limits{.vcpus = 3, .host_nodes = 2, .ram_size = std::nullopt};
    for (int iter = 0; iter < 2000; ++iter) {
        std::string s = base;
        for (uint64_t k = 0, n = 1 + rng() % 4; k < n; ++k) s[rng() % s.size()] = alphabet[rng() % alphabet.size()];
        auto r = parse_memory_config_json(s);
        if (!r) {
            expect_clean_error_or_value(&r.error());
            continue;
        }
        auto resolved = resolve_memory_config(*r, limits);  // a parsed config never crashes validation either
        expect_clean_error_or_value(resolved ? nullptr : &resolved.error());
    }
}

void rc_check(const Error* e) {
    if (e == nullptr) return;
    RC_ASSERT(e->kind == ErrorKind::Usage);
    RC_ASSERT(e->message.find('\n') == std::string::npos);
}

RC_GTEST_PROP(MemoryConfigProperty, ArbitraryBytesGiveAValueOrAUsageError, (const std::string& s)) {
    auto z = parse_memory_zone(s);
    rc_check(z ? nullptr : &z.error());
    auto n = parse_numa_node(s);
    rc_check(n ? nullptr : &n.error());
    auto j = parse_memory_config_json(s);
    rc_check(j ? nullptr : &j.error());
}

}  // namespace
}  // namespace pv::memory
