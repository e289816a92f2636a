// The four mem* functions the compiler may call. String instructions keep g++
// from recognising a copy loop and turning it into a call to memcpy itself
// (the build also passes -fno-tree-loop-distribute-patterns); they run
// natively at CPL3.
#include "mm/std.h"

extern "C" {
void* memcpy(void* d, const void* s, mm::size_t n);
void* memmove(void* d, const void* s, mm::size_t n);
void* memset(void* d, int c, mm::size_t n);
int memcmp(const void* a, const void* b, mm::size_t n);
}

void* memcpy(void* d, const void* s, mm::size_t n) {
    void* dst = d;
    asm volatile("rep movsb" : "+D"(dst), "+S"(s), "+c"(n) : : "memory");
    return d;
}

void* memmove(void* d, const void* s, mm::size_t n) {
    auto dp = reinterpret_cast<mm::uintptr_t>(d);
    auto sp = reinterpret_cast<mm::uintptr_t>(s);
    if (dp - sp >= n) return memcpy(d, s, n);  // no overlap that a forward copy would clobber
    // Overlapping with d above s: copy backwards.
    auto* dst = static_cast<unsigned char*>(d) + n - 1;
    const auto* src = static_cast<const unsigned char*>(s) + n - 1;
    asm volatile("std\n\trep movsb\n\tcld" : "+D"(dst), "+S"(src), "+c"(n) : : "memory", "cc");
    return d;
}

void* memset(void* d, int c, mm::size_t n) {
    void* dst = d;
    asm volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(c) : "memory");
    return d;
}

int memcmp(const void* a, const void* b, mm::size_t n) {
    const auto* ap = static_cast<const unsigned char*>(a);
    const auto* bp = static_cast<const unsigned char*>(b);
    for (mm::size_t i = 0; i < n; ++i) {
        if (ap[i] != bp[i]) return ap[i] < bp[i] ? -1 : 1;
    }
    return 0;
}
