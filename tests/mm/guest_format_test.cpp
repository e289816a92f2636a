// The guest's printf-style formatter (guest/rt/format.h), run on the host.
// The reference model is the C library's snprintf for every conversion both
// support identically; the documented differences get their own tests.
#include <gtest/gtest.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "guest/rt/format.h"
#include "tests/support/seed.h"

namespace {

using pv::guest::fmt::format_to;

// Formats with both implementations into roomy buffers and compares text and length.
template <class... Args>
void expect_like_libc(const char* spec, Args... args) {
    char want[512];
    char got[512];
    int n = std::snprintf(want, sizeof(want), spec, args...);
    ASSERT_GE(n, 0);
    size_t m = format_to(got, sizeof(got), spec, args...);
    EXPECT_EQ(std::string(got), std::string(want)) << "format \"" << spec << "\"";
    EXPECT_EQ(m, static_cast<size_t>(n)) << "format \"" << spec << "\"";
}

std::string fmt_str(const char* spec, auto... args) {
    char buf[256];
    format_to(buf, sizeof(buf), spec, args...);
    return buf;
}

TEST(GuestFormat, PlainTextAndPercent) {
    expect_like_libc("hello");
    expect_like_libc("100%% sure");
    expect_like_libc("");
}

TEST(GuestFormat, Integers) {
    expect_like_libc("%d %i %d %d", 0, -1, INT32_MAX, INT32_MIN);
    expect_like_libc("%u %x %X", 0u, 0xdeadbeefu, 0xdeadbeefu);
    expect_like_libc("%lu %lx %ld", UINT64_MAX, UINT64_MAX, INT64_MIN);
    expect_like_libc("%llu %lld %zu", 18446744073709551615ULL, -9223372036854775807LL - 1, size_t(12345));
    expect_like_libc("%hd %hu %hhd %hhu", -70000, 70000u, 300, 300u);
}

TEST(GuestFormat, WidthFlagsAndPadding) {
    expect_like_libc("[%5d] [%-5d] [%05d] [%05d]", 42, 42, 42, -42);
    expect_like_libc("[%08lx] [%-8x] [%*d] [%-*d] [%*d]", 0xabcUL, 0xabcu, 6, 7, 6, 7, -6, 7);
    expect_like_libc("[%3d] [%03d]", 123456, 123456);
    expect_like_libc("[%c] [%3c] [%-3c]", 'a', 'b', 'c');
}

TEST(GuestFormat, Strings) {
    expect_like_libc("[%s] [%10s] [%-10s] [%.2s] [%.*s]", "abc", "abc", "abc", "abc", 1, "abc");
    expect_like_libc("[%.0s] [%5.1s]", "abc", "abc");
    // A precision bounds the read: the string need not be NUL-terminated.
    const char unterminated[3] = {'x', 'y', 'z'};
    EXPECT_EQ(fmt_str("%.3s", unterminated), "xyz");
    const char* volatile null_string = nullptr;  // volatile: keeps g++'s -Wformat-overflow out of it
    EXPECT_EQ(fmt_str("%s", static_cast<const char*>(null_string)), "(null)");
}

TEST(GuestFormat, PointersAreHexWithPrefix) {
    EXPECT_EQ(fmt_str("%p", reinterpret_cast<void*>(0x600000)), "0x600000");
    EXPECT_EQ(fmt_str("%p", static_cast<void*>(nullptr)), "0x0");  // guest address 0 is meaningful
    EXPECT_EQ(fmt_str("[%12p]", reinterpret_cast<void*>(0xd0000000)), "[  0xd0000000]");
}

TEST(GuestFormat, UnknownAndTruncatedConversionsAreCopied) {
    EXPECT_EQ(fmt_str("a%qb"), "a%qb");
    EXPECT_EQ(fmt_str("a%-5qb"), "a%-5qb");
    EXPECT_EQ(fmt_str("end%"), "end%");
    EXPECT_EQ(fmt_str("end%08l"), "end%08l");
}

TEST(GuestFormat, HugeWidthIsCapped) {
    std::string s(8192, '\0');
    size_t n = format_to(s.data(), s.size(), "%*d", 1 << 30, 1);
    EXPECT_EQ(n, static_cast<size_t>(pv::guest::fmt::kMaxWidth));
    const std::string huge = "%99999999999d";  // not a literal: g++ would reject it at compile time
    n = format_to(s.data(), s.size(), huge.c_str(), 1);
    EXPECT_EQ(n, static_cast<size_t>(pv::guest::fmt::kMaxWidth));
}

TEST(GuestFormat, TruncationKeepsSnprintfSemantics) {
    char buf[8];
    std::memset(buf, 'Z', sizeof(buf));
    EXPECT_EQ(format_to(buf, 5, "%s", "abcdefgh"), 8u);
    EXPECT_STREQ(buf, "abcd");
    EXPECT_EQ(buf[5], 'Z');  // nothing written past cap
    std::memset(buf, 'Z', sizeof(buf));
    EXPECT_EQ(format_to(buf, 1, "%d", 12345), 5u);
    EXPECT_EQ(buf[0], '\0');
    EXPECT_EQ(buf[1], 'Z');
    EXPECT_EQ(format_to(nullptr, 0, "%lu", 1234567UL), 7u);
}

// A streaming sink like the guest console's: it must see exactly the bytes.
struct StringOut {
    std::string text;
    void put(char c) { text.push_back(c); }
};

std::string stream_format(const char* spec, ...) {
    StringOut out;
    va_list ap;
    va_start(ap, spec);
    pv::guest::fmt::vformat(out, spec, ap);
    va_end(ap);
    return out.text;
}

TEST(GuestFormat, StreamingSinkSeesAllBytes) {
    std::string long_arg(3000, 'q');
    EXPECT_EQ(stream_format("<%s>|%d", long_arg.c_str(), 5), "<" + long_arg + ">|5");
}

// Random conversions from the supported subset against snprintf.
TEST(GuestFormat, RandomSpecsMatchLibc) {
    const uint64_t seed = pv::test::test_seed(0x6f726d);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    auto pick = [&](uint64_t n) { return rng() % n; };
    const char* strings[] = {"", "a", "hello", "pagevisor guest", "tab\there"};
    for (int iter = 0; iter < 3000; ++iter) {
        std::string spec = "<%";
        const char conv = "diuxXcs"[pick(7)];
        const bool numeric = conv != 'c' && conv != 's';
        if (pick(3) == 0) spec += '-';
        if (numeric && pick(3) == 0) spec += '0';
        if (pick(2) == 0) spec += std::to_string(pick(25));
        if (conv == 's' && pick(3) == 0) {
            spec += '.';
            spec += std::to_string(pick(8));
        }
        const int len = numeric ? static_cast<int>(pick(4)) : 0;  // 0 int, 1 l, 2 ll, 3 z
        spec += (len == 1 ? "l" : len == 2 ? "ll" : len == 3 ? "z" : "");
        spec += conv;
        spec += ">";
        SCOPED_TRACE(spec);
        const uint64_t bits = rng() >> pick(64);
        const bool is_signed = conv == 'd' || conv == 'i';
        if (conv == 's')
            expect_like_libc(spec.c_str(), strings[pick(5)]);
        else if (conv == 'c')
            expect_like_libc(spec.c_str(), static_cast<int>(' ' + pick(90)));
        else if (len == 0 && is_signed)
            expect_like_libc(spec.c_str(), static_cast<int>(bits));
        else if (len == 0)
            expect_like_libc(spec.c_str(), static_cast<unsigned>(bits));
        else if (is_signed)
            expect_like_libc(spec.c_str(), static_cast<long long>(bits));
        else
            expect_like_libc(spec.c_str(), static_cast<unsigned long long>(bits));
        if (HasFailure()) break;
    }
}

}  // namespace
