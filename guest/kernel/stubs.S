// The guest's only CPL0 code: the 32 exception stubs and their common tails.
//
// Protocol (vmm/abi/hypercall.h, docs/hypercall-abi.md section 7): on an
// exception at CPL3 the CPU switches to the vCPU's kernel stack (TSS.RSP0 =
// layout::kernel_stack_top(vcpu)) and pushes SS, RSP, RFLAGS, CS, RIP and, for
// some vectors, an error code. Stub v (at PV_EXCEPTION_STUBS_ADDR + 16*v) pushes
// 0 where the CPU pushed no error code, then the vector, and jumps to a common
// tail, which pushes RAX and CR2 and exits to the VMM with `out %al, $0xF4`.
// The stack then holds an abi::ExceptionFrame (cr2, saved_rax, vector,
// error_code, rip, cs, rflags, rsp, ss) ending at kernel_stack_top(vcpu). The
// VMM serves a #PF (maps the page, or points the frame's RIP at the guest's
// fault handler) and stops the VM on any other exception; the tail restores
// RAX and returns.
//
// The #PF stub has its own tail: before exiting it checks CR2 against the
// no-work window (abi::StubData at layout::kStubDataAddr, supervisor-only,
// written by the VMM on the SetNoWorkWindow hypercall, which checks that the
// window starts in user space). A fault at or above the window's start is
// handled here with no exit: the saved RIP advances by PV_NOWORK_SKIP (the
// length of the guest's probe instruction) and the stub returns. That is the
// "#PF the guest handles with no work" floor of issue #6's benchmark. The
// check is `cr2 + (2^64 - start)` carrying: two instructions, and the zero
// the page holds until a window is set matches nothing, so a guest that never
// asked for a window sees no difference.
//
// Every instruction here is emulated on PVM hosts (~1 us each): keep it this
// short. Instructions per exception, stub + tail up to and including iretq:
//   other vectors          9, or 10 with the stub's `push $0`
//   #PF served by the VMM 11: push, jmp, 3 to build the frame, the window check
//                          (add, jc), out, 2 to unwind, iretq
//   #PF in the window     11: the same with the add to the saved RIP instead of the out
// (Before the window existed: 10-11 and 10; unwinding with mov+add instead of
// pop, pop, add saved one instruction everywhere, so the check costs an
// ordinary #PF one instruction net.)
#include "guest/kernel/asm_constants.h"

    .section .kernel.stubs, "ax", @progbits
    .code64
    .globl pv_exception_stubs
pv_exception_stubs:

// One stub. `.org` places it exactly at its slot; a stub longer than its slot
// makes the next `.org` move backwards, which is an assembler error.
.macro PV_STUB vector, has_error_code, tail=pv_exception_common
    .org pv_exception_stubs + \vector * PV_EXCEPTION_STUB_STRIDE, 0xcc
    .globl pv_exception_stub_\vector
pv_exception_stub_\vector:
    .if \has_error_code == 0
    pushq $0
    .endif
    pushq $\vector
    jmp \tail
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
PV_STUB 14, 1, pv_page_fault_common
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

// Unwinds the frame down to the CPU's part (cr2, saved_rax, vector, error
// code: 32 bytes) and returns; RAX gets its saved value back.
.macro PV_RETURN
    mov 8(%rsp), %rax
    add $32, %rsp
    iretq
.endm

    .globl pv_exception_common
pv_exception_common:
    push %rax
    mov %cr2, %rax
    push %rax
    out %al, $PV_EXCEPTION_PORT
    PV_RETURN

    .globl pv_page_fault_common
pv_page_fault_common:
    push %rax
    mov %cr2, %rax
    push %rax
    add PV_NOWORK_NEG_START, %rax   // carries iff cr2 >= the window's start (0: no window)
    jc 1f
    out %al, $PV_EXCEPTION_PORT
    PV_RETURN
1:  addq $PV_NOWORK_SKIP, 32(%rsp)  // the frame's rip: skip the faulting instruction
    PV_RETURN

    .section .note.GNU-stack, "", @progbits
