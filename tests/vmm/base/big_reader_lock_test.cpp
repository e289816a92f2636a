// BigReaderLock (vmm/base/big_reader_lock.h): readers on different threads run
// together, a writer excludes every reader and writer, and a randomized
// reader/writer mix never observes a half-done update.
#include "vmm/base/big_reader_lock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "tests/support/seed.h"

namespace {

using pv::BigReaderLock;

TEST(BigReaderLock, ThreadsGetDifferentSlotsAndKeepTheirs) {
    unsigned a = BigReaderLock::slot();
    EXPECT_EQ(BigReaderLock::slot(), a);
    unsigned b = a;
    std::thread([&] { b = BigReaderLock::slot(); }).join();
    EXPECT_NE(a, b);  // round-robin: consecutive threads never share a slot
    EXPECT_LT(b, BigReaderLock::kSlots);
}

TEST(BigReaderLock, ReadersShareAndAWriterExcludesThem) {
    BigReaderLock lock;
    std::shared_lock mine(lock);
    std::atomic<bool> other_read{false};
    std::thread([&] {
        std::shared_lock theirs(lock);  // a second reader gets in while the first holds it
        other_read = true;
    }).join();
    EXPECT_TRUE(other_read);
    std::atomic<bool> wrote{false};
    std::thread writer([&] {
        std::unique_lock w(lock);
        wrote = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_FALSE(wrote) << "a writer got in beside a reader";
    std::thread([&] { EXPECT_FALSE(lock.try_lock()); }).join();
    mine.unlock();
    writer.join();
    EXPECT_TRUE(wrote);
    EXPECT_TRUE(lock.try_lock());
    std::thread([&] { EXPECT_FALSE(lock.try_lock_shared()); }).join();
    lock.unlock();
}

// Writers keep two counters equal; readers must always see them equal.
TEST(BigReaderLock, ReadersNeverSeeAHalfDoneWrite) {
    uint64_t seed = pv::test::test_seed(0xb16);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    BigReaderLock lock;
    uint64_t x = 0, y = 0;
    std::atomic<uint64_t> torn{0}, reads{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            uint64_t r = seed + static_cast<uint64_t>(t);
            while (!stop) {
                r = r * 6364136223846793005ULL + 1442695040888963407ULL;
                if ((r >> 60) == 0) {
                    std::unique_lock w(lock);
                    ++x;
                    ++y;
                } else {
                    std::shared_lock g(lock);
                    if (x != y) ++torn;
                    ++reads;
                }
            }
        });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop = true;
    for (auto& th : threads) th.join();
    EXPECT_EQ(torn, 0U);
    EXPECT_GT(reads, 0U);
    EXPECT_EQ(x, y);
}

}  // namespace
