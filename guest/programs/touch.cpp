// touch: touches the guest RAM ranges BootInfo lists, in a chosen order, on
// every vCPU; proves first-touch contents are zero and that written data is
// kept; measures the first-touch pass in TSC cycles. docs/guest.md has the
// params, report fields and exit codes; the index math is in touch_order.h.
//
// Phases (every vCPU): build the same plan from BootInfo; start line; first
// touch of its slice of the ordered pages (timed; no hypercall or print in
// the loop); barrier; verify the NEXT vCPU's slice (so data written on one
// vCPU is read back on another); vCPU 0 waits for all, reports and prints.
#include "guest/programs/programs.h"
#include "guest/programs/touch_order.h"
#include "guest/rt/console.h"
#include "guest/rt/report.h"
#include "guest/rt/runtime.h"
#include "guest/rt/sync.h"

namespace pv::guest {

namespace {

using touch::kPageSize;
using touch::kWordsPerPage;
using touch::Order;
using touch::Slice;

// params[5] bits.
constexpr uint64_t kSkipZeroCheck = 1;
constexpr uint64_t kWholePage = 2;
constexpr uint64_t kNoVerify = 4;
constexpr uint64_t kReadOnlyPass = 8;
constexpr uint64_t kWriteReadOnly = 16;
constexpr uint64_t kKnownFlags = 31;

// params[1] bits: bit (RamKind - 1).
constexpr uint64_t kEagerBit = 1;
constexpr uint64_t kDemandBit = 2;
constexpr uint64_t kReadOnlyBit = 4;

constexpr int64_t kExitFailed = 1;
constexpr int64_t kExitNothingToDo = 2;  // no page selected, or params that make no sense
constexpr int64_t kPlanOk = -1;

struct Params {
    uint64_t node;  // 0: every node; k: guest node k-1
    uint64_t kinds;
    uint64_t bytes;
    Order order;
    uint64_t stride;
    uint64_t flags;
    uint64_t passes;
};

struct Plan {
    Params params{};
    uint64_t seed = 0;
    touch::PageMap map;
    touch::PageOrder order;
    uint32_t ranges = 0;           // ranges contributing pages to map
    bool has_read_only = false;    // one of them is RamKind::ReadOnly
    uint64_t first_read_only = 0;  // GPA of the first matching ReadOnly range (0: none)
};

Atomic<uint32_t> g_at_start{0};
Atomic<uint32_t> g_touched{0};
Atomic<uint32_t> g_finished{0};
Atomic<uint64_t> g_nonzero{0};
Atomic<uint64_t> g_verify_err{0};
Atomic<uint64_t> g_cycles_sum{0};
Atomic<uint64_t> g_cycles_max{0};
Atomic<uint64_t> g_checksum{0};
// Read-only pass: vCPU i's first-pass checksum of its slice (published by the g_touched barrier).
uint64_t g_slice_checksum[layout::kMaxVcpus];

uint64_t rdtsc() {
    uint32_t lo, hi;
    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t(hi) << 32) | lo;
}

void wait_for_all(Atomic<uint32_t>& arrived, uint32_t vcpus) {
    arrived.fetch_add(1, MemoryOrder::AcqRel);
    while (arrived.load(MemoryOrder::Acquire) < vcpus) cpu_relax();
}

void store_max(Atomic<uint64_t>& m, uint64_t v) {
    uint64_t cur = m.load(MemoryOrder::Relaxed);
    while (cur < v && !m.compare_exchange(cur, v)) {
    }
}

// RAM ranges are identity-mapped (GVA == GPA), so a GPA is the pointer.
uint64_t* page_ptr(uint64_t gpa) { return reinterpret_cast<uint64_t*>(gpa); }  // NOLINT(performance-no-int-to-ptr)

bool page_has_nonzero(const uint64_t* page) {
    uint64_t acc = 0;
    for (uint64_t w = 0; w < kWordsPerPage; ++w) acc |= page[w];
    return acc != 0;
}

// ---- the passes (templates: the flags are decided outside the page loop) ----

template <bool kCheckZero, bool kWhole>
uint64_t write_pass(const Plan& plan, Slice s) {
    uint64_t nonzero = 0;
    uint32_t hint = 0;
    plan.order.for_each(s, [&](uint64_t index) {
        const uint64_t gpa = plan.map.gpa_of(index, hint);
        uint64_t* page = page_ptr(gpa);
        if constexpr (kCheckZero) nonzero += page_has_nonzero(page) ? 1 : 0;
        const uint64_t base = touch::pattern_base(gpa, plan.seed);
        if constexpr (kWhole) {
            for (uint64_t w = 0; w < kWordsPerPage; ++w) page[w] = base + w * touch::kPatternStep;
        } else {
            const uint64_t w = touch::pattern_word_index(gpa);
            page[w] = base + w * touch::kPatternStep;
        }
    });
    compiler_barrier();
    return nonzero;
}

// Pages in the slice whose pattern word(s) differ from what write_pass wrote.
template <bool kWhole>
uint64_t verify_pass(const Plan& plan, Slice s) {
    compiler_barrier();
    uint64_t bad = 0;
    uint32_t hint = 0;
    plan.order.for_each(s, [&](uint64_t index) {
        const uint64_t gpa = plan.map.gpa_of(index, hint);
        const uint64_t* page = page_ptr(gpa);
        const uint64_t base = touch::pattern_base(gpa, plan.seed);
        uint64_t diff = 0;
        if constexpr (kWhole) {
            for (uint64_t w = 0; w < kWordsPerPage; ++w) diff |= page[w] ^ (base + w * touch::kPatternStep);
        } else {
            const uint64_t w = touch::pattern_word_index(gpa);
            diff = page[w] ^ (base + w * touch::kPatternStep);
        }
        bad += diff != 0 ? 1 : 0;
    });
    return bad;
}

// Read-only pass: the wrapping sum of checksum_term over the words read.
template <bool kWhole>
uint64_t read_pass(const Plan& plan, Slice s) {
    compiler_barrier();
    uint64_t sum = 0;
    uint32_t hint = 0;
    plan.order.for_each(s, [&](uint64_t index) {
        const uint64_t gpa = plan.map.gpa_of(index, hint);
        const uint64_t* page = page_ptr(gpa);
        if constexpr (kWhole) {
            for (uint64_t w = 0; w < kWordsPerPage; ++w) sum += touch::checksum_term(gpa + 8 * w, page[w]);
        } else {
            const uint64_t w = touch::pattern_word_index(gpa);
            sum += touch::checksum_term(gpa + 8 * w, page[w]);
        }
    });
    return sum;
}

struct FirstPass {
    uint64_t nonzero;
    uint64_t checksum;
};

FirstPass first_pass(const Plan& plan, Slice s) {
    const uint64_t f = plan.params.flags;
    const bool whole = (f & kWholePage) != 0;
    if ((f & kReadOnlyPass) != 0) return {0, whole ? read_pass<true>(plan, s) : read_pass<false>(plan, s)};
    if ((f & kSkipZeroCheck) != 0)
        return {whole ? write_pass<false, true>(plan, s) : write_pass<false, false>(plan, s), 0};
    return {whole ? write_pass<true, true>(plan, s) : write_pass<true, false>(plan, s), 0};
}

// Errors over `passes` re-reads of slice s: mismatching pages, or (read-only
// pass) passes whose checksum differs from the first pass's `checksum`.
uint64_t verify(const Plan& plan, Slice s, uint64_t checksum) {
    const bool whole = (plan.params.flags & kWholePage) != 0;
    const bool read_only = (plan.params.flags & kReadOnlyPass) != 0;
    uint64_t errors = 0;
    for (uint64_t p = 0; p < plan.params.passes; ++p) {
        if (read_only) {
            errors += (whole ? read_pass<true>(plan, s) : read_pass<false>(plan, s)) != checksum ? 1 : 0;
        } else {
            errors += whole ? verify_pass<true>(plan, s) : verify_pass<false>(plan, s);
        }
    }
    return errors;
}

// ---- the plan: params and the selected pages --------------------------------

// Fills p from BootInfo::params; prints (when `say`) and returns false on nonsense.
bool parse_params(const abi::BootInfo& boot, Params& p, bool say) {
    const uint64_t* a = boot.params;
    p = Params{a[0], a[1], a[2], Order(a[3]), a[4], a[5], a[6] == 0 ? 1 : a[6]};
    if (p.node > boot.node_count) {
        if (say)
            printf("touch: params[0] = %lu selects guest node %lu, but there are %u node(s)\n", p.node, p.node - 1,
                   boot.node_count);
        return false;
    }
    if ((p.kinds & ~(kEagerBit | kDemandBit | kReadOnlyBit)) != 0 || a[3] >= touch::kOrderCount ||
        (p.flags & ~kKnownFlags) != 0) {
        if (say)
            printf("touch: bad params: kinds 0x%lx (bits 0-2), order %lu (0-3), flags 0x%lx (bits 0-4)\n", p.kinds,
                   a[3], p.flags);
        return false;
    }
    if (p.kinds == 0)
        p.kinds = (p.flags & (kReadOnlyPass | kWriteReadOnly)) != 0 ? kReadOnlyBit : kEagerBit | kDemandBit;
    return true;
}

bool range_selected(const Params& p, const abi::RamRange& r) {
    if (p.node != 0 && r.node != p.node - 1) return false;
    return (p.kinds & (uint64_t(1) << (uint32_t(r.kind) - 1))) != 0;
}

// The selected ranges, in GPA order, cut after params.bytes (rounded up to pages).
void select_ranges(const abi::BootInfo& boot, Plan& plan) {
    const uint64_t bytes = plan.params.bytes;
    uint64_t budget = bytes == 0 ? ~uint64_t(0) : bytes / kPageSize + (bytes % kPageSize != 0 ? 1 : 0);
    for (uint32_t i = 0; i < boot.ram_count; ++i) {
        const abi::RamRange& r = boot.ram[i];
        if (!range_selected(plan.params, r)) continue;
        if (r.kind == abi::RamKind::ReadOnly && plan.first_read_only == 0) plan.first_read_only = r.gpa;
        if (budget == 0) continue;
        const uint64_t pages = r.size / kPageSize < budget ? r.size / kPageSize : budget;
        MM_ASSERT(plan.map.add(r.gpa, pages));
        budget -= pages;
        ++plan.ranges;
        plan.has_read_only = plan.has_read_only || r.kind == abi::RamKind::ReadOnly;
    }
}

// kPlanOk, or the exit code after printing why (when `say`).
int64_t build_plan(const abi::BootInfo& boot, Plan& plan, bool say) {
    if (boot.ram_count == 0) {
        if (say) print("touch: the VMM passed no RAM map (BootInfo ram_count is 0): nothing to touch\n");
        return kExitNothingToDo;
    }
    uint32_t bad = 0;
    if (const char* why = touch::ram_map_error(boot, &bad)) {
        if (say) printf("touch: bad RAM map from the VMM: %s (range %u of %u)\n", why, bad, boot.ram_count);
        return kExitFailed;
    }
    if (!parse_params(boot, plan.params, say)) return kExitNothingToDo;
    plan.seed = boot.seed;
    select_ranges(boot, plan);
    const uint64_t flags = plan.params.flags;
    if ((flags & kWriteReadOnly) != 0) return kPlanOk;  // needs first_read_only only
    if (plan.map.total() == 0) {
        if (say)
            printf("touch: no RAM range matches params[0] (node) = %lu and kinds 0x%lx among the %u range(s)\n",
                   plan.params.node, plan.params.kinds, boot.ram_count);
        return kExitNothingToDo;
    }
    if (plan.has_read_only && (flags & kReadOnlyPass) == 0) {
        if (say) print("touch: read-only ranges selected: set flag 8 (read-only pass) or 16 (write to read-only)\n");
        return kExitNothingToDo;
    }
    plan.order = touch::PageOrder(plan.params.order, plan.map.total(), plan.seed, plan.params.stride);
    return kPlanOk;
}

// ---- vCPU 0 -----------------------------------------------------------------

int64_t write_read_only(const Plan& plan) {
    const uint64_t gpa = plan.first_read_only;
    if (gpa == 0) {
        print("touch: write-to-read-only (flag 16) but no read-only range is selected\n");
        return kExitNothingToDo;
    }
    printf("touch: writing read-only page 0x%lx: the VMM must stop the guest\n", gpa);
    volatile uint64_t* word = page_ptr(gpa);
    *word = touch::pattern_base(gpa, plan.seed);
    printf("touch: the write to read-only page 0x%lx did not stop the guest\n", gpa);
    return kExitFailed;
}

int64_t report_touch(const Plan& plan, uint32_t vcpus) {
    const uint64_t pages = plan.map.total();
    const uint64_t nonzero = g_nonzero.load();
    const uint64_t errors = g_verify_err.load();
    const bool read_only = (plan.params.flags & kReadOnlyPass) != 0;
    const uint64_t passes = (plan.params.flags & kNoVerify) != 0 ? 0 : plan.params.passes;
    Report<12> report;
    report.add_u64("touch.pages", pages);
    report.add_u64("touch.bytes", pages * kPageSize);
    report.add_u64("touch.nonzero", nonzero);
    report.add_u64("touch.verify_err", errors);
    report.add_u64("touch.vcpus", vcpus);
    report.add_u64("touch.cycles", g_cycles_max.load());
    report.add_f64("touch.cyc_per_page", double(g_cycles_sum.load()) / double(pages));
    report.add_u64("touch.order", uint64_t(plan.params.order));
    report.add_u64("touch.ranges", plan.ranges);
    report.add_u64("touch.passes", passes);
    if (read_only) report.add_u64("touch.checksum", g_checksum.load());
    if (int64_t r = report.send(); r < 0) {
        printf("touch: the report was rejected (%s)\n", hc_error_name(r));
        return kExitFailed;
    }
    printf("touch: %s %lu pages (%lu KiB) of %u range(s), %s order, %u vCPU(s): ", read_only ? "read" : "touched",
           pages, pages * (kPageSize / 1024), plan.ranges, touch::order_name(plan.params.order), vcpus);
    if (read_only)
        printf("checksum 0x%lx, ", g_checksum.load());
    else
        printf("%lu not zero on first touch, ", nonzero);
    printf("%lu verify errors in %lu pass(es), %lu cycles/page\n", errors, passes, g_cycles_sum.load() / pages);
    return nonzero == 0 && errors == 0 ? 0 : kExitFailed;
}

}  // namespace

int64_t run_touch(uint32_t vcpu, const abi::BootInfo& boot) {
    Plan plan;
    if (int64_t code = build_plan(boot, plan, vcpu == 0); code != kPlanOk) {
        if (vcpu != 0) vcpu_stop();
        return code;
    }
    if ((plan.params.flags & kWriteReadOnly) != 0) {
        if (vcpu != 0) vcpu_stop();
        return write_read_only(plan);
    }
    const uint32_t vcpus = boot.vcpu_count;
    const uint64_t n = plan.map.total();
    wait_for_all(g_at_start, vcpus);

    const uint64_t t0 = rdtsc();
    const FirstPass first = first_pass(plan, touch::slice_of(n, vcpus, vcpu));
    const uint64_t cycles = rdtsc() - t0;
    g_cycles_sum.fetch_add(cycles);
    store_max(g_cycles_max, cycles);
    g_nonzero.fetch_add(first.nonzero);
    g_checksum.fetch_add(first.checksum);
    g_slice_checksum[vcpu] = first.checksum;
    wait_for_all(g_touched, vcpus);

    if ((plan.params.flags & kNoVerify) == 0) {
        const uint32_t next = (vcpu + 1) % vcpus;
        g_verify_err.fetch_add(verify(plan, touch::slice_of(n, vcpus, next), g_slice_checksum[next]));
    }
    g_finished.fetch_add(1, MemoryOrder::Release);
    if (vcpu != 0) vcpu_stop();
    while (g_finished.load(MemoryOrder::Acquire) < vcpus) cpu_relax();
    return report_touch(plan, vcpus);
}

}  // namespace pv::guest
