// Atomics and a spinlock for guest code shared between vCPUs.
//
// Thin wrappers over the GCC __atomic builtins (they compile to plain
// instructions on x86-64 and need no library). SpinLock satisfies
// BasicLockable (lock/unlock/try_lock), so it can be the lock parameter of the
// mm/ structures that take one.
#pragma once

#include "mm/std.h"

namespace pv::guest {

enum class MemoryOrder : int {
    Relaxed = __ATOMIC_RELAXED,
    Acquire = __ATOMIC_ACQUIRE,
    Release = __ATOMIC_RELEASE,
    AcqRel = __ATOMIC_ACQ_REL,
    SeqCst = __ATOMIC_SEQ_CST,
};

// Tells the CPU (and a hypervisor with pause-loop exiting) that we are spinning.
inline void cpu_relax() { __builtin_ia32_pause(); }

// Stops the compiler from moving memory accesses across this point.
inline void compiler_barrier() { asm volatile("" ::: "memory"); }

template <class T>
class Atomic {
    static_assert(std::is_integral_v<T> || std::is_pointer_v<T>, "Atomic<T> holds integers or pointers");

public:
    constexpr Atomic() = default;
    constexpr explicit Atomic(T v) : m_value(v) {}
    Atomic(const Atomic&) = delete;
    Atomic& operator=(const Atomic&) = delete;

    T load(MemoryOrder o = MemoryOrder::SeqCst) const { return __atomic_load_n(&m_value, int(o)); }
    void store(T v, MemoryOrder o = MemoryOrder::SeqCst) { __atomic_store_n(&m_value, v, int(o)); }
    T exchange(T v, MemoryOrder o = MemoryOrder::SeqCst) { return __atomic_exchange_n(&m_value, v, int(o)); }
    T fetch_add(T v, MemoryOrder o = MemoryOrder::SeqCst) { return __atomic_fetch_add(&m_value, v, int(o)); }
    T fetch_sub(T v, MemoryOrder o = MemoryOrder::SeqCst) { return __atomic_fetch_sub(&m_value, v, int(o)); }
    // On failure `expected` receives the current value.
    bool compare_exchange(T& expected, T desired, MemoryOrder o = MemoryOrder::SeqCst) {
        return __atomic_compare_exchange_n(&m_value, &expected, desired, false, int(o), int(MemoryOrder::Relaxed));
    }

private:
    T m_value{};
};

// Test-and-test-and-set spinlock. Not recursive; unlock by a non-owner is a bug.
class SpinLock {
public:
    void lock() {
        while (m_locked.exchange(1, MemoryOrder::Acquire) != 0) {
            while (m_locked.load(MemoryOrder::Relaxed) != 0) cpu_relax();
        }
    }
    bool try_lock() { return m_locked.exchange(1, MemoryOrder::Acquire) == 0; }
    void unlock() { m_locked.store(0, MemoryOrder::Release); }
    [[nodiscard]] bool is_locked() const { return m_locked.load(MemoryOrder::Relaxed) != 0; }

private:
    Atomic<uint32_t> m_locked{0};
};

template <class Lock>
class LockGuard {
public:
    explicit LockGuard(Lock& l) : m_lock(l) { m_lock.lock(); }
    ~LockGuard() { m_lock.unlock(); }
    LockGuard(const LockGuard&) = delete;
    LockGuard& operator=(const LockGuard&) = delete;

private:
    Lock& m_lock;
};

}  // namespace pv::guest
