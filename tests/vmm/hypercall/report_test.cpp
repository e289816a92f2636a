// Tests for the pure payload decoders: Report fields and console sanitizing.
#include "vmm/hypercall/report.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

namespace pv::hc {
namespace {

abi::ReportField field(const char* key, abi::FieldType type, uint64_t bits) {
    abi::ReportField f{};
    std::memcpy(f.key, key, std::min(std::strlen(key), sizeof(f.key)));  // NUL-padded by f{}
    f.type = type;
    f.value.u64 = bits;
    return f;
}

void expect_invalid(const abi::ReportField& f, const std::string& substring) {
    auto r = decode_report_field(f);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::Invalid);
    EXPECT_NE(r.error().message.find(substring), std::string::npos) << r.error().message;
}

TEST(ReportDecode, DecodesEachType) {
    auto u = decode_report_field(field("pages.mapped", abi::FieldType::U64, 42));
    ASSERT_TRUE(u.has_value());
    EXPECT_EQ(u->key, "pages.mapped");
    EXPECT_EQ(u->type, abi::FieldType::U64);
    EXPECT_EQ(u->u64, 42u);
    EXPECT_EQ(u->i64, 0);

    abi::ReportField fi = field("delta-x", abi::FieldType::I64, 0);
    fi.value.i64 = -7;
    auto i = decode_report_field(fi);
    ASSERT_TRUE(i.has_value());
    EXPECT_EQ(i->i64, -7);
    EXPECT_EQ(i->u64, 0u);

    abi::ReportField ff = field("Rate_1", abi::FieldType::F64, 0);
    ff.value.f64 = 2.5;
    auto d = decode_report_field(ff);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->f64, 2.5);
}

TEST(ReportDecode, LongestKeyIs23Bytes) {
    const std::string k23(23, 'k');
    auto r = decode_report_field(field(k23.c_str(), abi::FieldType::U64, 1));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->key, k23);
    abi::ReportField f24 = field("", abi::FieldType::U64, 1);
    std::memset(f24.key, 'k', sizeof(f24.key));
    expect_invalid(f24, "not NUL-terminated");
}

TEST(ReportDecode, BytesAfterTheNulAreIgnored) {
    abi::ReportField f = field("ab", abi::FieldType::U64, 1);
    f.key[5] = '\x7f';
    auto r = decode_report_field(f);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->key, "ab");
}

TEST(ReportDecode, RejectsBadFields) {
    expect_invalid(field("", abi::FieldType::U64, 1), "empty");
    for (const char* bad : {"a b", "a/b", "k\x01", "caf\xc3\xa9", "x:y", "\"q\""})
        expect_invalid(field(bad, abi::FieldType::U64, 1), "outside [A-Za-z0-9_.-]");
    expect_invalid(field("k", static_cast<abi::FieldType>(0), 1), "unknown type 0");
    expect_invalid(field("k", static_cast<abi::FieldType>(4), 1), "unknown type 4");
    expect_invalid(field("k", static_cast<abi::FieldType>(0xffffffffu), 1), "unknown type");
    abi::ReportField r = field("k", abi::FieldType::U64, 1);
    r.reserved = 1;
    expect_invalid(r, "reserved");
}

TEST(ReportDecode, WholeReportFailsOnFirstBadField) {
    abi::ReportField fs[3] = {field("a", abi::FieldType::U64, 1), field("b", abi::FieldType::U64, 2),
                              field("", abi::FieldType::U64, 3)};
    auto bad = decode_report(fs);
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().message.rfind("field 2: ", 0), 0u) << bad.error().message;
    auto good = decode_report(std::span(fs, 2));
    ASSERT_TRUE(good.has_value());
    ASSERT_EQ(good->size(), 2u);
    EXPECT_EQ((*good)[1].key, "b");
    EXPECT_EQ((*good)[1].u64, 2u);
}

// Every byte value against an independent statement of the rule.
TEST(ConsoleSanitize, EveryByteValue) {
    for (int c = 0; c < 256; ++c) {
        const std::byte b{static_cast<uint8_t>(c)};
        const std::string out = sanitize_console(std::span(&b, 1));
        const bool passes = (c >= 32 && c < 127) || c == '\n' || c == '\t';
        if (passes) {
            EXPECT_EQ(out, std::string(1, static_cast<char>(c)));
        } else {
            char expected[5];
            std::snprintf(expected, sizeof(expected), "\\x%02x", c);
            EXPECT_EQ(out, expected);
        }
    }
}

TEST(ConsoleSanitize, MixedText) {
    const char text[] = "ok\x1b[31m\n\tend\x00";
    auto bytes = std::as_bytes(std::span(text, sizeof(text) - 1));
    EXPECT_EQ(sanitize_console(bytes), "ok\\x1b[31m\n\tend\\x00");
    EXPECT_EQ(sanitize_console({}), "");
}

}  // namespace
}  // namespace pv::hc
