// Pure decoding of guest-supplied hypercall payloads: Report fields and console
// text. No guest memory access here (the dispatcher copies the bytes first), so
// these are easy to test exhaustively.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/abi/hypercall.h"
#include "vmm/base/error.h"

namespace pv::hc {

// One validated Report field. Only the member matching `type` carries the
// value; the other two are 0.
struct ReportValue {
    std::string key;
    abi::FieldType type = abi::FieldType::U64;
    uint64_t u64 = 0;
    int64_t i64 = 0;
    double f64 = 0.0;
};

// Validates one field: key non-empty, NUL-terminated within kReportKeyLen, only
// [A-Za-z0-9_.-] before the NUL (bytes after it are ignored), type known,
// reserved == 0. Error: ErrorKind::Invalid with a message naming the defect.
pv::Expected<ReportValue> decode_report_field(const abi::ReportField& field);
// All fields or the first error (prefixed "field <i>: ").
pv::Expected<std::vector<ReportValue>> decode_report(std::span<const abi::ReportField> fields);

// Console text as the guest wrote it, made safe for a terminal/log: bytes
// 0x20..0x7e, '\n' and '\t' pass through; every other byte becomes "\xNN"
// (lower-case hex).
std::string sanitize_console(std::span<const std::byte> bytes);

}  // namespace pv::hc
