// Internal helpers of PageTable (mm/paging/page_table.h): the ancestor path used for
// loop detection, effective-permission accumulation, the result of a single-address
// walk, and the table reservation that makes unmap/protect all-or-nothing on NoMemory.
// Not part of the public API.
#pragma once

#include "mm/addr.h"
#include "mm/paging/pte.h"
#include "mm/result.h"
#include "mm/std.h"

namespace mm::x86 {

namespace detail {

// The frames of the tables above the current one, for loop detection.
struct TablePath {
    GuestFrame frames[4];
    size_t depth = 0;

    [[nodiscard]] constexpr bool contains(GuestFrame f) const {
        for (size_t i = 0; i < depth; ++i)
            if (frames[i] == f) return true;
        return false;
    }
    constexpr void push(GuestFrame f) {
        MM_ASSERT(depth < 4);
        frames[depth++] = f;
    }
    [[nodiscard]] constexpr TablePath with(GuestFrame f) const {
        TablePath p = *this;
        p.push(f);
        return p;
    }
};

// Effective permission accumulated over a walk (RW and US AND-ed, NX OR-ed).
struct WalkPerm {
    bool write = true;
    bool user = true;
    bool exec = true;

    constexpr void add(uint64_t raw) {
        write = write && (raw & pte::kWrite);
        user = user && (raw & pte::kUser);
        exec = exec && !(raw & pte::kNoExec);
    }
    [[nodiscard]] constexpr Perm perm() const {
        Perm p = Perm::Read;
        if (write) p |= Perm::Write;
        if (user) p |= Perm::User;
        if (exec) p |= Perm::Exec;
        return p;
    }
};

// The leaf a walk ended on.
struct Leaf {
    uint64_t* slot;
    uint64_t raw;
    Level level;
    WalkPerm perm;
};

// Tables allocated before a range operation starts, so that it cannot run out
// half-way (at most two boundaries, each needing a PD and a PT).
template <class M>
struct TablePool {
    static constexpr size_t kCapacity = 4;
    GuestFrame frames[kCapacity];
    size_t count = 0;

    Status fill(M* mem, size_t n) {
        MM_ASSERT(n <= kCapacity);
        while (count < n) {
            auto f = mem->alloc_table();
            if (!f) {
                release(mem);
                return err(Error::NoMemory);
            }
            frames[count++] = *f;
        }
        return ok();
    }
    // Falls back to the allocator if the table changed between counting and use.
    Result<GuestFrame> take(M* mem) {
        if (count > 0) return frames[--count];
        return mem->alloc_table();
    }
    // Returns an unused (still zeroed, never published) table taken from this pool.
    void put(GuestFrame f) {
        MM_ASSERT(count < kCapacity);
        frames[count++] = f;
    }
    void release(M* mem) {
        while (count > 0) mem->free_table(frames[--count]);
    }
};

// Boundary splits an unmap/protect will perform: distinct (level, page base) pairs.
struct SplitSet {
    struct Item {
        Level level;
        uint64_t base;
    };
    Item items[4];
    size_t count = 0;

    constexpr void add(Level l, uint64_t base) {
        for (size_t i = 0; i < count; ++i)
            if (items[i].level == l && items[i].base == base) return;
        MM_ASSERT(count < 4);
        items[count++] = Item{l, base};
    }
};

}  // namespace detail

}  // namespace mm::x86
