// BigReaderLock: a reader-writer lock whose readers write no shared cache line.
//
// What it is: kSlots mutexes, each on a cache line of its own. A reader locks
// the slot of its thread (a thread-local index handed out round-robin when a
// thread first reads any BigReaderLock); a writer locks every slot in index
// order. Readers on different threads therefore touch different lines (two
// threads that share a slot serialise with each other, which is correct and
// rare), and a writer excludes all readers. It meets the standard
// SharedMutex requirements used here (lock/unlock, lock_shared/unlock_shared,
// try_lock_shared), so std::shared_lock and std::unique_lock work with it.
//
// Cost: lock_shared is one uncontended mutex acquisition on the reader's own
// line; lock() is kSlots acquisitions. Meant for read-mostly tables on hot
// paths (the guest-physical area table read by every vCPU's fault path).
// Not recursive: a thread holding it (shared or exclusive) must not lock it again.
// A shared lock must be released by the thread that took it.
#pragma once

#include <array>
#include <atomic>
#include <mutex>

namespace pv {

class BigReaderLock {
public:
    static constexpr unsigned kSlots = 32;

    void lock_shared() { m_slots[slot()].mutex.lock(); }
    bool try_lock_shared() { return m_slots[slot()].mutex.try_lock(); }
    void unlock_shared() { m_slots[slot()].mutex.unlock(); }

    void lock() {
        for (auto& s : m_slots) s.mutex.lock();
    }
    bool try_lock() {
        for (unsigned i = 0; i < kSlots; ++i) {
            if (m_slots[i].mutex.try_lock()) continue;
            while (i > 0) m_slots[--i].mutex.unlock();
            return false;
        }
        return true;
    }
    void unlock() {
        for (unsigned i = kSlots; i > 0; --i) m_slots[i - 1].mutex.unlock();
    }

    // The slot the calling thread reads through (for tests).
    static unsigned slot() {
        static std::atomic<unsigned> next{0};
        thread_local const unsigned mine = next.fetch_add(1, std::memory_order_relaxed) % kSlots;
        return mine;
    }

private:
    struct alignas(64) Slot {
        std::mutex mutex;
    };
    std::array<Slot, kSlots> m_slots;
};

}  // namespace pv
