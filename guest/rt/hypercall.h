// The guest side of hypercall ABI v1 (vmm/abi/hypercall.h).
//
// A call fills this vCPU's HypercallPage, then does ONE 8-byte store of the
// call number to layout::kDoorbellAddr: no memslot backs that page, so the
// store exits to the VMM, which runs the call and writes `ret` before resuming
// us after the store. Compiler barriers keep the page writes before the
// doorbell and the `ret` read after it; x86 keeps stores in order.
#pragma once

#include "mm/std.h"
#include "vmm/abi/hypercall.h"

namespace pv::guest {

using mm::uint32_t;
using mm::uint64_t;
using std::int64_t;

// `ret` of the call: >= 0 success, < 0 an abi::HcError.
int64_t hypercall(abi::Call nr, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0,
                  uint64_t a5 = 0);
// Any call number, including ones the ABI does not define (for the badptr tests).
int64_t hypercall_raw(uint64_t nr, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0,
                      uint64_t a5 = 0);
// `ret_aux` of this vCPU's last call.
uint64_t hypercall_aux();

constexpr bool is_hc_error(int64_t ret) { return ret < 0; }
constexpr int64_t hc_code(abi::HcError e) { return static_cast<int64_t>(e); }
// "Fault", "TooBig", ... for a negative ret; "ok" for >= 0; "unknown" otherwise.
const char* hc_error_name(int64_t ret);

}  // namespace pv::guest
