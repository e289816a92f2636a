#include "vmm/hypercall/report.h"

#include <cstring>

namespace pv::hc {
namespace {

bool is_key_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
}

pv::Expected<std::string> decode_key(const char (&key)[abi::kReportKeyLen]) {
    size_t len = 0;
    while (len < abi::kReportKeyLen && key[len] != '\0') ++len;
    if (len == abi::kReportKeyLen)
        return make_error(ErrorKind::Invalid,
                          "key is not NUL-terminated within " + std::to_string(abi::kReportKeyLen) + " bytes");
    if (len == 0) return make_error(ErrorKind::Invalid, "key is empty");
    for (size_t i = 0; i < len; ++i) {
        if (!is_key_char(key[i]))
            return make_error(ErrorKind::Invalid, "key byte " + std::to_string(i) + " is outside [A-Za-z0-9_.-]");
    }
    return std::string(key, len);
}

}  // namespace

pv::Expected<ReportValue> decode_report_field(const abi::ReportField& field) {
    PV_TRY_ASSIGN(std::string key, decode_key(field.key));
    if (field.reserved != 0) return make_error(ErrorKind::Invalid, "key '" + key + "': reserved is not 0");
    ReportValue v;
    v.key = std::move(key);
    v.type = field.type;
    switch (field.type) {
        case abi::FieldType::U64: v.u64 = field.value.u64; break;
        case abi::FieldType::I64: v.i64 = field.value.i64; break;
        case abi::FieldType::F64: v.f64 = field.value.f64; break;
        default:
            return make_error(ErrorKind::Invalid,
                              "key '" + v.key + "': unknown type " + std::to_string(static_cast<uint32_t>(field.type)));
    }
    return v;
}

pv::Expected<std::vector<ReportValue>> decode_report(std::span<const abi::ReportField> fields) {
    std::vector<ReportValue> out;
    out.reserve(fields.size());
    for (size_t i = 0; i < fields.size(); ++i) {
        auto v = decode_report_field(fields[i]);
        if (!v) return make_error(ErrorKind::Invalid, "field " + std::to_string(i) + ": " + v.error().message);
        out.push_back(std::move(*v));
    }
    return out;
}

std::string sanitize_console(std::span<const std::byte> bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size());
    for (std::byte b : bytes) {
        auto c = static_cast<unsigned char>(b);
        if ((c >= 0x20 && c <= 0x7e) || c == '\n' || c == '\t') {
            out.push_back(static_cast<char>(c));
        } else {
            out += "\\x";
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0xf]);
        }
    }
    return out;
}

}  // namespace pv::hc
