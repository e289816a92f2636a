// Builds a structured report (abi::ReportField records) and sends it with
// the Report hypercall.
//
// Keys are 1..23 bytes of [A-Za-z0-9_.-] (the VMM enforces it; add_* returns
// false for an empty or too long key or when the report is full, and send()
// then still sends the fields that fit). Capacity N <= abi::kMaxReportFields.
#pragma once

#include "guest/rt/hypercall.h"
#include "mm/std.h"

namespace pv::guest {

template <mm::size_t N = 32>
class Report {
    static_assert(N > 0 && N <= abi::kMaxReportFields);

public:
    bool add_u64(const char* key, uint64_t v) {
        abi::ReportField* f = next(key, abi::FieldType::U64);
        if (f != nullptr) f->value.u64 = v;
        return f != nullptr;
    }
    bool add_i64(const char* key, int64_t v) {
        abi::ReportField* f = next(key, abi::FieldType::I64);
        if (f != nullptr) f->value.i64 = v;
        return f != nullptr;
    }
    bool add_f64(const char* key, double v) {
        abi::ReportField* f = next(key, abi::FieldType::F64);
        if (f != nullptr) f->value.f64 = v;
        return f != nullptr;
    }
    // The Report hypercall's result: the field count, or a negative HcError.
    int64_t send() const { return hypercall(abi::Call::Report, reinterpret_cast<uint64_t>(&m_fields[0]), m_count); }
    [[nodiscard]] mm::size_t size() const { return m_count; }

private:
    abi::ReportField* next(const char* key, abi::FieldType type) {
        if (m_count == N || key == nullptr || key[0] == '\0') return nullptr;
        abi::ReportField& f = m_fields[m_count];
        mm::size_t i = 0;
        for (; key[i] != '\0'; ++i) {
            if (i + 1 == abi::kReportKeyLen) return nullptr;  // no room for the NUL
            f.key[i] = key[i];
        }
        for (; i < abi::kReportKeyLen; ++i) f.key[i] = '\0';
        f.type = type;
        f.reserved = 0;
        ++m_count;
        return &f;
    }

    abi::ReportField m_fields[N]{};
    mm::size_t m_count = 0;
};

}  // namespace pv::guest
