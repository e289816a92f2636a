// Host NUMA pools: node sets, topology, pool validation, accounting (directed,
// model-based randomized, concurrent) and the real mempolicy syscalls on this
// host's nodes. No KVM needed. Tests that would need two host nodes assert the
// single-node behaviour instead when the host has one.
#include <gtest/gtest.h>
#include <numa.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/seed.h"
#include "vmm/memory/host_pool.h"

namespace pv::memory {
namespace {

using mm::HostVirtAddr;
constexpr uint64_t kGiB = 1ULL << 30;
constexpr uint64_t kPage = 4096;

PoolConfig make_pool(GuestNodeId node, NumaPolicy policy, HostNodeSet hosts, uint64_t quota,
                     std::vector<GuestNodeId> fallback = {}) {
    return PoolConfig{node, hosts, policy, quota, std::move(fallback)};
}

// Two host nodes with 4 GiB and 2 GiB free.
HostTopology two_host_nodes() {
    return HostTopology::synthetic(
        {HostNodeInfo{0, 8 * kGiB, 4 * kGiB, {0}}, HostNodeInfo{1, 8 * kGiB, 2 * kGiB, {1}}});
}

NodeAccounting make_accounting(std::vector<PoolConfig> pools, HostTopology topology = two_host_nodes()) {
    auto a = NodeAccounting::create(std::move(pools), std::move(topology));
    EXPECT_TRUE(a.has_value()) << a.error().to_string();
    return std::move(a).value();
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// ---- HostNodeSet and policy names --------------------------------------------------

TEST(HostNodeSet, ParsesAndFormats) {
    EXPECT_EQ(HostNodeSet::parse("0").value(), HostNodeSet::of({0}));
    EXPECT_EQ(HostNodeSet::parse("0-3").value().count(), 4u);
    EXPECT_EQ(HostNodeSet::parse("0,2-3").value().to_string(), "0,2-3");
    EXPECT_EQ(HostNodeSet::parse("3;1").value(), HostNodeSet::of({1, 3}));
    EXPECT_EQ(HostNodeSet::parse("0-1023").value().count(), 1024u);
    EXPECT_EQ(HostNodeSet::of({0, 1, 2, 5, 7, 8}).to_string(), "0-2,5,7-8");
    EXPECT_EQ(HostNodeSet{}.to_string(), "none");
    EXPECT_TRUE(HostNodeSet{}.empty());
    HostNodeSet s = HostNodeSet::of({0, 65, 1023});
    EXPECT_EQ(s.mask()[0], 1UL);
    EXPECT_EQ(s.mask()[1], 2UL);
    EXPECT_TRUE(s.contains(1023));
    EXPECT_FALSE(s.contains(1));
    EXPECT_FALSE(s.contains(5000));
    EXPECT_EQ(s.ids(), (std::vector<HostNodeId>{0, 65, 1023}));
}

TEST(HostNodeSet, RejectsBadInput) {
    for (const char* bad : {"", "a", "1-", "-1", "3-1", "1024", "0,,1", " 1", "1 ", "0x1", "99999999999", "0-1024"}) {
        auto r = HostNodeSet::parse(bad);
        ASSERT_FALSE(r.has_value()) << "'" << bad << "' was accepted";
        EXPECT_EQ(r.error().kind, ErrorKind::Usage);
        EXPECT_TRUE(contains(r.error().message, std::string("invalid host node list '") + bad + "'"))
            << r.error().message;
    }
}

TEST(NumaPolicyName, RoundTripsAndRejectsUnknown) {
    for (NumaPolicy p : {NumaPolicy::Default, NumaPolicy::Bind, NumaPolicy::Preferred, NumaPolicy::Interleave})
        EXPECT_EQ(parse_numa_policy(to_string(p)).value(), p);
    auto r = parse_numa_policy("strict");
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::Usage);
    EXPECT_TRUE(contains(r.error().message, "invalid NUMA policy 'strict'")) << r.error().message;
}

// ---- topology -------------------------------------------------------------------------

TEST(HostTopology, DetectsThisHost) {
    auto t = HostTopology::detect();
    ASSERT_TRUE(t.has_value()) << t.error().to_string();
    EXPECT_EQ(t->numa_supported(), numa_available() >= 0);
    ASSERT_FALSE(t->nodes().empty());
    std::vector<uint32_t> all_cpus;
    uint64_t total = 0;  // a node may have no memory (CPU-only), the host may not
    for (const HostNodeInfo& n : t->nodes()) {
        total += n.total_bytes;
        EXPECT_LE(n.free_bytes, n.total_bytes) << "node " << n.id;
        all_cpus.insert(all_cpus.end(), n.cpus.begin(), n.cpus.end());
        auto live = t->free_bytes(n.id);
        ASSERT_TRUE(live.has_value()) << live.error().to_string();
        EXPECT_LE(*live, n.total_bytes);
    }
    EXPECT_GT(total, 0u);
    EXPECT_FALSE(all_cpus.empty());
    std::sort(all_cpus.begin(), all_cpus.end());
    EXPECT_EQ(std::adjacent_find(all_cpus.begin(), all_cpus.end()), all_cpus.end()) << "a CPU in two nodes";
    EXPECT_EQ(t->node_set().count(), t->nodes().size());
    auto missing = t->free_bytes(HostNodeSet::kMaxNodes - 1);
    ASSERT_FALSE(missing.has_value());
    EXPECT_EQ(missing.error().kind, ErrorKind::Invalid);
}

TEST(HostTopology, SyntheticNodesAndChecks) {
    HostTopology t = two_host_nodes();
    ASSERT_NE(t.find(1), nullptr);
    EXPECT_EQ(t.find(1)->free_bytes, 2 * kGiB);
    EXPECT_EQ(t.find(2), nullptr);
    EXPECT_EQ(t.free_bytes(0).value(), 4 * kGiB);
    EXPECT_EQ(t.node_set(), HostNodeSet::of({0, 1}));
    EXPECT_TRUE(t.check_nodes(HostNodeSet::of({0, 1}), "zone").has_value());
    auto bad = t.check_nodes(HostNodeSet::of({0, 7}), "zone mem1");
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().message, "zone mem1: host NUMA node 7 does not exist (host nodes: 0-1)");
}

// ---- pool validation ---------------------------------------------------------------------

TEST(ValidatePools, AcceptsAGoodTopology) {
    std::vector<PoolConfig> pools{
        make_pool(1, NumaPolicy::Bind, HostNodeSet::of({1}), 100),
        make_pool(0, NumaPolicy::Preferred, HostNodeSet::of({0}), 0, {2, 1}),
        make_pool(2, NumaPolicy::Interleave, HostNodeSet::of({0, 1}), 5),
        make_pool(3, NumaPolicy::Default, {}, 0),
    };
    auto s = validate_pools(pools, two_host_nodes());
    EXPECT_TRUE(s.has_value()) << s.error().to_string();
}

TEST(ValidatePools, RejectsEachBrokenRule) {
    const HostNodeSet h0 = HostNodeSet::of({0});
    struct Case {
        std::vector<PoolConfig> pools;
        const char* message;
    };
    std::vector<Case> cases{
        {{}, "a guest needs 1 to 64 NUMA nodes, not 0"},
        {{make_pool(1, NumaPolicy::Bind, h0, 0)}, "guest NUMA node 1: guest node ids must be 0..0"},
        {{make_pool(0, NumaPolicy::Bind, h0, 0), make_pool(0, NumaPolicy::Bind, h0, 0)},
         "guest NUMA node 0: defined twice"},
        {{make_pool(0, NumaPolicy::Default, h0, 0)}, "guest NUMA node 0: host nodes 0 given with policy default"},
        {{make_pool(0, NumaPolicy::Bind, {}, 0)}, "guest NUMA node 0: policy bind needs host nodes"},
        {{make_pool(0, NumaPolicy::Preferred, HostNodeSet::of({0, 1}), 0)},
         "guest NUMA node 0: policy preferred takes exactly one host node, not 0-1"},
        {{make_pool(0, NumaPolicy::Interleave, HostNodeSet::of({0, 5}), 0)},
         "guest NUMA node 0: host nodes: host NUMA node 5 does not exist (host nodes: 0-1)"},
        {{make_pool(0, NumaPolicy::Bind, h0, 0, {1}), make_pool(1, NumaPolicy::Bind, h0, 0)},
         "guest NUMA node 0: a fallback order needs policy preferred (policy bind never borrows)"},
        {{make_pool(0, NumaPolicy::Preferred, h0, 0, {2}), make_pool(1, NumaPolicy::Bind, h0, 0)},
         "guest NUMA node 0: fallback guest node 2 does not exist"},
        {{make_pool(0, NumaPolicy::Preferred, h0, 0, {0})}, "guest NUMA node 0: fallback order names the node itself"},
        {{make_pool(0, NumaPolicy::Preferred, h0, 0, {1, 1}), make_pool(1, NumaPolicy::Bind, h0, 0)},
         "guest NUMA node 0: fallback order names guest node 1 twice"},
    };
    std::vector<PoolConfig> too_many;
    for (GuestNodeId n = 0; n <= kMaxGuestNodes; ++n) too_many.push_back(make_pool(n, NumaPolicy::Default, {}, 0));
    cases.push_back({too_many, "a guest needs 1 to 64 NUMA nodes, not 65"});
    for (const Case& c : cases) {
        auto s = validate_pools(c.pools, two_host_nodes());
        ASSERT_FALSE(s.has_value()) << c.message;
        EXPECT_EQ(s.error().kind, ErrorKind::Usage);
        EXPECT_TRUE(contains(s.error().message, c.message)) << s.error().message;
        EXPECT_FALSE(NodeAccounting::create(c.pools, two_host_nodes()).has_value()) << c.message;
    }
}

// ---- accounting, directed -------------------------------------------------------------------

TEST(NodeAccounting, BindExhaustionIsAnError) {
    NodeAccounting a = make_accounting({make_pool(0, NumaPolicy::Bind, HostNodeSet::of({0}), 10)});
    EXPECT_EQ(a.charge(0, 6).value(), 0u);
    auto r = a.charge(0, 5);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ChargeError::Kind::OutOfMemory);
    EXPECT_EQ(r.error().node, 0u);
    Error e = r.error().to_error();
    EXPECT_EQ(e.kind, ErrorKind::GuestOutOfMemory);
    EXPECT_EQ(e.message, "guest out of memory on node 0 (5 pages requested)");
    EXPECT_EQ(a.used_pages(0), 6u);
    EXPECT_EQ(a.charge(0, 4).value(), 0u);
    EXPECT_EQ(a.free_pages(0).value(), 0u);
    EXPECT_FALSE(a.charge(0, 1).has_value());
    NodeStats s = a.stats(0).value();
    EXPECT_EQ(s.used_pages, 10u);
    EXPECT_EQ(s.own_pages, 10u);
    EXPECT_EQ(s.refused_charges, 2u);
    EXPECT_EQ(s.fallback_charges, 0u);
    EXPECT_TRUE(a.check_invariants());
    nlohmann::json j = stats_to_json(a.stats().value());
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(j[0]["node"], 0);
    EXPECT_EQ(j[0]["used_pages"], 10);
    EXPECT_EQ(j[0]["quota_pages"], 10);
    EXPECT_EQ(j[0]["free_pages"], 0);
    EXPECT_EQ(j[0]["refused_charges"], 2);
}

TEST(NodeAccounting, PreferredFallsBackInTheGivenOrder) {
    NodeAccounting a = make_accounting({
        make_pool(0, NumaPolicy::Preferred, HostNodeSet::of({0}), 4, {2, 1}),
        make_pool(1, NumaPolicy::Bind, HostNodeSet::of({1}), 4),
        make_pool(2, NumaPolicy::Bind, HostNodeSet::of({0}), 3),
    });
    EXPECT_EQ(a.charge(0, 4).value(), 0u);
    EXPECT_EQ(a.charge(0, 2).value(), 2u);  // first fallback
    EXPECT_EQ(a.charge(0, 1).value(), 2u);
    EXPECT_EQ(a.charge(0, 1).value(), 1u);     // node 2 is full: second fallback
    EXPECT_FALSE(a.charge(0, 4).has_value());  // a charge is paid by one pool, never split
    EXPECT_EQ(a.charge(0, 3).value(), 1u);
    EXPECT_FALSE(a.charge(1, 1).has_value());  // node 1's own quota was lent away; Bind never borrows
    EXPECT_EQ(a.used_pages(0), 4u);
    EXPECT_EQ(a.used_pages(1), 4u);
    EXPECT_EQ(a.used_pages(2), 3u);
    EXPECT_EQ(a.held_pages(0), 11u);
    NodeStats s0 = a.stats(0).value();
    EXPECT_EQ(s0.own_pages, 4u);
    EXPECT_EQ(s0.borrowed_pages, 7u);
    EXPECT_EQ(s0.fallback_charges, 4u);
    EXPECT_EQ(s0.refused_charges, 1u);
    EXPECT_TRUE(a.check_invariants());
    // Uncharging repays the last fallback first, then the first, then own pages.
    ASSERT_TRUE(a.uncharge(0, 5).has_value());
    EXPECT_EQ(a.used_pages(1), 0u);
    EXPECT_EQ(a.used_pages(2), 2u);
    EXPECT_EQ(a.used_pages(0), 4u);
    ASSERT_TRUE(a.uncharge(0, 4).has_value());
    EXPECT_EQ(a.used_pages(2), 0u);
    EXPECT_EQ(a.used_pages(0), 2u);
    EXPECT_EQ(a.charge(1, 4).value(), 1u);
    EXPECT_TRUE(a.check_invariants());
}

TEST(NodeAccounting, UnchargeMoreThanChargedFailsAndChangesNothing) {
    NodeAccounting a = make_accounting({make_pool(0, NumaPolicy::Preferred, HostNodeSet::of({0}), 2, {1}),
                                        make_pool(1, NumaPolicy::Bind, HostNodeSet::of({1}), 0)});
    EXPECT_EQ(a.charge(0, 2).value(), 0u);
    EXPECT_EQ(a.charge(0, 1).value(), 1u);
    auto s = a.uncharge(0, 4);
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().kind, ErrorKind::Internal);
    EXPECT_EQ(s.error().message, "uncharge of 4 pages for guest NUMA node 0, which holds only 3 (accounting bug)");
    EXPECT_EQ(a.used_pages(0), 2u);
    EXPECT_EQ(a.used_pages(1), 1u);
    EXPECT_FALSE(a.uncharge(1, 1).has_value());  // node 1 lent the page; it holds none itself
    ASSERT_TRUE(a.uncharge(0, 3).has_value());
    EXPECT_FALSE(a.uncharge(0, 1).has_value());
    EXPECT_EQ(a.used_pages(0), 0u);
    EXPECT_EQ(a.used_pages(1), 0u);
    EXPECT_TRUE(a.check_invariants());
}

TEST(NodeAccounting, UnknownNodesAndZeroPages) {
    NodeAccounting a = make_accounting({make_pool(0, NumaPolicy::Bind, HostNodeSet::of({0}), 1)});
    auto r = a.charge(3, 1);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ChargeError::Kind::InvalidNode);
    EXPECT_EQ(r.error().to_error().message, "charge to guest NUMA node 3, which does not exist");
    EXPECT_EQ(a.uncharge(3, 1).error().kind, ErrorKind::Invalid);
    EXPECT_FALSE(a.stats(3).has_value());
    EXPECT_EQ(a.charge(0, 0).value(), 0u);
    EXPECT_TRUE(a.uncharge(0, 0).has_value());
    EXPECT_EQ(a.charge(0, 1).value(), 0u);
    EXPECT_EQ(a.charge(0, 0).value(), 0u);  // a full node can still be charged nothing
    EXPECT_FALSE(a.charge(0, UINT64_MAX).has_value());
}

TEST(NodeAccounting, UnlimitedPoolsNeverRefuseAndReportHostFreeMemory) {
    NodeAccounting a = make_accounting({make_pool(0, NumaPolicy::Interleave, HostNodeSet::of({0, 1}), 0),
                                        make_pool(1, NumaPolicy::Bind, HostNodeSet::of({1}), 0),
                                        make_pool(2, NumaPolicy::Default, {}, 0)});
    EXPECT_EQ(a.free_pages(0).value(), 6 * kGiB / kPage);
    EXPECT_EQ(a.free_pages(1).value(), 2 * kGiB / kPage);
    EXPECT_EQ(a.free_pages(2).value(), 6 * kGiB / kPage);
    EXPECT_EQ(a.charge(1, 1ULL << 40).value(), 1u);
    EXPECT_EQ(a.charge(1, 1ULL << 40).value(), 1u);
    EXPECT_EQ(a.used_pages(1), 2ULL << 40);
    EXPECT_FALSE(a.charge(1, UINT64_MAX).has_value());  // only wrap-around refuses
    EXPECT_TRUE(a.check_invariants());
}

TEST(NodeAccounting, TwoGuestNodesOverThisHostsNodeZero) {
    auto topo = HostTopology::detect();
    ASSERT_TRUE(topo.has_value()) << topo.error().to_string();
    if (!topo->numa_supported()) GTEST_SKIP() << "host kernel has no NUMA support";
    NodeAccounting a = make_accounting({make_pool(0, NumaPolicy::Bind, HostNodeSet::of({0}), 8),
                                        make_pool(1, NumaPolicy::Preferred, HostNodeSet::of({0}), 0, {0})},
                                       std::move(topo).value());
    EXPECT_EQ(a.charge(0, 8).value(), 0u);
    EXPECT_EQ(a.charge(1, 100).value(), 1u);
    EXPECT_FALSE(a.charge(0, 1).has_value());
    EXPECT_EQ(a.used_pages(0), 8u);
    EXPECT_EQ(a.used_pages(1), 100u);
    EXPECT_GT(a.free_pages(1).value(), 0u);  // this host's node 0 free memory
    EXPECT_EQ(a.free_pages(0).value(), 0u);
}

// ---- accounting, model-based -------------------------------------------------------------------

// The reference: the same rules written as plainly as possible.
struct Model {
    std::vector<PoolConfig> pools;
    std::vector<uint64_t> own;
    std::vector<std::vector<uint64_t>> borrowed;  // [node][fallback position]

    explicit Model(std::vector<PoolConfig> p) : pools(std::move(p)), own(pools.size()), borrowed(pools.size()) {
        for (size_t n = 0; n < pools.size(); ++n) borrowed[n].assign(pools[n].fallback.size(), 0);
    }
    uint64_t used(GuestNodeId n) const {
        uint64_t u = own[n];
        for (size_t r = 0; r < pools.size(); ++r)
            for (size_t k = 0; k < pools[r].fallback.size(); ++k)
                if (pools[r].fallback[k] == n) u += borrowed[r][k];
        return u;
    }
    uint64_t held(GuestNodeId n) const {
        uint64_t h = own[n];
        for (uint64_t b : borrowed[n]) h += b;
        return h;
    }
    bool fits(GuestNodeId n, uint64_t pages) const {
        return pools[n].quota_pages == 0 || used(n) + pages <= pools[n].quota_pages;
    }
    std::optional<GuestNodeId> charge(GuestNodeId n, uint64_t pages) {
        if (fits(n, pages)) {
            own[n] += pages;
            return n;
        }
        for (size_t k = 0; k < pools[n].fallback.size(); ++k) {
            if (fits(pools[n].fallback[k], pages)) {
                borrowed[n][k] += pages;
                return pools[n].fallback[k];
            }
        }
        return std::nullopt;
    }
    bool uncharge(GuestNodeId n, uint64_t pages) {
        if (pages > held(n)) return false;
        for (size_t k = borrowed[n].size(); k-- > 0;) {
            uint64_t take = std::min(pages, borrowed[n][k]);
            borrowed[n][k] -= take;
            pages -= take;
        }
        own[n] -= pages;
        return true;
    }
};

std::vector<PoolConfig> random_pools(std::mt19937_64& rng) {
    size_t count = 1 + rng() % 4;
    std::vector<PoolConfig> pools;
    for (GuestNodeId n = 0; n < count; ++n) {
        auto policy = static_cast<NumaPolicy>(rng() % 4);
        HostNodeSet hosts;
        if (policy == NumaPolicy::Preferred)
            hosts.add(static_cast<HostNodeId>(rng() % 2));
        else if (policy != NumaPolicy::Default)
            hosts = rng() % 3 == 0 ? HostNodeSet::of({0, 1}) : HostNodeSet::of({static_cast<HostNodeId>(rng() % 2)});
        uint64_t quota = rng() % 5 == 0 ? 0 : 1 + rng() % 48;
        std::vector<GuestNodeId> fallback;
        if (policy == NumaPolicy::Preferred) {
            for (GuestNodeId f = 0; f < count; ++f)
                if (f != n && rng() % 3 != 0) fallback.push_back(f);
            std::shuffle(fallback.begin(), fallback.end(), rng);
        }
        pools.push_back(make_pool(n, policy, hosts, quota, fallback));
    }
    return pools;
}

void expect_matches(const NodeAccounting& a, const Model& m) {
    ASSERT_TRUE(a.check_invariants());
    for (GuestNodeId n = 0; n < m.pools.size(); ++n) {
        ASSERT_EQ(a.used_pages(n), m.used(n)) << "node " << n;
        ASSERT_EQ(a.held_pages(n), m.held(n)) << "node " << n;
        NodeStats s = a.stats(n).value();
        ASSERT_EQ(s.own_pages, m.own[n]) << "node " << n;
        if (m.pools[n].quota_pages != 0) {
            ASSERT_EQ(s.free_pages, m.pools[n].quota_pages - m.used(n));
        }
    }
}

TEST(NodeAccounting, MatchesAReferenceModelUnderRandomChargesAndUncharges) {
    const uint64_t seed = pv::test::test_seed(0x5a11);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (int round = 0; round < 40; ++round) {
        std::vector<PoolConfig> pools = random_pools(rng);
        NodeAccounting a = make_accounting(pools);
        Model m(pools);
        for (int op = 0; op < 400; ++op) {
            auto node = static_cast<GuestNodeId>(rng() % pools.size());
            uint64_t pages = rng() % 9;
            if (rng() % 2 == 0) {
                auto got = a.charge(node, pages);
                auto want = m.charge(node, pages);
                ASSERT_EQ(got.has_value(), want.has_value()) << "round " << round << " op " << op;
                if (want) {
                    ASSERT_EQ(got.value(), *want);
                } else {
                    ASSERT_EQ(got.error().node, node);
                }
            } else {
                bool want = m.uncharge(node, pages);
                ASSERT_EQ(a.uncharge(node, pages).has_value(), want) << "round " << round << " op " << op;
            }
            ASSERT_NO_FATAL_FAILURE(expect_matches(a, m)) << "round " << round << " op " << op;
        }
    }
}

// ---- accounting, concurrent ---------------------------------------------------------------------

TEST(NodeAccounting, QuotasAreExactUnderConcurrentCharging) {
    NodeAccounting a = make_accounting({make_pool(0, NumaPolicy::Preferred, HostNodeSet::of({0}), 5003, {1}),
                                        make_pool(1, NumaPolicy::Bind, HostNodeSet::of({1}), 2999)});
    constexpr int kThreads = 4;
    std::vector<std::array<uint64_t, 2>> paid(kThreads, {0, 0});
    std::vector<std::thread> threads;
    threads.reserve(kThreads);
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&a, &paid, t] {
            while (true) {
                auto r = a.charge(0, 1);
                if (!r) return;
                ++paid[static_cast<size_t>(t)][r.value()];
            }
        });
    }
    for (auto& th : threads) th.join();
    uint64_t from0 = 0;
    uint64_t from1 = 0;
    for (const auto& p : paid) {
        from0 += p[0];
        from1 += p[1];
    }
    EXPECT_EQ(from0, 5003u);
    EXPECT_EQ(from1, 2999u);
    EXPECT_EQ(a.used_pages(0), 5003u);
    EXPECT_EQ(a.used_pages(1), 2999u);
    EXPECT_EQ(a.stats(0).value().fallback_charges, 2999u);
    EXPECT_TRUE(a.check_invariants());
}

TEST(NodeAccounting, TotalsAreConservedUnderConcurrentChargeAndUncharge) {
    const uint64_t seed = pv::test::test_seed(0xc0c0);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    NodeAccounting a = make_accounting({make_pool(0, NumaPolicy::Preferred, HostNodeSet::of({0}), 300, {2, 1}),
                                        make_pool(1, NumaPolicy::Bind, HostNodeSet::of({1}), 200),
                                        make_pool(2, NumaPolicy::Preferred, HostNodeSet::of({1}), 250, {0}),
                                        make_pool(3, NumaPolicy::Interleave, HostNodeSet::of({0, 1}), 0)});
    constexpr int kThreads = 4;
    std::vector<std::array<uint64_t, 4>> held(kThreads, {0, 0, 0, 0});
    std::vector<std::thread> threads;
    threads.reserve(kThreads);
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&a, &held, t, seed] {
            std::mt19937_64 rng(seed + static_cast<uint64_t>(t));
            auto& mine = held[static_cast<size_t>(t)];
            for (int i = 0; i < 20000; ++i) {
                auto node = static_cast<GuestNodeId>(rng() % 4);
                uint64_t pages = 1 + rng() % 8;
                if (rng() % 5 < 3) {
                    if (a.charge(node, pages)) mine[node] += pages;
                } else if (mine[node] >= pages) {
                    if (!a.uncharge(node, pages)) std::abort();  // this thread holds them: must succeed
                    mine[node] -= pages;
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    ASSERT_TRUE(a.check_invariants());
    for (GuestNodeId n = 0; n < 4; ++n) {
        uint64_t sum = 0;
        for (const auto& h : held) sum += h[n];
        EXPECT_EQ(a.held_pages(n), sum) << "node " << n;
        EXPECT_TRUE(a.uncharge(n, sum).has_value());
    }
    for (GuestNodeId n = 0; n < 4; ++n) EXPECT_EQ(a.used_pages(n), 0u) << "node " << n;
    EXPECT_TRUE(a.check_invariants());
}

// ---- mempolicy syscalls on real mappings --------------------------------------------------------

class Mapping {
public:
    explicit Mapping(uint64_t pages) : m_size(pages * kPage) {
        m_base = mmap(nullptr, m_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m_base == MAP_FAILED) m_base = nullptr;
    }
    ~Mapping() {
        if (m_base != nullptr) munmap(m_base, m_size);
    }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    [[nodiscard]] HostVirtAddr addr() const { return HostVirtAddr(reinterpret_cast<uint64_t>(m_base)); }
    [[nodiscard]] uint64_t size() const { return m_size; }
    [[nodiscard]] void* page(uint64_t index) const { return static_cast<char*>(m_base) + index * kPage; }
    void touch(uint64_t index) { static_cast<volatile char*>(m_base)[index * kPage] = 1; }

private:
    void* m_base = nullptr;
    uint64_t m_size = 0;
};

class MemPolicyTest : public testing::Test {
protected:
    void SetUp() override {
        auto t = HostTopology::detect();
        ASSERT_TRUE(t.has_value()) << t.error().to_string();
        if (!t->numa_supported()) GTEST_SKIP() << "host kernel has no NUMA support (numa_available() < 0)";
        m_topology = std::move(t).value();
    }
    HostNodeId first_node() const { return m_topology.nodes().front().id; }
    HostTopology m_topology;
};

TEST_F(MemPolicyTest, EachPolicyOnNodeZeroIsAppliedAndReported) {
    const HostNodeSet node = HostNodeSet::of({first_node()});
    for (NumaPolicy p : {NumaPolicy::Bind, NumaPolicy::Preferred, NumaPolicy::Interleave, NumaPolicy::Default}) {
        SCOPED_TRACE(to_string(p));
        Mapping m(32);
        PoolConfig pool = make_pool(0, p, p == NumaPolicy::Default ? HostNodeSet{} : node, 0);
        auto s = apply_policy(m.addr(), m.size(), pool);
        ASSERT_TRUE(s.has_value()) << s.error().to_string();
        auto q = query_policy(m.addr() + 5 * kPage);
        ASSERT_TRUE(q.has_value()) << q.error().to_string();
        EXPECT_EQ(q->policy, p);
        EXPECT_EQ(q->nodes, pool.host_nodes);
    }
}

TEST_F(MemPolicyTest, RebindingTouchedPagesToTheirNodeSucceeds) {
    Mapping m(16);
    for (uint64_t i = 0; i < 16; ++i) m.touch(i);
    auto s = apply_policy(m.addr(), m.size(), make_pool(0, NumaPolicy::Bind, HostNodeSet::of({first_node()}), 0));
    EXPECT_TRUE(s.has_value()) << s.error().to_string();
}

TEST_F(MemPolicyTest, BadRequestsAreClearErrors) {
    Mapping m(8);
    const PoolConfig bind0 = make_pool(0, NumaPolicy::Bind, HostNodeSet::of({first_node()}), 0);
    auto unaligned = apply_policy(m.addr() + 1, kPage, bind0);
    ASSERT_FALSE(unaligned.has_value());
    EXPECT_EQ(unaligned.error().kind, ErrorKind::Invalid);
    EXPECT_TRUE(contains(unaligned.error().message, "must be page aligned")) << unaligned.error().message;
    EXPECT_FALSE(apply_policy(m.addr(), 0, bind0).has_value());
    EXPECT_FALSE(apply_policy(m.addr(), m.size(), make_pool(0, NumaPolicy::Bind, {}, 0)).has_value());
    EXPECT_FALSE(
        apply_policy(m.addr(), m.size(), make_pool(0, NumaPolicy::Default, HostNodeSet::of({0}), 0)).has_value());
    auto missing = apply_policy(m.addr(), m.size(), make_pool(0, NumaPolicy::Bind, HostNodeSet::of({1000}), 0));
    ASSERT_FALSE(missing.has_value());
    EXPECT_TRUE(contains(missing.error().message, "host node 1000 does not exist")) << missing.error().message;
    // A hole in the range: unmap the middle page.
    ASSERT_EQ(munmap(m.page(4), kPage), 0);
    auto hole = apply_policy(m.addr(), m.size(), bind0);
    ASSERT_FALSE(hole.has_value());
    EXPECT_EQ(hole.error().kind, ErrorKind::Invalid);
    EXPECT_TRUE(contains(hole.error().message, "mbind of HVA")) << hole.error().to_string();
    EXPECT_NE(hole.error().err_no, 0);
}

TEST_F(MemPolicyTest, PlacementReportsTheNodeOfTouchedPagesOnly) {
    Mapping m(32);
    const HostNodeId node = first_node();
    ASSERT_TRUE(
        apply_policy(m.addr(), m.size(), make_pool(0, NumaPolicy::Bind, HostNodeSet::of({node}), 0)).has_value());
    for (uint64_t i = 0; i < 32; i += 2) m.touch(i);
    auto where = verify_placement(m.addr(), 32);
    ASSERT_TRUE(where.has_value()) << where.error().to_string();
    ASSERT_EQ(where->size(), 32u);
    for (size_t i = 0; i < 32; ++i) {
        int expect = i % 2 == 0 ? static_cast<int>(node) : kPageNotPresent;
        EXPECT_EQ((*where)[i], expect) << "page " << i;
    }
    EXPECT_TRUE(verify_placement(m.addr(), 0).value().empty());
    EXPECT_FALSE(verify_placement(m.addr() + 8, 1).has_value());
}

// With >= 2 host nodes: pages bound to the second node land there. With one
// node (these machines): binding to a node the host lacks is a clear error.
TEST_F(MemPolicyTest, BindToAnotherHostNodePlacesPagesThere) {
    Mapping m(16);
    if (m_topology.nodes().size() < 2) {
        HostNodeId absent = m_topology.nodes().back().id + 1;
        auto s = apply_policy(m.addr(), m.size(), make_pool(0, NumaPolicy::Bind, HostNodeSet::of({absent}), 0));
        ASSERT_FALSE(s.has_value());
        EXPECT_TRUE(contains(s.error().message, "host node " + std::to_string(absent) + " does not exist"))
            << s.error().message;
        return;
    }
    HostNodeId target = m_topology.nodes()[1].id;
    ASSERT_TRUE(
        apply_policy(m.addr(), m.size(), make_pool(0, NumaPolicy::Bind, HostNodeSet::of({target}), 0)).has_value());
    for (uint64_t i = 0; i < 16; ++i) m.touch(i);
    auto where = verify_placement(m.addr(), 16);
    ASSERT_TRUE(where.has_value()) << where.error().to_string();
    for (int n : *where) EXPECT_EQ(n, static_cast<int>(target));
}

// Interleave over every host node: each node receives pages, and only those.
TEST_F(MemPolicyTest, InterleaveSpreadsPagesOverItsNodes) {
    Mapping m(64);
    HostNodeSet all = m_topology.node_set();
    ASSERT_TRUE(apply_policy(m.addr(), m.size(), make_pool(0, NumaPolicy::Interleave, all, 0)).has_value());
    for (uint64_t i = 0; i < 64; ++i) m.touch(i);
    auto where = verify_placement(m.addr(), 64);
    ASSERT_TRUE(where.has_value()) << where.error().to_string();
    std::vector<HostNodeId> seen;
    for (int n : *where) {
        ASSERT_GE(n, 0);
        ASSERT_TRUE(all.contains(static_cast<HostNodeId>(n))) << n;
        seen.push_back(static_cast<HostNodeId>(n));
    }
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    EXPECT_EQ(seen, all.ids());
}

}  // namespace
}  // namespace pv::memory
