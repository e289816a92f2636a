// Allocator concepts: the contract every mm/ allocator satisfies.
//
// Descends from the ArceOS `allocator` crate (BaseAllocator, ByteAllocator,
// PageAllocator, IdAllocator, AllocError), expressed as concepts instead of
// traits. All allocators are single-threaded objects (callers lock, see
// mm/frames); none allocates its own metadata: metadata lives in memory
// handed in (`std::span<std::byte>`), or inside the managed memory itself for
// byte allocators.
//
// Errors (mm::Error):
//   InvalidParam   size 0 where not allowed, alignment not a power of two,
//                  region too small to be useful, unaligned page address
//   MemoryOverlap  add_memory of a region overlapping one already managed
//   NoMemory       nothing large enough is free (or metadata is full)
//   NotAllocated   free of something not allocated: always detected by page and
//                  ID allocators; by byte allocators when built with checking
//                  (kChecked template parameter / MM_ALLOC_CHECKED)
//
// Statistics are exact at every moment: total = used + available, counted in
// bytes (byte allocators, including internal fragmentation as "used" only where
// documented by the allocator), pages, or IDs.
//
// Every allocator has `bool check_invariants() const` that walks its metadata
// and returns false on any inconsistency; tests call it after every operation.
#pragma once

#include "mm/addr.h"
#include "mm/result.h"
#include "mm/std.h"

namespace mm {

// Common to all allocators.
template <class A>
concept InvariantChecked = requires(const A& a) {
    { a.check_invariants() } -> std::same_as<bool>;
};

// Byte allocator over memory of the current address space (host memory in the
// VMM, guest-virtual memory inside the guest).
//   init(region)          first region; may be called once (BadState after)
//   add_memory(region)    further regions (MemoryOverlap if overlapping)
//   alloc(size, align)    align: power of two; returns a pointer aligned to it
//   dealloc(p, size, align) the same size/align as alloc
template <class A>
concept ByteAllocator = InvariantChecked<A> &&
    requires(A a, const A& ca, std::span<std::byte> region, void* p, size_t size, size_t align) {
    { a.init(region) } -> std::same_as<Status>;
    { a.add_memory(region) } -> std::same_as<Status>;
    { a.alloc(size, align) } -> std::same_as<Result<void*>>;
    { a.dealloc(p, size, align) } -> std::same_as<Status>;
    { ca.total_bytes() } -> std::same_as<size_t>;
    { ca.used_bytes() } -> std::same_as<size_t>;
    { ca.available_bytes() } -> std::same_as<size_t>;
};

// Page allocator over an abstract address space (the managed pages need not be
// accessible to the allocator: e.g. guest-physical frames in the VMM).
// Metadata comes from `init(metadata)`; `metadata_bytes(pages)` says how much
// is needed to manage that many pages in total. Addresses are A::Address
// (an mm::Addr<Tag>), page size A::kPageSize.
//   alloc_pages(n, align)          align in bytes, power of two >= kPageSize
//   alloc_pages_at(base, n, align) exactly at base (NoMemory if any page is taken)
//   dealloc_pages(base, n)         all-or-nothing: NotAllocated (and no change)
//                                  if any page of the range is not allocated
template <class A>
concept PageAllocator = InvariantChecked<A> &&
    requires(A a, const A& ca, typename A::Address addr, size_t n, size_t align) {
    typename A::Address;
    { A::kPageSize } -> std::convertible_to<size_t>;
    { a.add_memory(addr, n) } -> std::same_as<Status>;  // start, size in bytes
    { a.alloc_pages(n, align) } -> std::same_as<Result<typename A::Address>>;
    { a.alloc_pages_at(addr, n, align) } -> std::same_as<Result<typename A::Address>>;
    { a.dealloc_pages(addr, n) } -> std::same_as<Status>;
    { ca.is_allocated(addr) } -> std::same_as<bool>;
    { ca.total_pages() } -> std::same_as<size_t>;
    { ca.used_pages() } -> std::same_as<size_t>;
    { ca.available_pages() } -> std::same_as<size_t>;
};

// ID allocator over [0, size). Metadata handed in like a page allocator's.
//   alloc_id(count, align)  contiguous, first ID a multiple of align
//   alloc_fixed_id(id)      exactly that ID (NoMemory if taken, OutOfRange if >= size)
//   dealloc_id(start, count) all-or-nothing, NotAllocated otherwise
template <class A>
concept IdAllocator = InvariantChecked<A> && requires(A a, const A& ca, uint64_t id, size_t count, size_t align) {
    { a.alloc_id(count, align) } -> std::same_as<Result<uint64_t>>;
    { a.alloc_fixed_id(id) } -> std::same_as<Status>;
    { a.dealloc_id(id, count) } -> std::same_as<Status>;
    { ca.is_allocated(id) } -> std::same_as<bool>;
    { ca.size() } -> std::same_as<size_t>;
    { ca.used() } -> std::same_as<size_t>;
    { ca.available() } -> std::same_as<size_t>;
};

// Size/alignment validation shared by the byte allocators.
constexpr Status validate_layout(size_t size, size_t align) {
    if (size == 0 || !is_power_of_two(align)) return err(Error::InvalidParam);
    if (size > (size_t(1) << 62) || align > (size_t(1) << 62)) return err(Error::InvalidParam);
    return ok();
}

}  // namespace mm
