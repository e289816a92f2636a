// WorldGate without KVM: threads stand in for vCPUs ("guest mode" is the time
// between enter() and leave(), which they leave early when kicked); stoppers on
// other threads and on the vCPU threads themselves run functions that must
// never overlap any vCPU's guest mode.
#include "vmm/run/world_gate.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "tests/support/seed.h"

namespace pv::run {
namespace {

constexpr uint32_t kVcpus = 3;

struct Harness {
    std::atomic<bool> kicked[kVcpus] = {};
    std::atomic<uint32_t> in_guest{0};  // vCPUs between enter() and leave(), counted by themselves
    std::atomic<uint64_t> kicks{0};
    WorldGate gate{kVcpus, [this](uint32_t v) {
                       kicked[v].store(true);
                       kicks.fetch_add(1);
                   }};

    // One "KVM_RUN": stays in guest mode up to `spins` yields or until kicked.
    void run_once(uint32_t v, int spins) {
        gate.enter(v);
        in_guest.fetch_add(1);
        for (int i = 0; i < spins && !kicked[v].exchange(false); ++i) std::this_thread::yield();
        in_guest.fetch_sub(1);
        gate.leave(v);
    }
};

TEST(WorldGate, StoppedFunctionNeverOverlapsGuestMode) {
    const uint64_t seed = pv::test::test_seed(0x9a7e);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    Harness h;
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> overlaps{0};
    std::atomic<uint64_t> stops_run{0};
    std::atomic<uint32_t> in_fn{0};
    auto stopped_fn = [&] {
        if (in_fn.fetch_add(1) != 0) overlaps.fetch_add(1);  // stoppers are serialised
        if (h.in_guest.load() != 0) overlaps.fetch_add(1);
        std::this_thread::yield();
        if (h.in_guest.load() != 0) overlaps.fetch_add(1);
        in_fn.fetch_sub(1);
        stops_run.fetch_add(1);
    };
    std::vector<std::thread> threads;
    for (uint32_t v = 0; v < kVcpus; ++v)
        threads.emplace_back([&, v] {
            std::mt19937_64 rng(seed + v);
            while (!stop.load()) {
                h.run_once(v, static_cast<int>(rng() % 200));
                if (v == 0 && rng() % 16 == 0) h.gate.with_world_stopped(stopped_fn);  // from a vCPU thread
            }
        });
    std::vector<std::thread> stoppers;
    for (int s = 0; s < 2; ++s)
        stoppers.emplace_back([&] {
            for (int i = 0; i < 300; ++i) h.gate.with_world_stopped(stopped_fn);
        });
    for (auto& t : stoppers) t.join();
    stop.store(true);
    for (auto& t : threads) t.join();
    EXPECT_EQ(overlaps.load(), 0U);
    EXPECT_GE(stops_run.load(), 600U);
    EXPECT_EQ(h.gate.stops(), stops_run.load());
    for (uint32_t v = 0; v < kVcpus; ++v) EXPECT_FALSE(h.gate.inside(v));
}

// A vCPU that stays in guest mode until kicked: the stop kicks it (again, if the
// first kick was consumed before it noticed) and completes.
TEST(WorldGate, StopKicksAVcpuThatStaysInGuestMode) {
    Harness h;
    std::atomic<bool> entered{false};
    std::atomic<bool> stop{false};
    std::atomic<bool> done{false};
    std::thread vcpu([&] {
        while (!stop.load()) {
            h.gate.enter(0);
            entered.store(true);
            while (!h.kicked[0].exchange(false)) std::this_thread::yield();
            h.gate.leave(0);
        }
        done.store(true);
    });
    while (!entered.load()) std::this_thread::yield();
    int value = h.gate.with_world_stopped([&] { return h.gate.inside(0) ? -1 : 42; });
    EXPECT_EQ(value, 42) << "fn's result is returned";
    EXPECT_GE(h.kicks.load(), 1U);
    stop.store(true);
    while (!done.load()) {  // it may be back in guest mode waiting for a kick
        h.kicked[0].store(true);
        std::this_thread::yield();
    }
    vcpu.join();
}

// A vCPU thread blocked outside guest mode (here: on a mutex the stopper holds)
// counts as stopped: the stop does not wait for it.
TEST(WorldGate, VcpuBlockedOutsideGuestModeCountsAsStopped) {
    Harness h;
    std::mutex held;
    std::unique_lock lock(held);
    std::atomic<bool> blocked{false};
    std::thread vcpu([&] {
        h.run_once(1, 10);
        blocked.store(true);
        std::lock_guard wait(held);  // blocks until the stop is over
    });
    while (!blocked.load()) std::this_thread::yield();
    bool ran = false;
    h.gate.with_world_stopped([&] { ran = true; });
    EXPECT_TRUE(ran);
    lock.unlock();
    vcpu.join();
}

// enter() during a stop waits for its end instead of entering guest mode.
TEST(WorldGate, EnterWaitsWhileTheWorldIsStopped) {
    Harness h;
    std::atomic<bool> in_stop{false};
    std::atomic<bool> release{false};
    std::atomic<bool> entered{false};
    std::thread stopper([&] {
        h.gate.with_world_stopped([&] {
            in_stop.store(true);
            while (!release.load()) std::this_thread::yield();
            EXPECT_FALSE(entered.load()) << "a vCPU entered guest mode during the stop";
        });
    });
    while (!in_stop.load()) std::this_thread::yield();
    std::thread vcpu([&] {
        h.gate.enter(2);
        entered.store(true);
        h.gate.leave(2);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    release.store(true);
    stopper.join();
    vcpu.join();
    EXPECT_TRUE(entered.load());
}

}  // namespace
}  // namespace pv::run
