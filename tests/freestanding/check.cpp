// Freestanding instantiation of every mm/ structure (see CMakeLists.txt).
// When you add a structure to mm/, instantiate it and call its operations here.
#include "mm/addr.h"
#include "mm/result.h"

extern "C" {
// The compiler may emit calls to these; the guest provides the same four.
void* memcpy(void* d, const void* s, mm::size_t n);
void* memmove(void* d, const void* s, mm::size_t n);
void* memset(void* d, int c, mm::size_t n);
int memcmp(const void* a, const void* b, mm::size_t n);
[[noreturn]] void pv_freestanding_start();
}

void* memcpy(void* d, const void* s, mm::size_t n) {
    auto* dp = static_cast<unsigned char*>(d);
    const auto* sp = static_cast<const unsigned char*>(s);
    while (n--) *dp++ = *sp++;
    return d;
}
void* memmove(void* d, const void* s, mm::size_t n) {
    auto* dp = static_cast<unsigned char*>(d);
    const auto* sp = static_cast<const unsigned char*>(s);
    if (dp < sp) {
        while (n--) *dp++ = *sp++;
    } else {
        while (n--) dp[n] = sp[n];
    }
    return d;
}
void* memset(void* d, int c, mm::size_t n) {
    auto* dp = static_cast<unsigned char*>(d);
    while (n--) *dp++ = static_cast<unsigned char>(c);
    return d;
}
int memcmp(const void* a, const void* b, mm::size_t n) {
    const auto* ap = static_cast<const unsigned char*>(a);
    const auto* bp = static_cast<const unsigned char*>(b);
    for (; n; --n, ++ap, ++bp)
        if (*ap != *bp) return *ap - *bp;
    return 0;
}

namespace {

alignas(4096) std::byte g_arena[1 << 20];

int exercise_addr() {
    using namespace mm;
    auto r = GuestPhysRange::try_create(GuestPhysAddr(0x1000), 0x2000);
    if (!r) return 1;
    auto f = GuestFrame::containing(r->last());
    auto a = GuestVirtAddr(0x1234).align_up(kPageSize);
    return (f.number() == 2 && a && a->value() == 0x2000) ? 0 : 1;
}

}  // namespace

[[noreturn]] void pv_freestanding_start() {
    volatile int status = exercise_addr();
    (void)g_arena;
    (void)status;
    for (;;) __builtin_trap();
}
