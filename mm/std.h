// The one shim through which mm/ reaches the standard library.
//
// mm/ is linked into the freestanding guest, so it may use only headers that
// are pure templates/constexpr and never call into libc, the heap, exceptions
// or RTTI. Every mm/ header includes this file instead of standard headers;
// the `mm_freestanding` build target proves the allow-list holds.
#pragma once

#include <array>
#include <bit>
#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>  // placement new only
#include <span>
#include <type_traits>
#include <utility>

namespace mm {

using std::size_t;
using std::uint16_t;
using std::uint32_t;
using std::uint64_t;
using std::uint8_t;
using std::uintptr_t;

// Stops execution on a broken internal invariant. In the freestanding guest this
// is a trap (the VMM reports it); in the VMM it aborts with a core dump.
[[noreturn]] inline void panic() { __builtin_trap(); }

}  // namespace mm

// Assertion tiers (mimalloc style):
//  MM_ASSERT           cheap, always on: guards memory safety.
//  MM_DEBUG_ASSERT     internal consistency, on unless NDEBUG.
#define MM_ASSERT(cond)           \
    do {                          \
        if (!(cond)) [[unlikely]] \
            ::mm::panic();        \
    } while (0)

#ifdef NDEBUG
#define MM_DEBUG_ASSERT(cond) ((void)0)
#else
#define MM_DEBUG_ASSERT(cond) MM_ASSERT(cond)
#endif
