// ramlist: prints the guest-physical RAM map BootInfo carries (one line per
// range) and reports its totals. vCPU 0 only; the others stop.
#include "guest/programs/programs.h"
#include "guest/programs/touch_order.h"
#include "guest/rt/console.h"
#include "guest/rt/report.h"
#include "guest/rt/runtime.h"

namespace pv::guest {

int64_t run_ramlist(uint32_t vcpu, const abi::BootInfo& boot) {
    if (vcpu != 0) vcpu_stop();
    uint32_t bad = 0;
    if (const char* why = touch::ram_map_error(boot, &bad)) {
        printf("ramlist: bad RAM map from the VMM: %s (range %u of %u)\n", why, bad, boot.ram_count);
        return 1;
    }
    printf("ramlist: %u range(s) on %u guest node(s)\n", boot.ram_count, boot.node_count);
    uint64_t total = 0;
    for (uint32_t i = 0; i < boot.ram_count; ++i) {
        const abi::RamRange& r = boot.ram[i];
        printf("  gpa 0x%012lx size 0x%010lx (%8lu KiB) node %u %s\n", r.gpa, r.size, r.size >> 10, r.node,
               touch::ram_kind_name(r.kind));
        total += r.size;
    }
    if (boot.ram_count == 0) print("ramlist: the VMM passed no RAM map (BootInfo ram_count is 0)\n");
    Report<4> report;
    report.add_u64("ram.count", boot.ram_count);
    report.add_u64("ram.bytes", total);
    report.add_u64("ram.nodes", boot.node_count);
    if (int64_t r = report.send(); r < 0) {
        printf("ramlist: the report was rejected (%s)\n", hc_error_name(r));
        return 1;
    }
    return 0;
}

}  // namespace pv::guest
