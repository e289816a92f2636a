// The guest's only CPL0 code: the 32 exception stubs and their common tail.
//
// Protocol (vmm/abi/hypercall.h): on an exception at CPL3 the CPU switches to
// the vCPU's kernel stack (TSS.RSP0 = layout::kernel_stack_top(vcpu)) and pushes
// SS, RSP, RFLAGS, CS, RIP and, for some vectors, an error code. Stub v (at
// PV_EXCEPTION_STUBS_ADDR + 16*v) pushes 0 where the CPU pushed no error code,
// then the vector, and jumps to the common code, which pushes RAX and CR2 and
// exits to the VMM with `out %al, $0xF4`. The stack then holds an
// abi::ExceptionFrame (cr2, saved_rax, vector, error_code, rip, cs, rflags,
// rsp, ss) ending at kernel_stack_top(vcpu). In ABI v1 every exception is
// fatal, but the tail still restores RAX and returns so that a later ABI can
// resume the guest. Every instruction here is emulated on PVM hosts (~1 us
// each): keep it this short.
#include "guest/kernel/asm_constants.h"

    .section .kernel.stubs, "ax", @progbits
    .code64
    .globl pv_exception_stubs
pv_exception_stubs:

// One stub. `.org` places it exactly at its slot; a stub longer than its slot
// makes the next `.org` move backwards, which is an assembler error.
.macro PV_STUB vector, has_error_code
    .org pv_exception_stubs + \vector * PV_EXCEPTION_STUB_STRIDE, 0xcc
    .globl pv_exception_stub_\vector
pv_exception_stub_\vector:
    .if \has_error_code == 0
    pushq $0
    .endif
    pushq $\vector
    jmp pv_exception_common
.endm

// Vectors for which the CPU pushes an error code: #DF 8, #TS 10, #NP 11,
// #SS 12, #GP 13, #PF 14, #AC 17, #CP 21, #VC 29, #SX 30.
PV_STUB 0, 0
PV_STUB 1, 0
PV_STUB 2, 0
PV_STUB 3, 0
PV_STUB 4, 0
PV_STUB 5, 0
PV_STUB 6, 0
PV_STUB 7, 0
PV_STUB 8, 1
PV_STUB 9, 0
PV_STUB 10, 1
PV_STUB 11, 1
PV_STUB 12, 1
PV_STUB 13, 1
PV_STUB 14, 1
PV_STUB 15, 0
PV_STUB 16, 0
PV_STUB 17, 1
PV_STUB 18, 0
PV_STUB 19, 0
PV_STUB 20, 0
PV_STUB 21, 1
PV_STUB 22, 0
PV_STUB 23, 0
PV_STUB 24, 0
PV_STUB 25, 0
PV_STUB 26, 0
PV_STUB 27, 0
PV_STUB 28, 0
PV_STUB 29, 1
PV_STUB 30, 1
PV_STUB 31, 0

    .org pv_exception_stubs + PV_EXCEPTION_VECTORS * PV_EXCEPTION_STUB_STRIDE, 0xcc
    .globl pv_exception_stubs_end
pv_exception_stubs_end:

    .section .kernel.text, "ax", @progbits
    .globl pv_exception_common
pv_exception_common:
    push %rax
    mov %cr2, %rax
    push %rax
    out %al, $PV_EXCEPTION_PORT
    pop %rax                // cr2
    pop %rax                // the interrupted code's rax
    add $16, %rsp           // vector and error code
    iretq

    .section .note.GNU-stack, "", @progbits
