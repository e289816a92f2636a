#include "guest/rt/hypercall.h"

#include "guest/rt/runtime.h"
#include "vmm/abi/layout.h"

namespace pv::guest {

namespace {

volatile abi::HypercallPage& my_page() {
    return *reinterpret_cast<volatile abi::HypercallPage*>(layout::hypercall_page(current_vcpu()));
}

}  // namespace

int64_t hypercall_raw(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5) {
    volatile abi::HypercallPage& page = my_page();
    page.nr = nr;
    page.args[0] = a0;
    page.args[1] = a1;
    page.args[2] = a2;
    page.args[3] = a3;
    page.args[4] = a4;
    page.args[5] = a5;
    // The doorbell: one 8-byte `mov reg, (reg)` to a page no memslot backs (an
    // MMIO exit the VMM decodes). Written in asm so the instruction form is fixed
    // (the compiler would pick a movabs to a 64-bit absolute address); the
    // "memory" clobber is the compiler barrier on both sides.
    asm volatile("movq %0, (%1)" : : "r"(nr), "r"(layout::kDoorbellAddr) : "memory");
    return page.ret;
}

int64_t hypercall(abi::Call nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5) {
    return hypercall_raw(static_cast<uint64_t>(nr), a0, a1, a2, a3, a4, a5);
}

uint64_t hypercall_aux() { return my_page().ret_aux; }

const char* hc_error_name(int64_t ret) {
    if (ret >= 0) return "ok";
    switch (static_cast<abi::HcError>(ret)) {
        case abi::HcError::BadCall: return "BadCall";
        case abi::HcError::Fault: return "Fault";
        case abi::HcError::Invalid: return "Invalid";
        case abi::HcError::NoMemory: return "NoMemory";
        case abi::HcError::Permission: return "Permission";
        case abi::HcError::TooBig: return "TooBig";
    }
    return "unknown";
}

}  // namespace pv::guest
