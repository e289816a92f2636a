// GuestMemory: a guest's guest-physical address space. A MemorySet (mm/) of
// areas over GPA, each with a backend, realised as KVM memslots over host
// mappings (docs/memory-config.md, docs/demand-paging.md).
//
// Backends (AreaKind):
//   Eager     anonymous host memory; the kernel fills a first touch (prefault:
//             populated when mapped)
//   Demand    anonymous host memory registered with the userfaultfd FaultServer:
//             pagevisor resolves every first touch (zero-fill, fault-around,
//             charged to the area's guest node in NodeAccounting)
//   ReadOnly  host memory filled with the area's contents, a KVM_MEM_READONLY
//             memslot: guest reads see the contents, a guest write exits (the
//             VMM reports "write to read-only guest memory")
//   Hole      no memslot (MMIO, the hypercall doorbell): any guest access exits
//             and is reported as an unmapped access naming the hole
//
// Consistency: after every call the memslots, the fault server's registrations
// and the host mappings are exactly what the set describes. Each area piece has
// one memslot; cutting an area (a partial unmap/protect) deletes its memslot
// and creates one per remaining piece. Frames: unmapping returns the host
// memory (MADV_DONTNEED) and uncharges the demand pages that were resident.
// Memslot changes while vCPUs run are the caller's job to fence (pause the
// vCPUs): between deleting and recreating a slot a guest access would exit.
//
// Host mappings: every mapped area gets its own reservation with a PROT_NONE
// guard page on each side; unmapped pieces become PROT_NONE too and the
// reservation is released only when the GuestMemory is destroyed, so a stale
// host pointer faults instead of reaching other memory. host_span() checks that
// the whole range lies in ONE RAM area (Hole areas have no host memory).
//
// Threads: map/unmap/protect/register_with take the set's lock exclusively;
// host_span, find_area, areas and stats take it shared (a BigReaderLock: the
// readers on different threads write no common cache line). A moved-from object is
// empty (no areas; changes fail). Ownership: owns the
// host mappings; the FaultServer and NodeAccounting it is given (DemandHooks)
// must outlive it, and the VM must not run once it is destroyed.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mm/addr.h"
#include "vmm/base/error.h"
#include "vmm/memory/host_pool.h"

namespace pv::kvm {
class Vm;
}

namespace pv::memory {

class FaultServer;

enum class AreaKind : uint8_t { Eager, Demand, ReadOnly, Hole };
std::string_view to_string(AreaKind kind);

struct AreaSpec {
    std::string name;  // for messages and statistics (zone id, "system", "device-window")
    mm::GuestPhysRange gpa;
    AreaKind kind = AreaKind::Eager;
    uint32_t node = 0;                         // guest NUMA node
    std::optional<PoolConfig> policy;          // mbind of the host memory (none: the process policy)
    bool prefault = false;                     // Eager: populate every page when mapped
    std::span<const std::byte> contents = {};  // ReadOnly: initial bytes (the rest is zero)
};

struct AreaInfo {
    uint32_t id = 0;  // stable per mapped area (pieces of a cut area keep it)
    std::string name;
    mm::GuestPhysRange gpa;
    AreaKind kind = AreaKind::Eager;
    uint32_t node = 0;
    bool read_only = false;
    std::byte* host = nullptr;  // host address of gpa.start(); nullptr for holes
};

struct AreaStats {
    AreaInfo area;
    uint64_t resident_pages = 0;  // host pages present now (mincore)
};

// What demand areas need; both may be null when there is no demand area.
struct DemandHooks {
    FaultServer* server = nullptr;
    NodeAccounting* accounting = nullptr;
};

class GuestMemory {
public:
    struct Region {
        mm::GuestPhysRange gpa;
        std::byte* host = nullptr;  // host address of gpa.start()
    };

    // The classic layout: RAM [0, min(size, kLowRamLimit)) and, when larger,
    // [4 GiB, 4 GiB + the rest), eager, no NUMA policy; `size` page aligned, >= kMinRamSize.
    static Expected<GuestMemory> create(uint64_t size);
    // An empty space; areas come from map().
    static Expected<GuestMemory> create_empty(DemandHooks hooks = {});

    GuestMemory(GuestMemory&& o) noexcept;
    GuestMemory& operator=(GuestMemory&& o) noexcept;
    GuestMemory(const GuestMemory&) = delete;
    GuestMemory& operator=(const GuestMemory&) = delete;
    ~GuestMemory();

    // Adds an area. Invalid error (one line naming the area) for an empty or
    // unaligned range, an overlap with another area, a Demand area without
    // hooks, contents larger than the area; Resource/Kvm errors from the host.
    // On error nothing changed.
    [[nodiscard]] Status map(const AreaSpec& spec);
    // Removes every area piece inside `range` (areas are cut at its ends).
    [[nodiscard]] Status unmap(mm::GuestPhysRange range);
    // Makes the RAM area pieces inside `range` read-only or writable again
    // (memslot flags); holes are left alone.
    [[nodiscard]] Status protect(mm::GuestPhysRange range, bool read_only);

    // Realises every area as a memslot of `vm`; later changes update it. Once.
    [[nodiscard]] Status register_with(const kvm::Vm& vm) const;

    // Makes KVM drop every cached guest translation (shadow pages / EPT) of the
    // VM's RAM by deleting and re-creating each RAM memslot. Needed after the
    // VMM edited guest page tables from the host: a shadow MMU only notices the
    // guest's own writes to them, and a CR3 reload or a KVM_SET_SREGS does not
    // resynchronise (measured on PVM). No vCPU may be in guest mode meanwhile
    // (run/world_gate.h): between delete and create its accesses would exit.
    [[nodiscard]] Status zap_translations() const;

    // A hint that the host is about to write guest RAM [gpa, gpa + len) (page
    // aligned): populates its host pages with one MADV_POPULATE_WRITE (for a
    // demand-paged area that is a userfaultfd fault, served as usual). Contents
    // never change; a range outside RAM or a kernel without the advice does nothing.
    void prefault(mm::GuestPhysAddr gpa, uint64_t len) const;

    // Bytes of writable RAM (every area but holes and read-only areas).
    [[nodiscard]] uint64_t size() const;
    // End of the writable RAM that starts at GPA 0 and continues without a gap below 4 GiB.
    [[nodiscard]] uint64_t low_end() const;
    // The RAM areas' pieces, in GPA order.
    [[nodiscard]] std::vector<Region> regions() const;
    [[nodiscard]] std::vector<AreaInfo> areas() const;
    [[nodiscard]] std::optional<AreaInfo> find_area(mm::GuestPhysAddr gpa) const;
    [[nodiscard]] std::vector<AreaStats> stats() const;
    [[nodiscard]] bool contains(mm::GuestPhysAddr gpa, uint64_t len) const;
    [[nodiscard]] bool check_invariants() const;

    // Host view of [gpa, gpa + len): GuestFault error unless every byte is in
    // one RAM area (or the range wraps). len 0 is allowed inside RAM.
    [[nodiscard]] Expected<std::span<std::byte>> host_span(mm::GuestPhysAddr gpa, uint64_t len) const;

    template <class T>
    [[nodiscard]] Expected<T> read(mm::GuestPhysAddr gpa) const;
    template <class T>
    [[nodiscard]] Status write(mm::GuestPhysAddr gpa, const T& value) const;

    struct State;  // vmm/memory/guest_memory.cpp

private:
    explicit GuestMemory(std::unique_ptr<State> state);
    std::unique_ptr<State> m_state;
};

template <class T>
Expected<T> GuestMemory::read(mm::GuestPhysAddr gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    PV_TRY_ASSIGN(auto span, host_span(gpa, sizeof(T)));
    T value{};
    std::memcpy(&value, span.data(), sizeof(T));
    return value;
}

template <class T>
Status GuestMemory::write(mm::GuestPhysAddr gpa, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>);
    PV_TRY_ASSIGN(auto span, host_span(gpa, sizeof(T)));
    std::memcpy(span.data(), &value, sizeof(T));
    return {};
}

}  // namespace pv::memory
