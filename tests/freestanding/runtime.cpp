// Runtime for the freestanding checks (see CMakeLists.txt): the four mem*
// functions the compiler may call, and the entry point.
#include "mm/std.h"

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

// Each check_*.cpp defines this; it returns 0 when every operation behaved.
int pv_freestanding_main();

// Entered from the ELF entry with a 16-byte aligned stack (no return address),
// hence force_align_arg_pointer. Exits through the raw exit_group system call:
// the check runs as an ordinary Linux process under ctest, with no libc.
__attribute__((force_align_arg_pointer)) [[noreturn]] void pv_freestanding_start() {
    long status = pv_freestanding_main();
    for (;;) {
        asm volatile("syscall" : : "a"(231L), "D"(status) : "rcx", "r11", "memory");
    }
}
