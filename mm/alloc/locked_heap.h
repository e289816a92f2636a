// LockedHeap: a byte allocator behind a lock, initialised exactly once.
//
// What it is: the "global heap" pattern. A LockedHeap can be a global object
// (constant-initialised, no constructor runs before first use) shared by
// several threads or vCPUs; every operation takes the lock, then forwards to the
// single-threaded Allocator (an mm::ByteAllocator: Buddy, SlabHeap, Tlsf, ...).
// Lock is any BasicLockable type (pv::guest::SpinLock in the guest, std::mutex
// on the host) and must be default-constructible.
//
// Life cycle: Uninitialised --init(region) ok--> Initialised (for good).
//   - init() that fails (the allocator refused the region) leaves the heap
//     uninitialised and unchanged, so a caller may retry with another region.
//   - init() on an initialised heap is Error::AlreadyInitialized and changes
//     nothing: a second initialisation is never silent.
//   - alloc/dealloc/add_memory before init are Error::BadState (no crash).
//
// Invariants (check_invariants, under the lock): uninitialised => the counters
// are 0; initialised => the allocator's check_invariants() holds, its
// used + available == total, and allocs - frees is the number of live blocks
// (so allocs >= frees).
//
// Errors: BadState (not initialised), AlreadyInitialized (second init), and
// whatever the allocator returns (InvalidParam, NoMemory, MemoryOverlap,
// NotAllocated, ...), unchanged. A refused alloc counts in failed_allocs().
// Ownership: the heap owns the allocator object, not the memory of the regions
// (they must outlive the heap). Not copyable or movable (others point at it).
#pragma once

#include "mm/alloc/allocator.h"
#include "mm/result.h"
#include "mm/std.h"

namespace mm {

template <ByteAllocator Allocator, class Lock>
class LockedHeap {
public:
    // Counters and the allocator's statistics at one moment (one lock hold).
    struct Stats {
        bool initialized = false;
        size_t total_bytes = 0;
        size_t used_bytes = 0;
        size_t available_bytes = 0;
        uint64_t allocs = 0;         // successful allocs
        uint64_t frees = 0;          // successful deallocs
        uint64_t failed_allocs = 0;  // allocs the allocator refused (any error)
    };

    constexpr LockedHeap() = default;
    LockedHeap(const LockedHeap&) = delete;
    LockedHeap& operator=(const LockedHeap&) = delete;

    Status init(std::span<std::byte> region) {
        Guard g(m_lock);
        if (m_initialized) return err(Error::AlreadyInitialized);
        MM_TRY(m_alloc.init(region));
        m_initialized = true;
        return ok();
    }

    Status add_memory(std::span<std::byte> region) {
        Guard g(m_lock);
        if (!m_initialized) return err(Error::BadState);
        return m_alloc.add_memory(region);
    }

    Result<void*> alloc(size_t size, size_t align) {
        Guard g(m_lock);
        if (!m_initialized) return err(Error::BadState);
        Result<void*> r = m_alloc.alloc(size, align);
        if (r)
            ++m_allocs;
        else
            ++m_failed_allocs;
        return r;
    }

    Status dealloc(void* p, size_t size, size_t align) {
        Guard g(m_lock);
        if (!m_initialized) return err(Error::BadState);
        MM_TRY(m_alloc.dealloc(p, size, align));
        ++m_frees;
        return ok();
    }

    [[nodiscard]] bool is_initialized() const {
        Guard g(m_lock);
        return m_initialized;
    }

    [[nodiscard]] Stats stats() const {
        Guard g(m_lock);
        Stats s;
        s.initialized = m_initialized;
        if (m_initialized) {
            s.total_bytes = m_alloc.total_bytes();
            s.used_bytes = m_alloc.used_bytes();
            s.available_bytes = m_alloc.available_bytes();
        }
        s.allocs = m_allocs;
        s.frees = m_frees;
        s.failed_allocs = m_failed_allocs;
        return s;
    }

    // Runs f(const Allocator&) under the lock (allocator-specific statistics);
    // returns f's result. Before init the allocator is in its default state.
    template <class F>
    auto inspect(F&& f) const {
        Guard g(m_lock);
        return f(static_cast<const Allocator&>(m_alloc));
    }

    [[nodiscard]] bool check_invariants() const {
        Guard g(m_lock);
        if (!m_initialized) return m_allocs == 0 && m_frees == 0;
        return m_alloc.check_invariants() && m_allocs >= m_frees &&
               m_alloc.used_bytes() + m_alloc.available_bytes() == m_alloc.total_bytes();
    }

private:
    // A scoped hold of the lock (mm/ has no <mutex>, so no std::lock_guard).
    class Guard {
    public:
        explicit Guard(Lock& l) : m_l(l) { m_l.lock(); }
        ~Guard() { m_l.unlock(); }
        Guard(const Guard&) = delete;
        Guard& operator=(const Guard&) = delete;

    private:
        Lock& m_l;
    };

    mutable Lock m_lock{};
    bool m_initialized = false;
    uint64_t m_allocs = 0;
    uint64_t m_frees = 0;
    uint64_t m_failed_allocs = 0;
    Allocator m_alloc{};
};

}  // namespace mm
