// TlbCoordinator with plain threads standing in for vCPUs.
#include <atomic>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/seed.h"
#include "vmm/paging/tlb.h"

namespace pv::paging {
namespace {

TEST(Tlb, NoVcpuInGuestReturnsAtOnceWithoutKicks) {
    TlbCoordinator tlb(4);
    int kicks = 0;
    EXPECT_EQ(tlb.shootdown([&](uint32_t) { ++kicks; }), 1U);
    EXPECT_EQ(kicks, 0);
    for (uint32_t v = 0; v < 4; ++v) EXPECT_TRUE(tlb.flush_pending(v)) << "they flush when they next enter";
    tlb.begin(2);
    EXPECT_EQ(tlb.flush_generation(2), 1U);
    tlb.ack(2, 1);
    EXPECT_FALSE(tlb.flush_pending(2));
    tlb.ack(2, 0);  // acks never go backwards
    EXPECT_FALSE(tlb.flush_pending(2));
    tlb.end(2);
}

TEST(Tlb, WaitsForAVcpuInGuestUntilItAcksOrExits) {
    TlbCoordinator tlb(2);
    for (bool exit_instead : {false, true}) {
        tlb.begin(1);
        if (uint64_t g = tlb.flush_generation(1)) tlb.ack(1, g);
        std::atomic<bool> kicked{false};
        std::atomic<bool> returned{false};
        std::thread initiator([&] {
            tlb.shootdown([&](uint32_t v) {
                EXPECT_EQ(v, 1U);
                kicked.store(true);
            });
            returned.store(true);
        });
        while (!kicked.load()) std::this_thread::yield();
        EXPECT_FALSE(returned.load()) << "must not return while vCPU 1 may use old translations";
        if (exit_instead) {
            tlb.end(1);
        } else {
            tlb.ack(1, tlb.flush_generation(1));
        }
        initiator.join();
        EXPECT_TRUE(returned.load());
        if (!exit_instead) tlb.end(1);
    }
    EXPECT_GE(tlb.kicks(), 2U);
}

// vCPU threads cache a "translation version" at their last flush; the initiator
// publishes a new version, shoots down, and then checks that no vCPU in guest
// mode still runs with an older one.
TEST(Tlb, NoVcpuUsesAStaleTranslationAfterShootdown) {
    constexpr uint32_t kVcpus = 3;
    TlbCoordinator tlb(kVcpus);
    std::atomic<uint64_t> version{0};
    std::atomic<uint64_t> completed{0};  // newest version whose shootdown returned
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> violations{0};
    std::vector<std::atomic<bool>> kick(kVcpus);
    uint64_t seed = pv::test::test_seed(0x71b);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::atomic<uint32_t> started{0};
    auto vcpu = [&](uint32_t v) {
        std::mt19937_64 rng(seed + v);
        uint64_t cached = version.load();
        started.fetch_add(1);
        while (!stop.load()) {
            tlb.begin(v);
            if (uint64_t g = tlb.flush_generation(v)) {
                cached = version.load();  // flush: reload the translation
                tlb.ack(v, g);
            }
            // Half of the time the "guest" runs until it is kicked, so shootdowns must kick.
            bool until_kicked = rng() % 2 == 0;
            for (uint64_t spin = rng() % 2000; (until_kicked || spin > 0) && !kick[v].exchange(false); --spin) {
                if (cached < completed.load()) violations.fetch_add(1);  // "guest" uses its TLB
                if (stop.load()) break;
            }
            tlb.end(v);
            if (rng() % 4 == 0) std::this_thread::yield();
        }
    };
    std::vector<std::thread> threads;
    for (uint32_t v = 0; v < kVcpus; ++v) threads.emplace_back(vcpu, v);
    while (started.load() < kVcpus) std::this_thread::yield();
    for (uint64_t round = 1; round <= 300; ++round) {
        version.store(round);  // "unmap": the old translation is gone
        tlb.shootdown([&](uint32_t v) { kick[v].store(true); });
        completed.store(round);
    }
    stop.store(true);
    for (auto& t : threads) t.join();
    EXPECT_EQ(violations.load(), 0U);
    EXPECT_EQ(tlb.shootdowns(), 300U);
    std::printf("kicks: %llu\n", static_cast<unsigned long long>(tlb.kicks()));
}

}  // namespace
}  // namespace pv::paging
