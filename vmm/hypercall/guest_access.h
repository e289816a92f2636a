// The seam through which the hypercall dispatcher reaches guest memory.
//
// Implemented by the VMM core (walk of the guest's page tables + guest RAM) and
// by fakes in tests. Addresses are guest-virtual and come from the guest, so an
// implementation must treat them as hostile: any value, any length, wrap-around.
#pragma once

#include <cstddef>
#include <span>

#include "mm/addr.h"
#include "vmm/base/error.h"

namespace pv::hc {

class GuestAccess {
public:
    GuestAccess() = default;
    GuestAccess(const GuestAccess&) = delete;
    GuestAccess& operator=(const GuestAccess&) = delete;
    virtual ~GuestAccess() = default;

    // Copy guest-virtual [gva, gva+out.size()) into out. Fails with ErrorKind::GuestFault (and copies nothing
    // observable) if any byte is not in a present, user-accessible, readable page backed by guest RAM, or the
    // range wraps. Same for write (needs user-writable pages). A zero-length access succeeds.
    virtual pv::Status read(mm::GuestVirtAddr gva, std::span<std::byte> out) = 0;
    virtual pv::Status write(mm::GuestVirtAddr gva, std::span<const std::byte> in) = 0;
};

}  // namespace pv::hc
