// Freestanding use of mm/addr.h and mm/result.h.
#include "mm/addr.h"
#include "mm/result.h"

int pv_freestanding_main();

int pv_freestanding_main() {
    using namespace mm;
    auto r = GuestPhysRange::try_create(GuestPhysAddr(0x1000), 0x2000);
    if (!r) return 1;
    auto f = GuestFrame::containing(r->last());
    auto a = GuestVirtAddr(0x1234).align_up(kPageSize);
    auto top = GuestVirtRange::from_inclusive(GuestVirtAddr(UINT64_MAX - 0xfff), GuestVirtAddr::max());
    return (f.number() == 2 && a && a->value() == 0x2000 && top && top->ends_at_top()) ? 0 : 1;
}
