#include "guest/programs/programs.h"
#include "guest/rt/console.h"
#include "guest/rt/runtime.h"

namespace pv::guest {

namespace {

constexpr Program kPrograms[] = {
    {"hello", "every vCPU says hello; vCPU 0 reports and exits 0 (the default)", run_hello},
    {"help", "lists the programs", run_help},
    {"exit", "exits with code params[0]", run_exit},
    {"loop", "spins forever (for timeouts)", run_loop},
    {"bad-mmio", "reads kDeviceWindowAddr + 0x8000 (an unmapped GPA)", run_bad_mmio},
    {"null", "reads address 0 (#PF, CR2 = 0)", run_null},
    {"ud", "executes ud2 (#UD)", run_ud},
    {"badptr", "hypercalls with wild pointers/lengths; exits 0 iff all are rejected as expected", run_badptr},
    {"hcbench", "params[0] Nop hypercalls (default 1000); params[1] != 0: on every vCPU", run_hcbench},
    {"touch", "touches RAM: p0 node+1, p1 kinds, p2 bytes, p3 order, p4 stride, p5 flags, p6 passes", run_touch},
    {"hostile", "hostile guest: p1 scenario (0 flood, 1 pagetable, 2 race, 3 oom, 4 populate, 5 tables), p0 its count",
     run_hostile},
    {"vmtest", "guest-virtual memory scenarios (mmap/munmap/mprotect/brk, faults); p0 = scenario 1-9, p1 = pages",
     run_vmtest},
    {"ramlist", "prints the RAM map (gpa, size, node, kind) and reports ram.count/bytes/nodes", run_ramlist},
    {"pfbench",
     "guest page-fault cost: p0 pages, p1 order (0 seq, 1 random), p2 flags (1 populate, 2 pass 2), p3 Nops, "
     "p4 no-work #PFs",
     run_pfbench},
    // Allocator workloads: BootInfo::args (ops, heap, max_block, check_every, flags) and seed; docs/guest.md.
    {"slab-churn", "SlabHeap: random sizes/alignments, alloc/free mix, every block verified", run_alloc_workload},
    {"buddy-churn", "Buddy: random sizes/alignments, alloc/free mix, every block verified", run_alloc_workload},
    {"tlsf-churn", "Tlsf: random sizes/alignments, alloc/free mix, every block verified", run_alloc_workload},
    {"frames", "bitmap page allocator over heap pages: random runs, alignments, fixed addresses", run_alloc_workload},
    {"ids", "ID allocator: random counts, alignments, fixed IDs; one tag per ID in the heap", run_alloc_workload},
    {"frag", "TLSF fill / punch holes / large requests / drain rounds (wl.stat.large_ok/fail)", run_alloc_workload},
    {"sparse", "maps a large heap (256 MiB), touches a random 1/64 of its pages, verifies", run_alloc_workload},
    {"multi", "every vCPU: churn on its own heap + a shared LockedHeap behind a SpinLock", run_alloc_workload},
};

constexpr mm::size_t kNameMax = sizeof(abi::BootInfo::workload);

}  // namespace

std::span<const Program> programs() { return kPrograms; }

const Program* find_program(const char* name) {
    for (const Program& p : kPrograms) {
        if (string_equal(p.name, name, kNameMax)) return &p;
    }
    return nullptr;
}

int64_t run_workload(uint32_t vcpu, const abi::BootInfo& boot) {
    const char* name = boot.workload[0] == '\0' ? "hello" : boot.workload;
    const Program* p = nullptr;
    if (string_length(name, kNameMax) < kNameMax) p = find_program(name);
    if (p == nullptr) {
        if (vcpu != 0) vcpu_stop();
        printf("pvguest: unknown workload '%.*s' (run workload 'help' for the list)\n", int(kNameMax), name);
        return kUnknownWorkloadExitCode;
    }
    return p->run(vcpu, boot);
}

int64_t run_help(uint32_t vcpu, const abi::BootInfo&) {
    if (vcpu != 0) vcpu_stop();
    print("pvguest programs (select with the workload name; params are BootInfo::params):\n");
    for (const Program& p : kPrograms) printf("  %-12s %s\n", p.name, p.summary);
    return 0;
}

}  // namespace pv::guest
