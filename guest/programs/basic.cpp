// The small programs the VMM's tests use to provoke one behaviour each.
#include "guest/programs/programs.h"
#include "guest/rt/console.h"
#include "guest/rt/runtime.h"
#include "guest/rt/sync.h"
#include "vmm/abi/layout.h"

namespace pv::guest {

namespace {

// A load the compiler cannot drop or replace with a trap (address 0 is UB to
// it, but here it is exactly what we want the CPU to execute).
uint64_t load_u64(uint64_t addr) {
    uint64_t v;
    asm volatile("movq (%1), %0" : "=r"(v) : "r"(addr) : "memory");
    return v;
}

}  // namespace

int64_t run_exit(uint32_t vcpu, const abi::BootInfo& boot) {
    if (vcpu != 0) vcpu_stop();
    return static_cast<int64_t>(boot.params[0]);
}

int64_t run_loop(uint32_t, const abi::BootInfo&) {
    for (;;) cpu_relax();
}

int64_t run_bad_mmio(uint32_t vcpu, const abi::BootInfo&) {
    if (vcpu != 0) vcpu_stop();
    uint64_t v = load_u64(layout::kDeviceWindowAddr + 0x8000);
    printf("bad-mmio: the read of the device window returned 0x%lx instead of stopping the VM\n", v);
    return 1;
}

int64_t run_null(uint32_t vcpu, const abi::BootInfo&) {
    if (vcpu != 0) vcpu_stop();
    uint64_t v = load_u64(0);
    printf("null: reading address 0 returned 0x%lx instead of faulting\n", v);
    return 1;
}

int64_t run_ud(uint32_t vcpu, const abi::BootInfo&) {
    if (vcpu != 0) vcpu_stop();
    asm volatile("ud2");
    print("ud: ud2 did not fault\n");
    return 1;
}

}  // namespace pv::guest
