// Runtime start-up (called by _start on every vCPU) and the basic services of
// runtime.h.
#include "guest/kernel/asm_constants.h"
#include "guest/programs/programs.h"
#include "guest/rt/console.h"
#include "guest/rt/runtime.h"
#include "guest/rt/sync.h"

namespace pv::guest {

static_assert(PV_EXCEPTION_STUBS_ADDR == layout::kExceptionStubsAddr);
static_assert(PV_EXCEPTION_STUB_STRIDE == layout::kExceptionStubStride);
static_assert(PV_EXCEPTION_VECTORS == layout::kExceptionVectors);
static_assert(PV_EXCEPTION_PORT == layout::kExceptionPort);
static_assert(PV_NOWORK_NEG_START == layout::kStubDataAddr + offsetof(abi::StubData, nowork_neg_start));
static_assert(PV_NOWORK_SKIP == abi::kNoWorkSkip);

namespace {

// Start-up handshake: vCPU 0 prepares memory, the others wait for it. The flag
// is initialised non-zero so it lives in .data, not in the .bss being zeroed.
enum : uint32_t { kInitPending = 1, kInitDone = 2 };
Atomic<uint32_t> g_init_state{kInitPending};

using InitFn = void (*)();
extern "C" InitFn pv_init_array_start[];
extern "C" InitFn pv_init_array_end[];

// The VMM loads .bss as zeroes (memsz beyond filesz), so this is belt and
// braces; it is cheap at CPL3 and makes the image independent of that.
void prepare_memory() {
    __builtin_memset(pv_bss_start, 0, static_cast<size_t>(pv_bss_end - pv_bss_start));
    for (InitFn* f = pv_init_array_start; f != pv_init_array_end; ++f) (*f)();
}

// The linker script hard-codes layout.h addresses; check they still agree.
const char* check_image_layout() {
    auto addr = [](const char* p) { return reinterpret_cast<uint64_t>(p); };
    if (addr(pv_exception_stubs) != layout::kExceptionStubsAddr) return "exception stubs misplaced";
    if (addr(pv_exception_stubs_end) - addr(pv_exception_stubs) !=
        layout::kExceptionVectors * layout::kExceptionStubStride)
        return "exception stubs have the wrong size";
    if (addr(pv_kernel_end) > layout::kKernelWindowEnd) return "kernel text overlaps the user window";
    if (addr(pv_user_start) != layout::kKernelWindowEnd) return "user text misplaced";
    if (addr(pv_image_end) > layout::kImageLimit) return "image exceeds layout::kImageLimit";
    return nullptr;
}

const char* check_boot(uint64_t vcpu, const abi::BootInfo* boot) {
    if (reinterpret_cast<uint64_t>(boot) != layout::kBootInfoAddr) return "BootInfo pointer (RSI) is not kBootInfoAddr";
    if (boot->magic != abi::kBootMagic) return "bad BootInfo magic";
    if (boot->abi_version != abi::kAbiVersion) return "unsupported ABI version";
    if (boot->vcpu_count == 0 || boot->vcpu_count > layout::kMaxVcpus) return "bad vCPU count";
    if (vcpu >= boot->vcpu_count) return "vCPU index (RDI) out of range";
    if (vcpu != current_vcpu()) return "stack pointer does not match the vCPU index";
    return check_image_layout();
}

}  // namespace

const abi::BootInfo& boot_info() { return *reinterpret_cast<const abi::BootInfo*>(layout::kBootInfoAddr); }

void exit(int64_t code) {
    (void)hypercall(abi::Call::Exit, static_cast<uint64_t>(code));
    for (;;) __builtin_trap();  // Exit returned: a VMM bug; #UD makes it visible
}

void vcpu_stop() {
    (void)hypercall(abi::Call::VcpuStop);
    for (;;) __builtin_trap();
}

void panic(const char* msg) {
    printf("pvguest: panic on vCPU %u: %s\n", current_vcpu(), msg);
    exit(kPanicExitCode);
}

size_t string_length(const char* s, size_t max) {
    size_t n = 0;
    while (n < max && s[n] != '\0') ++n;
    return n;
}

bool string_equal(const char* a, const char* b, size_t max) {
    for (size_t i = 0; i < max; ++i) {
        if (a[i] != b[i]) return false;
        if (a[i] == '\0') return true;
    }
    return true;
}

}  // namespace pv::guest

extern "C" [[noreturn]] void pv_rt_entry(mm::uint64_t vcpu, const pv::abi::BootInfo* boot);

extern "C" void pv_rt_entry(mm::uint64_t vcpu, const pv::abi::BootInfo* boot) {
    using namespace pv::guest;
    if (vcpu == 0) {
        prepare_memory();
        install_fault_handler();
        g_init_state.store(kInitDone, MemoryOrder::Release);
    } else {
        while (g_init_state.load(MemoryOrder::Acquire) != kInitDone) cpu_relax();
    }
    if (const char* problem = check_boot(vcpu, boot)) panic(problem);
    exit(run_workload(static_cast<uint32_t>(vcpu), *boot));
}
