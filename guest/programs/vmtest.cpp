// vmtest: guest-virtual memory served by pagevisor (mmap/munmap/mprotect/brk
// and page faults). params[0] selects a scenario, params[1] a page count where
// one applies (0 -> 256). Scenarios that end in a deliberate bad access print
// "vmtest: <what> 0x<address>" first; pagevisor then stops the guest with a
// segmentation fault naming that address (exit status 6).
//   1 lazy       mmap RW, touch and verify every page, munmap; exit 0
//   2 readonly   mmap 4 pages, write, mprotect page 1 read-only, read it back (kept), write it -> segv
//   3 unmapped   mmap 2 pages, touch, munmap, read -> segv
//   4 nx         mmap a RW page, write `ret`, call it -> segv (execute)
//   5 brk        grow the break by N pages, touch, shrink, grow again: zeroed; exit 0
//   6 shootdown  2 vCPUs: vCPU 1 reads a page in a loop, vCPU 0 munmaps it; vCPU 1's next read -> segv
//   7 populate   mmap N pages with Populate, touch and verify (no faults expected); exit 0
//   8 huge       mmap 4 MiB with Huge, touch, munmap one 4 KiB page inside, the rest intact; exit 0
//   9 oom        mmap 1 TiB with Populate -> NoMemory; exit 0 iff refused
//  10 nodes      every vCPU mmaps N pages on its own node (first touch), touches them and keeps them; exit 0
//  11 badhandler  the fault handler set to an unmapped address, then a read of unmapped memory: the handler
//                 itself faults, pagevisor stops the guest (exit 6)
//  12 nohandler   the fault handler cleared, then a read of unmapped memory: pagevisor reports it (exit 6)
// Reports vm.scenario, vm.pages, vm.errors, vm.addr, vm.result.
#include "guest/programs/programs.h"
#include "guest/rt/console.h"
#include "guest/rt/memory.h"
#include "guest/rt/report.h"
#include "guest/rt/runtime.h"
#include "guest/rt/sync.h"

namespace pv::guest {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kRW = abi::kProtRead | abi::kProtWrite;

Atomic<uint64_t> g_shared{0};  // shootdown: the page
Atomic<uint32_t> g_state{0};   // shootdown: 1 = vCPU 1 reading, 2 = unmapped
Atomic<uint32_t> g_done{0};    // nodes: vCPUs finished
Atomic<uint64_t> g_errors{0};  // nodes

volatile uint64_t* word(uint64_t addr) { return reinterpret_cast<volatile uint64_t*>(addr); }
uint64_t pattern(uint64_t addr) { return addr * 0x9E3779B97F4A7C15ULL + 1; }

int64_t finish(uint64_t scenario, uint64_t pages, uint64_t errors, uint64_t addr, int64_t result) {
    Report<8> r;
    r.add_u64("vm.scenario", scenario);
    r.add_u64("vm.pages", pages);
    r.add_u64("vm.errors", errors);
    r.add_u64("vm.addr", addr);
    r.add_i64("vm.result", result);
    if (r.send() < 0) return 1;
    printf("vmtest: scenario %lu: %lu pages, %lu errors\n", scenario, pages, errors);
    return errors == 0 ? 0 : 1;
}

uint64_t touch(uint64_t base, uint64_t pages) {
    for (uint64_t i = 0; i < pages; ++i) *word(base + i * kPage) = pattern(base + i * kPage);
    uint64_t errors = 0;
    for (uint64_t i = 0; i < pages; ++i) errors += *word(base + i * kPage) != pattern(base + i * kPage);
    return errors;
}

uint64_t zero_errors(uint64_t base, uint64_t pages) {
    uint64_t errors = 0;
    for (uint64_t i = 0; i < pages; ++i) errors += *word(base + i * kPage) != 0;
    return errors;
}

[[noreturn]] void bad_access(const char* what, uint64_t addr) {
    printf("vmtest: %s 0x%lx\n", what, addr);
    if (what[0] == 'w') {
        *word(addr) = 1;
    } else {
        (void)*word(addr);
    }
    printf("vmtest: the %s at 0x%lx did not fault\n", what, addr);
    exit(3);
}

int64_t shootdown(uint32_t vcpu) {
    if (vcpu == 1) {
        while (g_shared.load(MemoryOrder::Acquire) == 0) cpu_relax();
        const uint64_t p = g_shared.load();
        uint64_t sum = *word(p);  // the translation is now cached
        g_state.store(1, MemoryOrder::Release);
        while (g_state.load(MemoryOrder::Acquire) != 2) sum += *word(p);
        // munmap has returned on vCPU 0: this read must fault (an earlier one in the loop may already have).
        sum += *word(p);
        printf("vmtest: STALE translation: the read at 0x%lx did not fault (%lu)\n", p, sum);
        exit(3);
    }
    if (vcpu != 0) vcpu_stop();
    int64_t p = mem_map(0, kPage, kRW, 0);
    if (p < 0) return finish(6, 0, 1, 0, p);
    *word(static_cast<uint64_t>(p)) = 42;
    g_shared.store(static_cast<uint64_t>(p), MemoryOrder::Release);
    while (g_state.load(MemoryOrder::Acquire) != 1) cpu_relax();
    printf("vmtest: read after munmap 0x%lx\n", static_cast<uint64_t>(p));  // vCPU 1's next read faults
    int64_t r = mem_unmap(static_cast<uint64_t>(p), kPage);
    g_state.store(2, MemoryOrder::Release);
    if (r != 0) return finish(6, 1, 1, static_cast<uint64_t>(p), r);
    for (;;) cpu_relax();  // vCPU 1's fault stops the VM
}

}  // namespace

int64_t run_vmtest(uint32_t vcpu, const abi::BootInfo& boot) {
    const uint64_t scenario = boot.params[0];
    const uint64_t n = boot.params[1] != 0 ? boot.params[1] : 256;
    if (scenario == 6) return shootdown(vcpu);
    if (scenario == 10) {
        int64_t p = mem_map(0, n * kPage, kRW, 0);  // node: the faulting vCPU's
        g_errors.fetch_add(p < 0 ? 1 : touch(static_cast<uint64_t>(p), n));
        g_done.fetch_add(1, MemoryOrder::Release);
        if (vcpu != 0) vcpu_stop();
        while (g_done.load(MemoryOrder::Acquire) < boot.vcpu_count) cpu_relax();
        return finish(10, n * boot.vcpu_count, g_errors.load(), 0, 0);
    }
    if (vcpu != 0) vcpu_stop();
    switch (scenario) {
        case 1: {
            int64_t p = mem_map(0, n * kPage, kRW, 0);
            if (p < 0) return finish(1, 0, 1, 0, p);
            uint64_t errors = zero_errors(static_cast<uint64_t>(p), n) + touch(static_cast<uint64_t>(p), n);
            int64_t r = mem_unmap(static_cast<uint64_t>(p), n * kPage);
            return finish(1, n, errors + (r != 0), static_cast<uint64_t>(p), r);
        }
        case 2: {
            int64_t p = mem_map(0, 4 * kPage, kRW, 0);
            if (p < 0) return finish(2, 0, 1, 0, p);
            const uint64_t base = static_cast<uint64_t>(p);
            uint64_t errors = touch(base, 4);
            int64_t r = mem_protect(base + kPage, kPage, abi::kProtRead);
            if (r != 0 || errors != 0 || *word(base + kPage) != pattern(base + kPage))
                return finish(2, 4, errors + 1, base, r);
            bad_access("write to read-only", base + kPage + 8);
        }
        case 3: {
            int64_t p = mem_map(0, 2 * kPage, kRW, 0);
            if (p < 0) return finish(3, 0, 1, 0, p);
            const uint64_t base = static_cast<uint64_t>(p);
            uint64_t errors = touch(base, 2);
            int64_t r = mem_unmap(base, 2 * kPage);
            if (r != 0 || errors != 0) return finish(3, 2, errors + 1, base, r);
            bad_access("read of unmapped", base + kPage);
        }
        case 4: {
            int64_t p = mem_map(0, kPage, kRW, 0);
            if (p < 0) return finish(4, 0, 1, 0, p);
            *reinterpret_cast<volatile uint8_t*>(p) = 0xC3;  // ret
            printf("vmtest: execute of no-exec 0x%lx\n", static_cast<uint64_t>(p));
            reinterpret_cast<void (*)()>(p)();
            printf("vmtest: the call of 0x%lx did not fault\n", static_cast<uint64_t>(p));
            return 3;
        }
        case 5: {
            const int64_t b0 = mem_brk(0);
            if (b0 < 0) return finish(5, 0, 1, 0, b0);
            const uint64_t base = static_cast<uint64_t>(b0);
            int64_t r = mem_brk(base + n * kPage);
            if (r != static_cast<int64_t>(base + n * kPage)) return finish(5, 0, 1, base, r);
            uint64_t errors = touch(base, n);
            r = mem_brk(base);
            errors += r != b0;
            r = mem_brk(base + n * kPage);
            errors += r != static_cast<int64_t>(base + n * kPage);
            errors += zero_errors(base, n);  // frames were returned; new ones are zeroed
            return finish(5, n, errors, base, mem_brk(0));
        }
        case 7: {
            int64_t p = mem_map(0, n * kPage, kRW, abi::kMapPopulate);
            if (p < 0) return finish(7, 0, 1, 0, p);
            uint64_t errors = zero_errors(static_cast<uint64_t>(p), n) + touch(static_cast<uint64_t>(p), n);
            return finish(7, n, errors, static_cast<uint64_t>(p), 0);
        }
        case 8: {
            constexpr uint64_t kLen = 4ULL << 20;
            int64_t p = mem_map(0, kLen, kRW, abi::kMapHuge);
            if (p < 0) return finish(8, 0, 1, 0, p);
            const uint64_t base = static_cast<uint64_t>(p), pages = kLen / kPage, hole = base + 300 * kPage;
            uint64_t errors = touch(base, pages);
            int64_t r = mem_unmap(hole, kPage);
            errors += r != 0;
            for (uint64_t i = 0; i < pages; ++i) {
                const uint64_t a = base + i * kPage;
                if (a != hole) errors += *word(a) != pattern(a);
            }
            return finish(8, pages, errors, base, r);
        }
        case 9: {
            int64_t p = mem_map(0, 1ULL << 40, kRW, abi::kMapPopulate);
            return finish(9, 0, p != static_cast<int64_t>(abi::MemError::NoMemory), 0, p);
        }
        case 11:
        case 12: {
            (void)hypercall(abi::Call::SetFaultHandler, scenario == 11 ? 0x7000'0000'0000ULL : 0);
            bad_access("read of unmapped", 0x6000'0000'0000ULL);
        }
        default: printf("vmtest: unknown scenario %lu (1-12)\n", scenario); return 2;
    }
}

}  // namespace pv::guest
