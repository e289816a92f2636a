// TablePool: the TableMemory that mm::x86::PageTable uses for the guest's page
// tables. Tables are 4 KiB frames taken from the layout's page-table pool
// [kPageTablePoolAddr, + kPageTablePoolSize) inside guest RAM, tracked by a
// bitmap (bit i = frame i of the pool is a table).
//
// table() is bounds-checked to the pool: a corrupt entry pointing anywhere
// else yields mm::Error::OutOfRange, so a page walk never touches host memory
// outside the pool. alloc_table() returns a zeroed frame or NoMemory.
// Not thread-safe for alloc/free; table() is read-only and may be called
// concurrently (guest-access walks from several vCPU threads).
#pragma once

#include <bitset>

#include "mm/addr.h"
#include "mm/result.h"
#include "vmm/abi/layout.h"

namespace pv::memory {
class GuestMemory;
}

namespace pv::x86 {

class TablePool {
public:
    static constexpr uint64_t kFrames = layout::kPageTablePoolSize / layout::kPage;

    // `mem` must contain the pool and outlive the TablePool.
    explicit TablePool(const memory::GuestMemory& mem);

    [[nodiscard]] mm::Result<uint64_t*> table(mm::GuestFrame frame) const;
    [[nodiscard]] mm::Result<mm::GuestFrame> alloc_table();
    // Returns `frame` to the pool; ignored if it is not a pool table in use (see release_table).
    void free_table(mm::GuestFrame frame) { (void)release_table(frame); }
    // The same, answering whether it was one: a frame reached through guest-written
    // page-table entries can be anything, so this is an answer, not an assertion.
    bool release_table(mm::GuestFrame frame);

    // Restoring a snapshot: forget every table in use (reset), then mark the
    // tables the restored page table uses (claim: false if `frame` is not a pool
    // frame or is already claimed). Neither touches the tables' contents.
    void reset() { m_used.reset(); }
    bool claim(mm::GuestFrame frame);
    [[nodiscard]] bool contains(mm::GuestFrame frame) const { return in_pool(frame); }

    [[nodiscard]] uint64_t used() const { return m_used.count(); }
    [[nodiscard]] bool check_invariants() const;

private:
    [[nodiscard]] bool in_pool(mm::GuestFrame frame) const;
    std::byte* m_base = nullptr;  // host address of kPageTablePoolAddr
    std::bitset<kFrames> m_used;
};

}  // namespace pv::x86
