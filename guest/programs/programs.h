// The guest's workloads, selected by BootInfo::workload ("" = "hello").
//
// Every vCPU calls run_workload(); a program's return value becomes the VM's
// exit status (the runtime calls exit() with it), so a program that wants a
// vCPU to end quietly calls vcpu_stop() on it instead of returning. To add a
// program: write `int64_t run_<name>(uint32_t vcpu, const abi::BootInfo&)` in
// its own file here, declare it below, add it to kPrograms in registry.cpp and
// document it in docs/guest.md.
#pragma once

#include "mm/std.h"
#include "vmm/abi/hypercall.h"

namespace pv::guest {

using mm::uint32_t;
using std::int64_t;

struct Program {
    const char* name;
    const char* summary;  // one line, with its params
    int64_t (*run)(uint32_t vcpu, const abi::BootInfo& boot);
};

// The registry, in the order `help` lists them.
std::span<const Program> programs();
// The program called `name` (at most sizeof(BootInfo::workload) bytes), or nullptr.
const Program* find_program(const char* name);
// Runs the workload BootInfo names on this vCPU; returns the exit code.
int64_t run_workload(uint32_t vcpu, const abi::BootInfo& boot);

int64_t run_hello(uint32_t vcpu, const abi::BootInfo& boot);
int64_t run_help(uint32_t vcpu, const abi::BootInfo& boot);
int64_t run_exit(uint32_t vcpu, const abi::BootInfo& boot);
int64_t run_loop(uint32_t vcpu, const abi::BootInfo& boot);
int64_t run_bad_mmio(uint32_t vcpu, const abi::BootInfo& boot);
int64_t run_null(uint32_t vcpu, const abi::BootInfo& boot);
int64_t run_ud(uint32_t vcpu, const abi::BootInfo& boot);
int64_t run_badptr(uint32_t vcpu, const abi::BootInfo& boot);
int64_t run_hcbench(uint32_t vcpu, const abi::BootInfo& boot);
int64_t run_hostile(uint32_t vcpu, const abi::BootInfo& boot);
int64_t run_vmtest(uint32_t vcpu, const abi::BootInfo& boot);
int64_t run_touch(uint32_t vcpu, const abi::BootInfo& boot);
int64_t run_ramlist(uint32_t vcpu, const abi::BootInfo& boot);
int64_t run_pfbench(uint32_t vcpu, const abi::BootInfo& boot);
// The allocator workloads (alloc.cpp): one entry point, the kind chosen by BootInfo::workload.
int64_t run_alloc_workload(uint32_t vcpu, const abi::BootInfo& boot);

}  // namespace pv::guest
