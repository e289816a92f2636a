// Exit decoding as pure functions: a KVM exit (kvm::ExitState, plain values)
// becomes the action the vCPU loop takes. No KVM, no guest memory: unit-tested
// without /dev/kvm (tests/vmm/x86/exit_test.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "vmm/abi/hypercall.h"
#include "vmm/base/error.h"
#include "vmm/kvm/types.h"

namespace pv::x86 {

struct ExitAction {
    enum class Kind {
        Resume,          // nothing to do: enter the guest again
        Hypercall,       // doorbell store: `value` (the call number) of `len` bytes
        GuestException,  // the CPL0 stub reported an exception: read the ExceptionFrame
        Interrupted,     // KVM_RUN returned for a signal / immediate_exit: check for stop requests
        Stop,            // the VM cannot go on: `error_kind` and `message` (see stop_message())
    };
    Kind kind = Kind::Resume;
    uint64_t value = 0;
    uint32_t len = 0;
    ErrorKind error_kind = ErrorKind::Internal;
    std::string message;          // Stop: the message without RIP/vCPU context
    bool with_rip = false;        // Stop: append " at RIP 0x.." (needs the registers)
    bool with_registers = false;  // Stop: append a register dump
};

ExitAction decode_exit(const kvm::ExitState& exit);

// The one-line message for a Stop action on `vcpu`; `regs` when available.
std::string stop_message(const ExitAction& stop, uint32_t vcpu, const std::optional<kvm::Regs>& regs);

// "rax=0x.. rbx=0x.. ... rip=0x.. rflags=0x.." on one line.
std::string format_registers(const kvm::Regs& regs);

// "#PF (page fault)", "#UD (invalid opcode)", "vector 40" for unknown ones.
std::string exception_name(uint64_t vector);
// "guest exception #PF (page fault) at RIP 0x.., address 0x.., error code 0x.. (vCPU i)".
std::string describe_exception(const abi::ExceptionFrame& frame, uint32_t vcpu);

std::string hex(uint64_t value);

}  // namespace pv::x86
