// The guest's allocator workloads (guest/workload/workload.h) run on the host
// with small op counts: every workload completes its ops with no verification
// or invariant error and hands its mappings back; kWorkloadCorrupt is always
// caught; runs are deterministic per seed and differ between seeds; `multi`
// runs its vCPUs as real std::threads over one shared LockedHeap.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "guest/workload/workload.h"
#include "tests/support/seed.h"

namespace {

namespace wl = pv::workload;
using wl::Kind;

// The host Env: anonymous mmap, a monotonic counter, std::mutex for multi.
class HostEnv {
public:
    using Lock = std::mutex;

    explicit HostEnv(wl::MultiShared<Lock>* shared = nullptr) : m_shared(shared) {}
    ~HostEnv() { EXPECT_TRUE(m_live.empty()) << m_live.size() << " mappings not given back"; }
    HostEnv(const HostEnv&) = delete;
    HostEnv& operator=(const HostEnv&) = delete;

    void* map(uint64_t bytes, bool populate) {
        if (m_fail_bytes != 0 && bytes == m_fail_bytes) return nullptr;
        void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) return nullptr;
        m_live[p] = bytes;
        if (populate) ++m_populated;
        ++m_maps;
        return p;
    }
    void unmap(void* p, uint64_t bytes) {
        auto it = m_live.find(p);
        EXPECT_TRUE(it != m_live.end() && it->second == bytes) << "unmap of something not mapped";
        if (it != m_live.end()) m_live.erase(it);
        munmap(p, bytes);
    }
    uint64_t now() { return ++m_ticks; }  // a counter: runs stay deterministic
    wl::MultiShared<Lock>& shared() { return *m_shared; }
    void relax() { std::this_thread::yield(); }

    void fail_maps_of(uint64_t bytes) { m_fail_bytes = bytes; }
    [[nodiscard]] int populated() const { return m_populated; }
    [[nodiscard]] int maps() const { return m_maps; }

private:
    wl::MultiShared<Lock>* m_shared;
    std::map<void*, uint64_t> m_live;
    uint64_t m_ticks = 0;
    uint64_t m_fail_bytes = 0;  // map() of exactly this size fails
    int m_populated = 0;
    int m_maps = 0;
};

constexpr Kind kSingleKinds[] = {Kind::SlabChurn, Kind::BuddyChurn, Kind::TlsfChurn, Kind::Frames,
                                 Kind::Ids,       Kind::Frag,       Kind::Sparse};

wl::Params small_params(Kind k, uint64_t seed) {
    wl::Params p;
    p.ops = 4000;
    p.heap_bytes = k == Kind::Sparse ? (16u << 20) : (1u << 20);
    p.max_block = k == Kind::Frames ? 16 : (k == Kind::Ids ? 32 : 8192);
    p.check_every = 100;
    p.seed = seed;
    return wl::resolve(k, p);
}

wl::Result run_one(Kind k, const wl::Params& p) {
    EXPECT_EQ(wl::params_error(k, p), nullptr) << wl::kind_name(k);
    HostEnv env;
    return wl::run(k, p, env);
}

// The fields two runs must agree on when they did the same thing.
std::vector<uint64_t> fingerprint(const wl::Result& r) {
    return {r.digest, r.allocs, r.frees, r.failures, r.bytes_peak, r.live_peak, r.pages_touched};
}

void expect_clean(Kind k, const wl::Params& p, const wl::Result& r) {
    SCOPED_TRACE(wl::kind_name(k));
    EXPECT_FALSE(r.map_failed);
    EXPECT_EQ(r.ops, p.ops);
    EXPECT_EQ(r.verify_errors, 0u);
    EXPECT_EQ(r.invariant_failures, 0u);
    EXPECT_GE(r.invariant_checks, p.ops / p.check_every);
    EXPECT_EQ(r.heap_bytes, p.heap_bytes);
    EXPECT_GT(r.allocs, 0u);
    EXPECT_GT(r.pages_touched, 0u);
    EXPECT_LE(r.pages_touched, p.heap_bytes / 4096);
    EXPECT_GT(r.live_peak, 0u);
    EXPECT_GE(r.bytes_peak, r.live_peak);
    EXPECT_EQ(r.cycles, 1u);  // HostEnv::now() counts calls: one before and one after the op loop
    if (k == Kind::Sparse) {
        EXPECT_EQ(r.frees, 0u);
        EXPECT_EQ(r.allocs, r.pages_touched);  // exactly the pages it wrote
        EXPECT_LE(r.pages_touched, p.heap_bytes / 4096 / 64);
    } else {
        EXPECT_EQ(r.allocs, r.frees);  // the drain frees everything
    }
    EXPECT_EQ(wl::exit_code(r), 0);
}

TEST(Workload, NamesRoundTrip) {
    for (Kind k : wl::kKinds) {
        Kind out{};
        ASSERT_TRUE(wl::kind_from_name(wl::kind_name(k), out)) << wl::kind_name(k);
        EXPECT_EQ(out, k);
    }
    Kind out{};
    EXPECT_FALSE(wl::kind_from_name("slab", out));
    EXPECT_FALSE(wl::kind_from_name("slab-churnx", out));
    EXPECT_FALSE(wl::kind_from_name("", out));
    EXPECT_FALSE(wl::kind_from_name(nullptr, out));
}

TEST(Workload, ParamsValidated) {
    for (Kind k : wl::kKinds) {
        SCOPED_TRACE(wl::kind_name(k));
        wl::Params p = wl::resolve(k, wl::Params{});
        EXPECT_EQ(wl::params_error(k, p), nullptr);
        EXPECT_GT(p.ops, 0u);
        EXPECT_EQ(p.check_every, wl::kDefaultCheckEvery);
        wl::Params bad = p;
        bad.flags = 4;
        EXPECT_NE(wl::params_error(k, bad), nullptr);
        bad = p;
        bad.heap_bytes = 4096;
        EXPECT_NE(wl::params_error(k, bad), nullptr);
        bad = p;
        bad.heap_bytes += 1;
        EXPECT_NE(wl::params_error(k, bad), nullptr);
        bad = p;
        bad.vcpus = 33;
        EXPECT_NE(wl::params_error(k, bad), nullptr);
        if (k != Kind::Sparse) {
            bad = p;
            bad.max_block = p.heap_bytes;
            EXPECT_NE(wl::params_error(k, bad), nullptr);
        }
    }
}

TEST(Workload, EveryWorkloadVerifiesClean) {
    for (Kind k : kSingleKinds) {
        const uint64_t seed = pv::test::test_seed(100 + static_cast<uint64_t>(k));
        SCOPED_TRACE(pv::test::seed_trace(seed));
        const wl::Params p = small_params(k, seed);
        expect_clean(k, p, run_one(k, p));
    }
}

TEST(Workload, ByteChurnHitsNoMemoryOnATightHeap) {
    // max_block a quarter of the heap: the grow phases must run into refusals.
    for (Kind k : {Kind::SlabChurn, Kind::BuddyChurn, Kind::TlsfChurn}) {
        const uint64_t seed = pv::test::test_seed(200 + static_cast<uint64_t>(k));
        SCOPED_TRACE(pv::test::seed_trace(seed));
        wl::Params p = small_params(k, seed);
        p.max_block = p.heap_bytes / 4;
        p.ops = 20000;
        const wl::Result r = run_one(k, p);
        expect_clean(k, p, r);
        EXPECT_GT(r.failures, 0u) << wl::kind_name(k);
    }
}

TEST(Workload, FragCountsLargeRequests) {
    const uint64_t seed = pv::test::test_seed(300);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    wl::Params p = small_params(Kind::Frag, seed);
    p.ops = 120000;
    p.check_every = 4000;  // TLSF's check walks every block
    p.max_block = 64 << 10;
    const wl::Result r = run_one(Kind::Frag, p);
    expect_clean(Kind::Frag, p, r);
    std::map<std::string, uint64_t> stats;
    for (uint32_t i = 0; i < r.stat_count; ++i) stats[r.stats[i].name] = r.stats[i].value;
    EXPECT_GE(stats["rounds"], 4u);
    EXPECT_EQ((stats["large_ok"] + stats["large_fail"]) % 32, 0u);
    EXPECT_GT(stats["large_ok"], 0u);    // the round with one contiguous hole
    EXPECT_GT(stats["large_fail"], 0u);  // the rounds that leave only small holes
    EXPECT_GT(r.failures, 0u);           // every fill ends with a refusal
}

TEST(Workload, CorruptionIsAlwaysCaught) {
    for (Kind k : kSingleKinds) {
        const uint64_t seed = pv::test::test_seed(400 + static_cast<uint64_t>(k));
        SCOPED_TRACE(pv::test::seed_trace(seed));
        SCOPED_TRACE(wl::kind_name(k));
        wl::Params p = small_params(k, seed);
        p.flags = pv::abi::kWorkloadCorrupt;
        const wl::Result r = run_one(k, p);
        EXPECT_GE(r.verify_errors, 1u);
        EXPECT_EQ(r.invariant_failures, 0u);  // behind the allocator's back: only the pattern notices
        EXPECT_EQ(wl::exit_code(r), 3);
    }
}

TEST(Workload, CorruptionCaughtWithFewOps) {
    for (Kind k : kSingleKinds) {
        SCOPED_TRACE(wl::kind_name(k));
        wl::Params p = small_params(k, pv::test::test_seed(450));
        SCOPED_TRACE(pv::test::seed_trace(p.seed));
        p.ops = 3;
        p.flags = pv::abi::kWorkloadCorrupt;
        EXPECT_GE(run_one(k, p).verify_errors, 1u);
    }
}

TEST(Workload, SameSeedSameRunOtherSeedOtherRun) {
    for (Kind k : kSingleKinds) {
        const uint64_t seed = pv::test::test_seed(500 + static_cast<uint64_t>(k));
        SCOPED_TRACE(pv::test::seed_trace(seed));
        SCOPED_TRACE(wl::kind_name(k));
        const wl::Params p = small_params(k, seed);
        wl::Params q = p;
        q.seed = seed ^ 0x5eed;
        const auto a = fingerprint(run_one(k, p));
        EXPECT_EQ(a, fingerprint(run_one(k, p)));
        EXPECT_NE(a, fingerprint(run_one(k, q)));
    }
}

TEST(Workload, PopulateFlagMapsTheHeapPopulated) {
    const wl::Params base = small_params(Kind::TlsfChurn, pv::test::test_seed(600));
    for (uint64_t flags : {uint64_t(0), pv::abi::kWorkloadPopulate}) {
        wl::Params p = base;
        p.flags = flags;
        HostEnv env;
        const wl::Result r = wl::run(Kind::TlsfChurn, p, env);
        EXPECT_EQ(wl::exit_code(r), 0);
        EXPECT_EQ(env.maps(), 2);                        // metadata + heap
        EXPECT_EQ(env.populated(), flags == 0 ? 1 : 2);  // metadata is always populated
    }
}

TEST(Workload, HeapMapFailureIsExit4) {
    for (Kind k : wl::kKinds) {
        SCOPED_TRACE(wl::kind_name(k));
        wl::Params p = small_params(k, 1);
        HostEnv env;
        env.fail_maps_of(p.heap_bytes);
        wl::MultiShared<std::mutex> shared;
        HostEnv menv(&shared);
        menv.fail_maps_of(p.heap_bytes);
        const wl::Result r = k == Kind::Multi ? wl::run(k, p, menv) : wl::run(k, p, env);
        EXPECT_TRUE(r.map_failed);
        EXPECT_EQ(r.map_bytes, p.heap_bytes);
        EXPECT_EQ(r.ops, 0u);
        EXPECT_EQ(wl::exit_code(r), 4);
    }
}

// multi: vcpus std::threads, one Env each, one MultiShared; vCPU 0's result is the aggregate.
std::vector<wl::Result> run_multi(wl::Params p, uint32_t vcpus) {
    auto shared = std::make_unique<wl::MultiShared<std::mutex>>();
    std::vector<wl::Result> results(vcpus);
    std::vector<std::thread> threads;
    p.vcpus = vcpus;
    for (uint32_t v = 0; v < vcpus; ++v) {
        threads.emplace_back([&, v, p]() mutable {
            p.vcpu = v;
            HostEnv env(shared.get());
            results[v] = wl::run(Kind::Multi, p, env);
        });
    }
    for (auto& t : threads) t.join();
    return results;
}

TEST(Workload, MultiThreadsShareALockedHeap) {
    for (uint32_t vcpus : {1u, 2u, 4u}) {
        const uint64_t seed = pv::test::test_seed(700 + vcpus);
        SCOPED_TRACE(pv::test::seed_trace(seed));
        wl::Params p = small_params(Kind::Multi, seed);
        p.ops = 3000;
        const auto results = run_multi(p, vcpus);
        const wl::Result& sum = results[0];
        EXPECT_EQ(sum.ops, p.ops * vcpus);
        EXPECT_EQ(sum.verify_errors, 0u);
        EXPECT_EQ(sum.invariant_failures, 0u);
        EXPECT_EQ(sum.heap_reinit_error, 1);
        EXPECT_EQ(sum.heap_bytes, p.heap_bytes * (vcpus + 1));
        EXPECT_EQ(sum.allocs, sum.frees);
        EXPECT_GT(sum.allocs, 0u);
        for (uint32_t v = 1; v < vcpus; ++v) {  // the others return their own part
            EXPECT_EQ(results[v].ops, p.ops);
            EXPECT_EQ(results[v].verify_errors, 0u);
            EXPECT_LE(results[v].allocs, sum.allocs);
        }
        EXPECT_EQ(wl::exit_code(sum), 0);
    }
}

TEST(Workload, MultiCorruptionCaught) {
    const uint64_t seed = pv::test::test_seed(800);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    wl::Params p = small_params(Kind::Multi, seed);
    p.flags = pv::abi::kWorkloadCorrupt;
    const auto results = run_multi(p, 2);
    EXPECT_GE(results[0].verify_errors, 1u);
    EXPECT_EQ(wl::exit_code(results[0]), 3);
}

}  // namespace
