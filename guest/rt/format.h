// A small printf-style formatter, freestanding and header-only so that the
// host unit tests (tests/mm/guest_format_test.cpp) run the very same code.
//
// Supported: %s %c %d %i %u %x %X %p %% with the flags '-' (left-justify) and
// '0' (zero-pad numbers), a width (digits or '*'), a precision for %s (digits
// or '*': at most that many bytes), and the length modifiers hh h l ll z.
// Output matches C's printf for these, except: %p prints "0x" + lowercase hex
// (also "0x0" for null, since guest address 0 is meaningful), widths and
// precisions are capped at kMaxWidth, and an unknown conversion is copied out
// verbatim ("%q" -> "%q"). A null %s prints "(null)".
//
// The output side is any type with `void put(char)`: BufferOut gives
// snprintf semantics, the guest console flushes a buffer through ConsoleWrite.
#pragma once

#include <stdarg.h>

#include "mm/std.h"

namespace pv::guest::fmt {

using mm::size_t;
using mm::uint64_t;

inline constexpr int kMaxWidth = 4096;

// snprintf-style sink: keeps the first cap-1 bytes, counts all of them.
class BufferOut {
public:
    BufferOut(char* buf, size_t cap) : m_buf(buf), m_cap(cap) {}
    void put(char c) {
        if (m_len + 1 < m_cap) m_buf[m_len] = c;
        ++m_len;
    }
    // NUL-terminates (if cap > 0) and returns the untruncated length.
    size_t finish() {
        if (m_cap != 0) m_buf[m_len < m_cap ? m_len : m_cap - 1] = '\0';
        return m_len;
    }

private:
    char* m_buf;
    size_t m_cap;
    size_t m_len = 0;
};

namespace detail {

struct Spec {
    bool left = false;
    bool zero = false;
    int width = 0;
    int precision = -1;  // -1: none
    int longness = 0;    // -2 hh, -1 h, 0 int, 1 l, 2 ll / z
};

template <class Out>
void pad(Out& out, char c, int n) {
    for (; n > 0; --n) out.put(c);
}

// Digits of v in `base`, least significant first; returns how many.
inline int to_digits(uint64_t v, unsigned base, bool upper, char (&digits)[24]) {
    const char* set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    int n = 0;
    do {
        digits[n++] = set[v % base];
        v /= base;
    } while (v != 0);
    return n;
}

template <class Out>
void put_number(Out& out, const Spec& s, uint64_t magnitude, bool negative, unsigned base, bool upper,
                const char* prefix) {
    char digits[24];
    int n = to_digits(magnitude, base, upper, digits);
    int prefix_len = 0;
    while (prefix[prefix_len] != '\0') ++prefix_len;
    int len = n + prefix_len + (negative ? 1 : 0);
    int fill = s.width > len ? s.width - len : 0;
    if (!s.left && !s.zero) pad(out, ' ', fill);
    if (negative) out.put('-');
    for (int i = 0; i < prefix_len; ++i) out.put(prefix[i]);
    if (!s.left && s.zero) pad(out, '0', fill);
    while (n > 0) out.put(digits[--n]);
    if (s.left) pad(out, ' ', fill);
}

template <class Out>
void put_string(Out& out, const Spec& s, const char* str) {
    if (str == nullptr) str = (s.precision < 0 || s.precision >= 6) ? "(null)" : "";
    int len = 0;
    while ((s.precision < 0 || len < s.precision) && str[len] != '\0') ++len;
    int fill = s.width > len ? s.width - len : 0;
    if (!s.left) pad(out, ' ', fill);
    for (int i = 0; i < len; ++i) out.put(str[i]);
    if (s.left) pad(out, ' ', fill);
}

inline int clamp_width(int w) { return w > kMaxWidth ? kMaxWidth : w; }

// Parses flags, width, precision and length of one conversion; `p` points
// after the '%' and is left at the conversion character.
inline const char* parse_spec(const char* p, Spec& s, va_list& ap) {
    for (;; ++p) {
        if (*p == '-')
            s.left = true;
        else if (*p == '0')
            s.zero = true;
        else
            break;
    }
    if (*p == '*') {
        int w = va_arg(ap, int);
        if (w < 0) {
            s.left = true;
            w = w == INT32_MIN ? kMaxWidth : -w;
        }
        s.width = clamp_width(w);
        ++p;
    } else {
        for (; *p >= '0' && *p <= '9'; ++p) s.width = clamp_width(s.width * 10 + (*p - '0'));
    }
    if (*p == '.') {
        ++p;
        s.precision = 0;
        if (*p == '*') {
            int prec = va_arg(ap, int);
            s.precision = prec < 0 ? -1 : clamp_width(prec);
            ++p;
        } else {
            for (; *p >= '0' && *p <= '9'; ++p) s.precision = clamp_width(s.precision * 10 + (*p - '0'));
        }
    }
    if (s.left) s.zero = false;
    for (;; ++p) {
        if (*p == 'h')
            s.longness = s.longness == -1 ? -2 : -1;
        else if (*p == 'l')
            s.longness = s.longness >= 1 ? 2 : 1;
        else if (*p == 'z')
            s.longness = 2;
        else
            break;
    }
    return p;
}

inline uint64_t get_unsigned(const Spec& s, va_list& ap) {
    if (s.longness >= 1) return va_arg(ap, unsigned long long);
    unsigned v = va_arg(ap, unsigned);
    if (s.longness == -1) return static_cast<unsigned short>(v);
    if (s.longness == -2) return static_cast<unsigned char>(v);
    return v;
}

inline long long get_signed(const Spec& s, va_list& ap) {
    if (s.longness >= 1) return va_arg(ap, long long);
    int v = va_arg(ap, int);
    if (s.longness == -1) return static_cast<short>(v);
    if (s.longness == -2) return static_cast<signed char>(v);
    return v;
}

// Formats one conversion `c`; returns false if `c` is not a known conversion.
template <class Out>
bool convert(Out& out, char c, const Spec& s, va_list& ap) {
    switch (c) {
        case 'd':
        case 'i': {
            long long v = get_signed(s, ap);
            uint64_t mag = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
            put_number(out, s, mag, v < 0, 10, false, "");
            return true;
        }
        case 'u': put_number(out, s, get_unsigned(s, ap), false, 10, false, ""); return true;
        case 'x': put_number(out, s, get_unsigned(s, ap), false, 16, false, ""); return true;
        case 'X': put_number(out, s, get_unsigned(s, ap), false, 16, true, ""); return true;
        case 'p': {
            const void* p = va_arg(ap, const void*);
            put_number(out, s, reinterpret_cast<uintptr_t>(p), false, 16, false, "0x");
            return true;
        }
        case 'c': {
            char ch = static_cast<char>(va_arg(ap, int));
            int fill = s.width > 1 ? s.width - 1 : 0;
            if (!s.left) pad(out, ' ', fill);
            out.put(ch);
            if (s.left) pad(out, ' ', fill);
            return true;
        }
        case 's': put_string(out, s, va_arg(ap, const char*)); return true;
        default: return false;
    }
}

}  // namespace detail

// Formats `fmt` with the arguments in `args` into `out`.
template <class Out>
void vformat(Out& out, const char* fmt, va_list args) {
    va_list ap;
    va_copy(ap, args);
    for (const char* p = fmt; *p != '\0'; ++p) {
        if (*p != '%') {
            out.put(*p);
            continue;
        }
        const char* start = p;
        if (p[1] == '%') {
            out.put('%');
            ++p;
            continue;
        }
        detail::Spec spec;
        p = detail::parse_spec(p + 1, spec, ap);
        if (*p == '\0' || !detail::convert(out, *p, spec, ap)) {
            // Unknown or truncated conversion: copy it out verbatim.
            for (const char* q = start; q != p; ++q) out.put(*q);
            if (*p == '\0') break;
            out.put(*p);
        }
    }
    va_end(ap);
}

// snprintf: writes at most cap-1 bytes and a NUL, returns the untruncated length.
inline size_t vformat_to(char* buf, size_t cap, const char* fmt, va_list args) {
    BufferOut out(buf, cap);
    vformat(out, fmt, args);
    return out.finish();
}

__attribute__((format(printf, 3, 4))) inline size_t format_to(char* buf, size_t cap, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t n = vformat_to(buf, cap, fmt, ap);
    va_end(ap);
    return n;
}

}  // namespace pv::guest::fmt
