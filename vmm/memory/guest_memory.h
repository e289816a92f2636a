// Guest RAM: eagerly backed host mappings, registered as KVM memslots.
//
// Layout (vmm/abi/layout.h): RAM is [0, min(size, kLowRamLimit)) and, when the
// guest is larger, [k4GiB, k4GiB + size - kLowRamLimit). Each range is one
// anonymous MAP_PRIVATE | MAP_NORESERVE host mapping with a PROT_NONE guard
// page on each side, so a VMM bug that runs off the end faults at once.
// Every host access goes through host_span(), which checks that the whole
// guest-physical range lies in one RAM range: nothing outside RAM is touched.
//
// Ownership: GuestMemory owns the mappings (unmapped on destruction; the VM
// must be destroyed first or its memslots must no longer be used).
// Later (demand paging) this becomes a MemorySet over GPA whose areas carry
// backends (eager, demand/userfaultfd, read-only, hole); Region is the seed of
// such an area.
#pragma once

#include <cstddef>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "mm/addr.h"
#include "vmm/base/error.h"

namespace pv::kvm {
class Vm;
}

namespace pv::memory {

class GuestMemory {
public:
    struct Region {
        mm::GuestPhysRange gpa;
        std::byte* host = nullptr;  // host address of gpa.start()
    };

    // Reserves and maps `size` bytes (page aligned, >= layout::kMinRamSize).
    static Expected<GuestMemory> create(uint64_t size);

    GuestMemory(GuestMemory&& o) noexcept;
    GuestMemory& operator=(GuestMemory&& o) noexcept;
    GuestMemory(const GuestMemory&) = delete;
    GuestMemory& operator=(const GuestMemory&) = delete;
    ~GuestMemory();

    // Registers every region as a memslot (slots 0, 1, ...).
    [[nodiscard]] Status register_with(const kvm::Vm& vm) const;

    [[nodiscard]] uint64_t size() const { return m_size; }
    // End of the low RAM range (the guest's usable low memory ends here).
    [[nodiscard]] uint64_t low_end() const;
    [[nodiscard]] const std::vector<Region>& regions() const { return m_regions; }
    [[nodiscard]] bool contains(mm::GuestPhysAddr gpa, uint64_t len) const;

    // Host view of [gpa, gpa + len); GuestFault error if any byte is outside RAM
    // (or the range wraps). len 0 is allowed inside RAM.
    [[nodiscard]] Expected<std::span<std::byte>> host_span(mm::GuestPhysAddr gpa, uint64_t len) const;

    template <class T>
    [[nodiscard]] Expected<T> read(mm::GuestPhysAddr gpa) const;
    template <class T>
    [[nodiscard]] Status write(mm::GuestPhysAddr gpa, const T& value) const;

private:
    struct Mapping {
        void* base = nullptr;
        size_t length = 0;
    };
    GuestMemory() = default;
    [[nodiscard]] const Region* find(mm::GuestPhysAddr gpa) const;
    void release();

    uint64_t m_size = 0;
    std::vector<Region> m_regions;
    std::vector<Mapping> m_mappings;
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
