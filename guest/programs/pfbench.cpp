// pfbench: the cost of a guest page fault served by pagevisor (issue #6's
// benchmark), measured in the guest with rdtsc. vCPU 0 only.
//   p0 pages (0 -> 4096)       the region mmapped (mem_map) and touched
//   p1 order                   0 sequential, 1 random (touch::Permutation, keyed by BootInfo::seed)
//   p2 flags                   bit0: map with Populate (no fault: the baseline);
//                              bit1: touch twice, time the second pass (mapped-page access floor)
//                              bit2 (test only): load from a PROT_NONE page with no no-work
//                              window registered; the guest must get a segmentation fault (139)
//   p3 Nop hypercalls (0 -> 256) timed in the same VM: the bare exit floor
//   p4 no-work #PFs (0: none)  timed in the same VM: the "#PF the guest handles with no work" floor
// With p4 > 0 a PROT_NONE page at the top of the user range is reserved and
// registered as the no-work window (SetNoWorkWindow: every address from it up)
// before the timed pass, so the pass's faults (below the window) go to
// pagevisor while a window exists; after the Nops, p4 loads from
// that page each take a #PF that the CPL0 stub handles alone by skipping the
// load (abi::kNoWorkSkip bytes), with no exit. Then the window is cleared.
// The timed pass writes one 8-byte word per page; then every page's word is
// checked and the region munmapped. Reports pf.pages, pf.cycles (the timed
// pass), pf.cyc_per_page (f64), pf.errors, pf.order, pf.flags, pf.nop_calls,
// pf.nop_cycles_per_call (f64), pf.nowork_faults (p4), pf.nowork_skipped (loads
// the stub skipped: p4 when every one took the no-work path), pf.nowork_cyc_per_fault (f64).
// Exit 0 iff no errors; 2 for bad params.
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
constexpr uint64_t kFlagProbeNoWindow = 4;
constexpr uint64_t kFlagMask = kFlagPopulate | kFlagSecondPass | kFlagProbeNoWindow;
constexpr uint64_t kMaxNoWork = uint64_t(1) << 20;
constexpr uint64_t kProtNone = 0;
constexpr uint64_t kSentinel = 0x5EA7'ED00'C0FF'EE01;  // rax before a probe: still there iff the load was skipped

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

// `mov (%rdi), %rax`, spelled as bytes so that its length is exactly what the
// no-work stub skips. Returns kSentinel iff the stub skipped it.
uint64_t nowork_probe(uint64_t addr) {
    static_assert(abi::kNoWorkSkip == 3);
    uint64_t v = kSentinel;
    asm volatile(".byte 0x48, 0x8b, 0x07" : "+a"(v) : "D"(addr) : "memory");
    return v;
}

// The no-work window covers every address from its start up, so it starts at
// a PROT_NONE page at the very top of the user range, above every other area
// (pagevisor never maps that page: a probe reaching it would be a segmentation fault).
struct Window {
    uint64_t page = 0;
    bool ok = false;
};

Window open_window() {
    Window w;
    const int64_t m = mem_map(abi::kUserTop - kPage, kPage, kProtNone, abi::kMapFixed | abi::kMapNoReplace);
    if (m < 0) {
        printf("pfbench: mmap of the no-work window failed (%ld)\n", m);
        return w;
    }
    w.page = static_cast<uint64_t>(m);
    if (int64_t r = hypercall(abi::Call::SetNoWorkWindow, w.page); r != 0) {
        printf("pfbench: SetNoWorkWindow failed (%s)\n", hc_error_name(r));
        return w;
    }
    w.ok = true;
    return w;
}

// Clears the window and unmaps its page; the number of errors.
uint64_t close_window(const Window& w) {
    uint64_t errors = w.ok ? 0 : 1;
    if (w.ok && hypercall(abi::Call::SetNoWorkWindow, 0) != 0) ++errors;
    if (w.page != 0 && mem_unmap(w.page, kPage) != 0) ++errors;
    return errors;
}

struct NoWorkResult {
    uint64_t cycles = 0;
    uint64_t skipped = 0;
};

NoWorkResult time_nowork(const Window& w, uint64_t n) {
    NoWorkResult r;
    if (!w.ok) return r;
    const uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < n; ++i) r.skipped += nowork_probe(w.page) == kSentinel;
    r.cycles = rdtsc() - t0;
    return r;
}

// Test only: a probe with no window registered is an ordinary fault on a
// PROT_NONE page; the runtime's handler reports it and exits 139.
[[noreturn]] void probe_without_window() {
    const int64_t m = mem_map(0, kPage, kProtNone, 0);
    if (m < 0) exit(1);
    printf("pfbench: probe 0x%lx\n", static_cast<uint64_t>(m));
    (void)nowork_probe(static_cast<uint64_t>(m));
    printf("pfbench: the probe without a window was skipped\n");
    exit(1);
}

struct Params {
    uint64_t pages;
    uint64_t order;
    uint64_t flags;
    uint64_t nops;
    uint64_t nowork;
};

const char* params_error(const Params& p) {
    if (p.pages > kMaxPages) return "p0 pages above 2^20";
    if (p.order > 1) return "p1 order is not 0 (sequential) or 1 (random)";
    if ((p.flags & ~kFlagMask) != 0) return "p2 has unknown flag bits";
    if (p.nops > kMaxNops) return "p3 Nop calls above 2^20";
    if (p.nowork > kMaxNoWork) return "p4 no-work faults above 2^20";
    return nullptr;
}

// The report of one run (keys in the header comment); false if it was rejected.
struct Outcome {
    uint64_t cycles;
    uint64_t errors;
    NopResult nop;
    NoWorkResult nowork;
};

bool send_report(const Params& p, const Outcome& o) {
    Report<12> report;
    report.add_u64("pf.pages", p.pages);
    report.add_u64("pf.cycles", o.cycles);
    report.add_f64("pf.cyc_per_page", double(o.cycles) / double(p.pages));
    report.add_u64("pf.errors", o.errors);
    report.add_u64("pf.order", p.order);
    report.add_u64("pf.flags", p.flags);
    report.add_u64("pf.nop_calls", p.nops);
    report.add_f64("pf.nop_cycles_per_call", double(o.nop.cycles) / double(p.nops));
    report.add_u64("pf.nowork_faults", p.nowork);
    report.add_u64("pf.nowork_skipped", o.nowork.skipped);
    report.add_f64("pf.nowork_cyc_per_fault", p.nowork != 0 ? double(o.nowork.cycles) / double(p.nowork) : 0.0);
    if (int64_t r = report.send(); r < 0) {
        printf("pfbench: the report was rejected (%s)\n", hc_error_name(r));
        return false;
    }
    return true;
}

}  // namespace

int64_t run_pfbench(uint32_t vcpu, const abi::BootInfo& boot) {
    if (vcpu != 0) vcpu_stop();
    const Params p{boot.params[0] != 0 ? boot.params[0] : kDefaultPages, boot.params[1], boot.params[2],
                   boot.params[3] != 0 ? boot.params[3] : kDefaultNops, boot.params[4]};
    if (const char* why = params_error(p)) {
        printf("pfbench: %s\n", why);
        return 2;
    }
    if ((p.flags & kFlagProbeNoWindow) != 0) probe_without_window();
    const uint64_t len = p.pages * kPage;
    const uint64_t map_flags = (p.flags & kFlagPopulate) != 0 ? abi::kMapPopulate : 0;
    const int64_t m = mem_map(0, len, abi::kProtRead | abi::kProtWrite, map_flags);
    if (m < 0) {
        printf("pfbench: mmap of %lu pages failed (%ld)\n", p.pages, m);
        return 1;
    }
    const Window window = p.nowork != 0 ? open_window() : Window{};
    const uint64_t base = static_cast<uint64_t>(m);
    const touch::PageOrder order(p.order == 1 ? touch::Order::Random : touch::Order::Sequential, p.pages, boot.seed, 0);
    uint64_t pass = 0;
    if ((p.flags & kFlagSecondPass) != 0) (void)touch_pass(base, order, pass++);
    Outcome o{};
    o.cycles = touch_pass(base, order, pass);
    o.errors = verify(base, p.pages, pass);
    if (int64_t r = mem_unmap(base, len); r != 0) {
        printf("pfbench: munmap failed (%ld)\n", r);
        ++o.errors;
    }
    o.nop = time_nops(p.nops);
    o.errors += o.nop.errors;
    if (p.nowork != 0) {
        o.nowork = time_nowork(window, p.nowork);
        o.errors += close_window(window) + (p.nowork - o.nowork.skipped);
    }
    if (!send_report(p, o)) return 1;
    printf("pfbench: %lu pages, %lu cycles/page, %lu errors\n", p.pages, o.cycles / p.pages, o.errors);
    return o.errors == 0 ? 0 : 1;
}

}  // namespace pv::guest
