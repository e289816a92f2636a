// The ELF entry point, shared by every vCPU. Entry state (vmm/abi/hypercall.h):
// CPL3, RSP = layout::user_stack_top(vcpu), RDI = vcpu index, RSI = BootInfo*,
// RFLAGS = 0x2, other registers 0. The stack is re-aligned to 16 bytes (as
// the SysV ABI requires before a call) and pv_rt_entry never returns.
    .section .text.start, "ax", @progbits
    .code64
    .globl _start
    .type _start, @function
_start:
    xor %ebp, %ebp
    and $-16, %rsp
    call pv_rt_entry
    ud2
    .size _start, . - _start

    .section .note.GNU-stack, "", @progbits
