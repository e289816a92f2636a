// The guest's segmentation-fault handler. pagevisor resumes a vCPU here, in
// user mode on the faulting stack, when it cannot serve a page fault
// (Call::SetFaultHandler): the guest reports the fault itself and exits.
#include "guest/rt/console.h"
#include "guest/rt/report.h"
#include "guest/rt/runtime.h"

extern "C" [[noreturn, gnu::force_align_arg_pointer, gnu::used]] void pv_fault_entry(mm::uint64_t address,
                                                                                     mm::uint64_t rip,
                                                                                     mm::uint64_t access,
                                                                                     mm::uint64_t reason);

extern "C" void pv_fault_entry(mm::uint64_t address, mm::uint64_t rip, mm::uint64_t access, mm::uint64_t reason) {
    using namespace pv::guest;
    static constexpr const char* kAccess[] = {"read", "write", "execute"};
    static constexpr const char* kReason[] = {"no mapping", "not allowed by the mapping", "corrupt page table"};
    const uint32_t vcpu = current_vcpu();
    printf("pvguest: segmentation fault: %s at 0x%lx (%s) at RIP 0x%lx (vCPU %u)\n", access < 3 ? kAccess[access] : "?",
           address, reason < 3 ? kReason[reason] : "?", rip, vcpu);
    Report<8> report;
    report.add_u64("segv.addr", address);
    report.add_u64("segv.rip", rip);
    report.add_u64("segv.access", access);
    report.add_u64("segv.reason", reason);
    report.add_u64("segv.vcpu", vcpu);
    (void)report.send();
    exit(kSegvExitCode);
}

namespace pv::guest {

void install_fault_handler() {
    (void)hypercall(abi::Call::SetFaultHandler, reinterpret_cast<uint64_t>(&pv_fault_entry));
}

}  // namespace pv::guest
