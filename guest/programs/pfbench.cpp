// pfbench: the cost of a guest page fault served by pagevisor (issue #6's
// benchmark), measured in the guest with rdtsc. vCPU 0 only.
//   p0 pages (0 -> 4096)       the region mmapped (mem_map) and touched
//   p1 order                   0 sequential, 1 random (touch::Permutation, keyed by BootInfo::seed)
//   p2 flags                   bit0: map with Populate (no fault: the baseline);
//                              bit1: touch twice, time the second pass (mapped-page access floor)
//   p3 Nop hypercalls (0 -> 256) timed in the same VM: the bare exit floor
// The timed pass writes one 8-byte word per page; then every page's word is
// checked and the region munmapped. Reports pf.pages, pf.cycles (the timed
// pass), pf.cyc_per_page (f64), pf.errors, pf.order, pf.flags, pf.nop_calls,
// pf.nop_cycles_per_call (f64). Exit 0 iff no errors; 2 for bad params.
#include "guest/programs/programs.h"
#include "guest/programs/touch_order.h"
#include "guest/rt/console.h"
#include "guest/rt/memory.h"
#include "guest/rt/report.h"
#include "guest/rt/runtime.h"

namespace pv::guest {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kDefaultPages = 4096;
constexpr uint64_t kMaxPages = uint64_t(1) << 20;  // 4 GiB of address space
constexpr uint64_t kDefaultNops = 256;
constexpr uint64_t kMaxNops = uint64_t(1) << 20;
constexpr uint64_t kFlagPopulate = 1;
constexpr uint64_t kFlagSecondPass = 2;
constexpr uint64_t kFlagMask = kFlagPopulate | kFlagSecondPass;

uint64_t rdtsc() {
    uint32_t lo, hi;
    asm volatile("rdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return (uint64_t(hi) << 32) | lo;
}

volatile uint64_t* word(uint64_t addr) { return reinterpret_cast<volatile uint64_t*>(addr); }
uint64_t pattern(uint64_t addr, uint64_t pass) { return touch::splitmix64(addr) + pass; }

// One 8-byte write per page in the chosen order; returns the TSC cycles taken.
uint64_t touch_pass(uint64_t base, const touch::PageOrder& order, uint64_t pass) {
    const uint64_t t0 = rdtsc();
    order.for_each(touch::Slice{0, order.size()}, [&](uint64_t i) {
        const uint64_t a = base + i * kPage;
        *word(a) = pattern(a, pass);
    });
    return rdtsc() - t0;
}

uint64_t verify(uint64_t base, uint64_t pages, uint64_t pass) {
    uint64_t errors = 0;
    for (uint64_t i = 0; i < pages; ++i) errors += *word(base + i * kPage) != pattern(base + i * kPage, pass);
    return errors;
}

struct NopResult {
    uint64_t cycles = 0;
    uint64_t errors = 0;
};

NopResult time_nops(uint64_t n) {
    NopResult r;
    const uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < n; ++i) r.errors += hypercall(abi::Call::Nop) != 0;
    r.cycles = rdtsc() - t0;
    return r;
}

struct Params {
    uint64_t pages;
    uint64_t order;
    uint64_t flags;
    uint64_t nops;
};

const char* params_error(const Params& p) {
    if (p.pages > kMaxPages) return "p0 pages above 2^20";
    if (p.order > 1) return "p1 order is not 0 (sequential) or 1 (random)";
    if ((p.flags & ~kFlagMask) != 0) return "p2 has unknown flag bits";
    if (p.nops > kMaxNops) return "p3 Nop calls above 2^20";
    return nullptr;
}

}  // namespace

int64_t run_pfbench(uint32_t vcpu, const abi::BootInfo& boot) {
    if (vcpu != 0) vcpu_stop();
    const Params p{boot.params[0] != 0 ? boot.params[0] : kDefaultPages, boot.params[1], boot.params[2],
                   boot.params[3] != 0 ? boot.params[3] : kDefaultNops};
    if (const char* why = params_error(p)) {
        printf("pfbench: %s\n", why);
        return 2;
    }
    const uint64_t len = p.pages * kPage;
    const uint64_t map_flags = (p.flags & kFlagPopulate) != 0 ? abi::kMapPopulate : 0;
    const int64_t m = mem_map(0, len, abi::kProtRead | abi::kProtWrite, map_flags);
    if (m < 0) {
        printf("pfbench: mmap of %lu pages failed (%ld)\n", p.pages, m);
        return 1;
    }
    const uint64_t base = static_cast<uint64_t>(m);
    const touch::PageOrder order(p.order == 1 ? touch::Order::Random : touch::Order::Sequential, p.pages, boot.seed, 0);
    uint64_t pass = 0;
    if ((p.flags & kFlagSecondPass) != 0) (void)touch_pass(base, order, pass++);
    const uint64_t cycles = touch_pass(base, order, pass);
    uint64_t errors = verify(base, p.pages, pass);
    if (int64_t r = mem_unmap(base, len); r != 0) {
        printf("pfbench: munmap failed (%ld)\n", r);
        ++errors;
    }
    const NopResult nop = time_nops(p.nops);
    errors += nop.errors;

    Report<8> report;
    report.add_u64("pf.pages", p.pages);
    report.add_u64("pf.cycles", cycles);
    report.add_f64("pf.cyc_per_page", double(cycles) / double(p.pages));
    report.add_u64("pf.errors", errors);
    report.add_u64("pf.order", p.order);
    report.add_u64("pf.flags", p.flags);
    report.add_u64("pf.nop_calls", p.nops);
    report.add_f64("pf.nop_cycles_per_call", double(nop.cycles) / double(p.nops));
    if (int64_t r = report.send(); r < 0) {
        printf("pfbench: the report was rejected (%s)\n", hc_error_name(r));
        return 1;
    }
    printf("pfbench: %lu pages, %lu cycles/page, %lu errors\n", p.pages, cycles / p.pages, errors);
    return errors == 0 ? 0 : 1;
}

}  // namespace pv::guest
