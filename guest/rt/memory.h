// The guest side of the memory hypercalls (vmm/paging/mem_abi.h): pagevisor
// owns the guest's page tables; these ask it for memory. Each returns the
// hypercall's value: an address / 0 / the break, or a negative abi::MemError.
// Memory returned is mapped lazily (a first touch faults and pagevisor maps a
// zeroed frame) unless abi::kMapPopulate is given. Pointers passed to other
// hypercalls must be to pages already touched (pagevisor does not fault them in).
#pragma once

#include "guest/rt/hypercall.h"
#include "vmm/paging/mem_abi.h"

namespace pv::guest {

inline int64_t mem_map(uint64_t hint, uint64_t len, uint64_t prot, uint64_t flags, uint64_t node = abi::kNodeAny) {
    return hypercall(abi::Call::Mmap, hint, len, prot, flags, node);
}
inline int64_t mem_unmap(uint64_t addr, uint64_t len) { return hypercall(abi::Call::Munmap, addr, len); }
inline int64_t mem_protect(uint64_t addr, uint64_t len, uint64_t prot) {
    return hypercall(abi::Call::Mprotect, addr, len, prot);
}
// new_end 0: the current break.
inline int64_t mem_brk(uint64_t new_end) { return hypercall(abi::Call::Brk, new_end); }

}  // namespace pv::guest
