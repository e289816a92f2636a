// The guest runtime: who am I, the boot information, and how to stop.
//
// Every vCPU runs user-mode (CPL3) code on its own stack at
// layout::user_stack_top(vcpu); the runtime derives the current vCPU index from
// the stack pointer, so no per-CPU register (FS/GS) is needed.
#pragma once

#include "mm/std.h"
#include "vmm/abi/hypercall.h"
#include "vmm/abi/layout.h"

namespace pv::guest {

using mm::size_t;
using mm::uint32_t;
using mm::uint64_t;
using std::int64_t;

// The index of the vCPU running this code (from its stack pointer).
inline uint32_t current_vcpu() {
    uint64_t sp;
    asm("mov %%rsp, %0" : "=r"(sp));
    return static_cast<uint32_t>((sp - layout::kUserStacksAddr) / layout::kUserStackSize);
}
// The read-only BootInfo page the VMM wrote (validated at entry).
const abi::BootInfo& boot_info();

// Ends the whole VM with status code & 0xff.
[[noreturn]] void exit(int64_t code);
// Ends this vCPU; the VM ends with 0 when every vCPU has stopped.
[[noreturn]] void vcpu_stop();
// Prints "pvguest: panic: <msg>" and exits with kPanicExitCode.
[[noreturn]] void panic(const char* msg);

inline constexpr int64_t kPanicExitCode = 125;
inline constexpr int64_t kSegvExitCode = 139;  // a page fault pagevisor could not serve (rt/fault.cpp)

// Registers rt/fault.cpp's handler with pagevisor (done at start-up by vCPU 0).
void install_fault_handler();
inline constexpr int64_t kUnknownWorkloadExitCode = 127;

// Length of a NUL-terminated string, looking at no more than `max` bytes.
size_t string_length(const char* s, size_t max = SIZE_MAX);
// Whether a and b are equal strings (compares at most `max` bytes).
bool string_equal(const char* a, const char* b, size_t max = SIZE_MAX);

}  // namespace pv::guest

// Linker-script symbols (guest.ld): use their addresses only.
extern "C" {
extern char pv_user_start[];
extern char pv_text_end[];
extern char pv_rodata_start[];
extern char pv_rodata_end[];
extern char pv_data_start[];
extern char pv_bss_start[];
extern char pv_bss_end[];
extern char pv_tail_page[];
extern char pv_image_end[];
extern char pv_exception_stubs[];
extern char pv_exception_stubs_end[];
extern char pv_kernel_end[];
}
