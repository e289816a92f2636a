// How the guest-virtual layer reaches guest RAM from the host: a bounds-checked
// view of [gpa, gpa + len). GuestMemory::host_span is the production accessor;
// tests pass a vector-backed one. An error means "not guest RAM": nothing is touched.
#pragma once

#include <cstddef>
#include <functional>
#include <span>

#include "mm/addr.h"
#include "vmm/base/error.h"

namespace pv::paging {

using HostAccess = std::function<Expected<std::span<std::byte>>(mm::GuestPhysAddr, uint64_t)>;

// A hint that guest RAM [gpa, gpa + len) is about to be written from the host:
// populate its host pages now, in one call (GuestMemory::prefault: one
// MADV_POPULATE_WRITE), rather than one host page fault per page later. Never
// changes the contents; may do nothing.
using HostPrefault = std::function<void(mm::GuestPhysAddr, uint64_t)>;

}  // namespace pv::paging
