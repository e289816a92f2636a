// Hypercall ABI v1, shared by the VMM and the guest (freestanding: mm/std.h only).
//
// Mechanism (docs/hypercall-abi.md has the full text):
//  1. The guest (at CPL3) fills its vCPU's HypercallPage (layout::hypercall_page(vcpu)):
//     `nr` and `args`.
//  2. It stores `nr` (one 8-byte store) to layout::kDoorbellAddr. No memslot backs
//     that guest-physical page, so the store is an MMIO exit; the VMM knows which
//     vCPU exited, reads the page, runs the call, writes `ret` (and `ret_aux`),
//     and resumes the vCPU after the store.
//  3. The guest reads `ret`: >= 0 success (a call-specific value), < 0 an HcError.
// Pointers in args are guest-virtual; the VMM validates every pointer/length
// against the guest's page tables (present + user + the needed access) and its
// RAM before touching memory: a bad one returns kFault, never crashes the VMM.
//
// CPU exceptions at CPL3 enter a CPL0 stub (layout::kExceptionStubsAddr) that
// pushes an ExceptionFrame on the vCPU's kernel stack and does `out` to
// layout::kExceptionPort; the VMM reads the frame from guest memory. In ABI v1
// a #PF is served by pagevisor (page mapped, or a segmentation fault delivered to
// the guest's SetFaultHandler handler); every other exception is fatal and
// reported (vector, error code, RIP, CR2).
// Stub for vector v at kExceptionStubsAddr + 16*v: `push $0` (vectors without an
// error code), `push $v`, jump to common code: `push %rax; mov %cr2,%rax;
// push %rax; out %al,$kExceptionPort; mov 8(%rsp),%rax; add $32,%rsp; iretq`.
// The #PF stub's common code first checks CR2 against the no-work window
// (StubData, SetNoWorkWindow): at or above its start, no exit: the stub adds
// kNoWorkSkip to the saved RIP and returns, skipping the faulting instruction.
#pragma once

#include "mm/std.h"

namespace pv::abi {

inline constexpr uint32_t kAbiVersion = 1;
inline constexpr uint64_t kBootMagic = 0x3176'7367'6170'7670ULL;  // "pvpagsv1" little-endian

enum class Call : uint64_t {
    Nop = 0,              // () -> 0; measures the round trip
    Version = 1,          // () -> kAbiVersion
    ConsoleWrite = 2,     // (const char* gva, u64 len) -> bytes written; len <= kMaxConsoleWrite
    Exit = 3,             // (i64 code) -> does not return; the VM's exit status is code & 0xff
    Report = 4,           // (const ReportField* gva, u64 count) -> count; count <= kMaxReportFields
    SetFaultHandler = 6,  // (u64 handler gva) -> 0; 0 clears. A guest page fault pagevisor cannot serve then
                          // resumes at `handler` (user mode, same stack) with rdi = fault address, rsi = RIP,
                          // rdx = access (0 read, 1 write, 2 execute), rcx = reason (0 no mapping,
                          // 1 not allowed, 2 corrupt page table); a fault inside the handler stops the VM.
    SetNoWorkWindow = 8,  // (u64 start) -> 0; 0 clears. A #PF at an address >= start is then handled by the
                          // guest's CPL0 stub with no exit: the faulting instruction (which must be kNoWorkSkip
                          // bytes long) is skipped and the page stays as it was. Measures the "#PF the guest
                          // handles with no work" floor. start must be 0 or in the memory calls' user range
                          // [kUserBase, kUserTop) (Invalid otherwise); one window per VM. (7 stays unassigned:
                          // the badptr guest program checks it as an undefined number.)
    VcpuStop = 5,         // () -> does not return; this vCPU stops. The VM ends with status 0 when every
                          // vCPU has stopped, or with Exit's code as soon as any vCPU calls Exit.
    // 16..31 reserved for the memory calls (mmap, munmap, mprotect, brk, ...).
    Mmap = 16,
    Munmap = 17,
    Mprotect = 18,
    Brk = 19,
};
inline constexpr uint64_t kFirstMemoryCall = 16;
inline constexpr uint64_t kLastMemoryCall = 31;

// Negative return values.
enum class HcError : int64_t {
    BadCall = -1,     // unknown call number
    Fault = -2,       // a pointer/length does not lie in mapped, user-accessible guest memory
    Invalid = -3,     // an argument is out of its range
    NoMemory = -4,    // the guest's memory quota or the host is exhausted
    Permission = -5,  // the access is not allowed
    TooBig = -6,      // a length exceeds the call's limit
};

inline constexpr uint64_t kMaxConsoleWrite = 4096;
inline constexpr uint64_t kMaxReportFields = 128;

// One page per vCPU, user read-write, at layout::hypercall_page(vcpu).
struct HypercallPage {
    uint64_t nr;       // Call, for the guest's own bookkeeping: the VMM uses the value stored to the doorbell
    uint64_t args[6];  // call arguments
    int64_t ret;       // result (>= 0) or -HcError, written by the VMM
    uint64_t ret_aux;  // second result where a call documents one
    uint64_t seq;      // incremented by the VMM after every completed call
};
static_assert(sizeof(HypercallPage) <= 4096);

enum class FieldType : uint32_t { U64 = 1, I64 = 2, F64 = 3 };
inline constexpr uint64_t kReportKeyLen = 24;

// One structured result: a key (NUL-padded, [A-Za-z0-9_.-], not empty) and a value.
struct ReportField {
    char key[kReportKeyLen];
    FieldType type;
    uint32_t reserved;  // must be 0
    union {
        uint64_t u64;
        int64_t i64;
        double f64;
    } value;
};
static_assert(sizeof(ReportField) == 40);

// Arguments of the allocator workloads (`pagevisor run --ops/--heap/...`,
// docs/guest.md "Allocator workloads"); zero = the workload's default. Other
// programs ignore them.
struct WorkloadArgs {
    uint64_t ops;          // operations to perform (per vCPU for multi-vCPU workloads)
    uint64_t heap_bytes;   // bytes of heap the workload maps (per heap)
    uint64_t max_block;    // largest block/request in bytes (byte allocators) or pages (page allocators)
    uint64_t check_every;  // run check_invariants() every this many operations
    uint64_t flags;        // kWorkload* bits
};
inline constexpr uint64_t kWorkloadPopulate = 1;  // map heaps with kMapPopulate (eager) instead of on demand
inline constexpr uint64_t kWorkloadCorrupt = 2;   // test only: corrupt one live block so verification must fail
inline constexpr uint64_t kWorkloadKnownFlags = kWorkloadPopulate | kWorkloadCorrupt;

// Read-only page at layout::kBootInfoAddr, written by the VMM before the first entry.
// How a guest-physical RAM range is backed (BootInfo::ram).
enum class RamKind : uint32_t {
    Eager = 1,     // host memory the kernel fills on first touch (or pre-populated)
    Demand = 2,    // first touch served by pagevisor's fault server (quota, statistics)
    ReadOnly = 3,  // KVM read-only memory: reads see its contents, a write stops the guest
};

// One guest-physical range the guest may use, identity-mapped (GVA == GPA)
// user read-write and NX in the boot page tables; for ReadOnly ranges a write
// passes the page tables and is refused at the guest-physical level
// (KVM_MEM_READONLY): the VMM stops the guest with a read-only write error.
// Ranges are sorted by gpa, disjoint, page aligned, and exclude everything
// below layout::kFreeRamStart.
struct RamRange {
    uint64_t gpa;
    uint64_t size;
    uint32_t node;  // guest NUMA node
    RamKind kind;
};
inline constexpr uint32_t kMaxRamRanges = 64;

struct BootInfo {
    uint64_t magic;        // kBootMagic
    uint32_t abi_version;  // kAbiVersion
    uint32_t vcpu_count;
    uint64_t ram_size;        // bytes of guest RAM
    uint64_t free_ram_start;  // layout::kFreeRamStart
    uint64_t free_ram_end;    // end of the low RAM range usable by the guest
    uint64_t seed;            // --seed, for workloads
    char workload[32];        // NUL-terminated workload name ("" = the image's default)
    uint64_t params[8];       // workload parameters (workload-defined)
    uint32_t node_count;      // guest NUMA nodes (>= 1)
    uint32_t ram_count;       // entries used in ram[]
    uint32_t vcpu_node[32];   // guest NUMA node of vCPU i (layout::kMaxVcpus entries)
    RamRange ram[kMaxRamRanges];
    uint64_t tsc_khz;   // the vCPU's TSC frequency (KVM_GET_TSC_KHZ); 0 = unknown
    WorkloadArgs args;  // allocator workload arguments
};
static_assert(sizeof(BootInfo) <= 4096);

// What the #PF stub reads at layout::kStubDataAddr (supervisor-only; only the
// VMM writes it, on SetNoWorkWindow). The stub computes cr2 + nowork_neg_start:
// it carries iff cr2 >= start, so the window costs the stub two instructions
// (add, jc) and the zero the page starts with means "no window".
struct StubData {
    uint64_t nowork_neg_start;  // 2^64 - start (two's complement), 0 = no window
};
static_assert(sizeof(StubData) == 8);
// Length of the instruction a no-work #PF skips: the guest's probe is `mov (%rdi),%rax` (48 8b 07).
inline constexpr uint64_t kNoWorkSkip = 3;

// What the CPL0 stub leaves on the vCPU's kernel stack, lowest address first.
// It ends at layout::kernel_stack_top(vcpu): the VMM reads it from there.
struct ExceptionFrame {
    uint64_t cr2;
    uint64_t saved_rax;
    uint64_t vector;
    uint64_t error_code;  // 0 for vectors without one
    uint64_t rip;
    uint64_t cs;
    uint64_t rflags;
    uint64_t rsp;
    uint64_t ss;
};
static_assert(sizeof(ExceptionFrame) == 72);

// Entry state of every vCPU: CPL3 at the ELF entry point, RSP = user_stack_top(vcpu),
// RDI = vcpu index, RSI = kBootInfoAddr, RFLAGS = 0x2 (interrupts off), other GPRs 0.

}  // namespace pv::abi
