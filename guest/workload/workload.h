// pv::workload: the allocator workloads (issue #7), one engine for the guest
// and the host. Freestanding and header-only (mm/std.h, mm/ allocators), so the
// guest programs (guest/programs/alloc.cpp), the host unit tests
// (tests/guest/workload_test.cpp) and the host side of the benchmark run the
// very same code.
//
// API
//   enum class Kind { SlabChurn, BuddyChurn, TlsfChurn, Frames, Ids, Frag, Sparse, Multi };
//   const char* kind_name(Kind);                         // "slab-churn", ...
//   bool kind_from_name(const char* name, Kind& out);    // the names of docs/guest.md
//   Params resolve(Kind, Params);                        // zero fields -> the kind's defaults
//   const char* params_error(Kind, const Params&);       // nullptr, or a one-line reason (exit 2)
//   template <class Env> Result run(Kind, const Params&, Env&);
//   int exit_code(const Result&);                        // 0 ok, 3 verify/invariant errors, 4 map failed
//
// Env (one per vCPU / thread; the engine calls it from that vCPU only):
//   void* map(uint64_t bytes, bool populate)  page-aligned, zeroed memory, nullptr on failure
//   void unmap(void* p, uint64_t bytes)       gives back what map returned
//   uint64_t now()                            a cycle counter (rdtsc)
//   Multi only:
//   using Lock = <BasicLockable, default-constructible>
//   MultiShared<Lock>& shared()               one object for every vCPU of the run, value-initialised
//                                             before any vCPU starts
//   void relax()                              spin-wait hint (pause / yield)
// The heap (heap_bytes) is mapped with populate = (flags & kWorkloadPopulate);
// the engine's own metadata (block tables, page bitmaps, allocator objects) is
// mapped separately with populate = true, so on a demand-paged guest the page
// faults of a run are those of the heap.
//
// Every run performs exactly p.ops operations (an alloc attempt, a free, a page
// touch ...) in its timed loop, fills every block with a pattern derived from
// (address, size, seed) when it is allocated, verifies it before freeing it, and
// at the end verifies and frees every live block (those frees count in `frees`,
// not in `ops`); check_invariants() runs every check_every ops and at the end,
// where "everything freed => used == 0" is checked too.
// kWorkloadCorrupt: at op min(2000, ops/2) (or at the end if no block was live
// then) one byte of one live block is changed behind the allocator's back, so
// verify_errors >= 1.
#pragma once

#include "guest/workload/byte_churn.h"
#include "guest/workload/common.h"
#include "guest/workload/frag.h"
#include "guest/workload/pages.h"

namespace pv::workload {

constexpr const char* kind_name(Kind k) {
    switch (k) {
        case Kind::SlabChurn: return "slab-churn";
        case Kind::BuddyChurn: return "buddy-churn";
        case Kind::TlsfChurn: return "tlsf-churn";
        case Kind::Frames: return "frames";
        case Kind::Ids: return "ids";
        case Kind::Frag: return "frag";
        case Kind::Sparse: return "sparse";
        case Kind::Multi: return "multi";
    }
    return "?";
}

inline bool kind_from_name(const char* name, Kind& out) {
    if (name == nullptr) return false;
    for (Kind k : kKinds) {
        const char* n = kind_name(k);
        size_t i = 0;
        while (i < kMaxNameLen && n[i] != '\0' && n[i] == name[i]) ++i;
        if (n[i] == '\0' && name[i] == '\0') {
            out = k;
            return true;
        }
    }
    return false;
}

// Defaults: small enough that a run takes well under a second in a PVM guest
// (each first touch of a heap page is a guest page fault served by pagevisor).
struct Defaults {
    uint64_t ops;
    uint64_t heap_bytes;
    uint64_t max_block;  // bytes (byte allocators), pages (frames), IDs (ids)
};

constexpr Defaults defaults(Kind k) {
    constexpr uint64_t kMiB = uint64_t(1) << 20;
    switch (k) {
        case Kind::SlabChurn: return {100000, 16 * kMiB, 8192};
        case Kind::BuddyChurn: return {100000, 16 * kMiB, 65536};
        case Kind::TlsfChurn: return {100000, 16 * kMiB, 65536};
        case Kind::Frames: return {100000, 16 * kMiB, 16};
        case Kind::Ids: return {100000, 1 * kMiB, 64};
        case Kind::Frag: return {100000, 4 * kMiB, 65536};
        case Kind::Sparse: return {100000, 256 * kMiB, 0};
        case Kind::Multi: return {50000, 8 * kMiB, 4096};
    }
    return {0, 0, 0};
}

inline constexpr uint64_t kDefaultCheckEvery = 1000;

constexpr Params resolve(Kind k, Params p) {
    const Defaults d = defaults(k);
    if (p.ops == 0) p.ops = d.ops;
    if (p.heap_bytes == 0) p.heap_bytes = d.heap_bytes;
    if (p.max_block == 0) p.max_block = d.max_block;
    if (p.check_every == 0) p.check_every = kDefaultCheckEvery;
    if (p.vcpus == 0) p.vcpus = 1;
    return p;
}

// Limits: what the engine's metadata and 64-bit counters are sized for.
inline constexpr uint64_t kMaxOps = uint64_t(1) << 40;
inline constexpr uint64_t kMinHeap = uint64_t(1) << 20;
inline constexpr uint64_t kMaxHeap = uint64_t(1) << 40;
inline constexpr uint64_t kMaxByteBlock = uint64_t(1) << 24;
inline constexpr uint64_t kMaxPageRun = 1024;
inline constexpr uint64_t kMaxIdRun = 4096;
inline constexpr uint32_t kMaxVcpus = 32;

// nullptr if p (after resolve) is usable, else why not (one line, no newline).
constexpr const char* params_error(Kind k, const Params& p) {
    if ((p.flags & ~abi::kWorkloadKnownFlags) != 0) return "unknown workload flag bits";
    if (p.ops > kMaxOps) return "ops above 2^40";
    if (p.heap_bytes < kMinHeap) return "heap below 1 MiB";
    if (p.heap_bytes > kMaxHeap) return "heap above 1 TiB";
    if (p.heap_bytes % kPage != 0) return "heap not a multiple of 4 KiB";
    if (p.vcpus == 0 || p.vcpus > kMaxVcpus || p.vcpu >= p.vcpus) return "bad vCPU index or count";
    if (k != Kind::Multi && p.vcpus != 1 && p.vcpu != 0) return "only vCPU 0 runs this workload";
    switch (k) {
        case Kind::Frames:
            if (p.max_block > kMaxPageRun) return "max_block (pages) above 1024";
            if (p.max_block * kPage * 4 > p.heap_bytes) return "max_block (pages) above a quarter of the heap";
            return nullptr;
        case Kind::Ids:
            if (p.max_block > kMaxIdRun) return "max_block (IDs) above 4096";
            return nullptr;
        case Kind::Sparse: return nullptr;
        default:
            if (p.max_block > kMaxByteBlock) return "max_block above 16 MiB";
            if (p.max_block * 4 > p.heap_bytes) return "max_block above a quarter of the heap";
            return nullptr;
    }
}

template <class Env>
Result run(Kind k, const Params& p, Env& env) {
    switch (k) {
        case Kind::SlabChurn: return detail::run_single_churn<mm::SlabHeap<>>(p, env);
        case Kind::BuddyChurn: return detail::run_single_churn<mm::Buddy<>>(p, env);
        case Kind::TlsfChurn: return detail::run_single_churn<mm::Tlsf<>>(p, env);
        case Kind::Frames: return detail::run_frames(p, env);
        case Kind::Ids: return detail::run_ids(p, env);
        case Kind::Frag: return detail::run_frag(p, env);
        case Kind::Sparse: return detail::run_sparse(p, env);
        case Kind::Multi: return detail::run_multi(p, env);
    }
    return Result{};
}

constexpr int exit_code(const Result& r) {
    if (r.map_failed) return 4;
    if (r.verify_errors != 0 || r.invariant_failures != 0) return 3;
    return 0;
}

}  // namespace pv::workload
