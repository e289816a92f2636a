#include "vmm/memory/memory_size.h"

#include <cctype>
#include <cstdio>
#include <string>

#include "vmm/abi/layout.h"

namespace pv::memory {
namespace {

// Shift for a unit suffix ("", "K", "KiB", "kb", ...), or -1 if unknown.
int unit_shift(std::string_view unit) {
    if (unit.empty() || unit == "B" || unit == "b") return 0;
    std::string u;
    for (char c : unit) u += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if ((u.size() == 3 && u.substr(1) == "IB") || (u.size() == 2 && u[1] == 'B')) u.resize(1);  // KiB, KB -> K
    if (u == "K") return 10;
    if (u == "M") return 20;
    if (u == "G") return 30;
    if (u == "T") return 40;
    return -1;
}

mm::Unexpected<Error> bad(std::string_view text, const std::string& why) {
    return make_error(ErrorKind::Usage, "invalid memory size '" + std::string(text) + "': " + why);
}

}  // namespace

SizeScan scan_size(std::string_view text) {
    SizeScan r;
    size_t i = 0;
    uint64_t number = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
        uint64_t digit = static_cast<uint64_t>(text[i] - '0');
        if (number > (UINT64_MAX - digit) / 10) return {SizeScan::Status::TooLarge, 0, {}};
        number = number * 10 + digit;
        ++i;
    }
    if (i == 0) return {SizeScan::Status::NoNumber, 0, {}};
    r.unit = text.substr(i);
    int shift = unit_shift(r.unit);
    if (shift < 0) return {SizeScan::Status::UnknownUnit, 0, r.unit};
    if (shift > 0 && number > (UINT64_MAX >> shift)) return {SizeScan::Status::TooLarge, 0, r.unit};
    r.bytes = number << shift;
    return r;
}

Expected<uint64_t> parse_memory_size(std::string_view text) {
    SizeScan scan = scan_size(text);
    switch (scan.status) {
        case SizeScan::Status::Ok: break;
        case SizeScan::Status::NoNumber: return bad(text, "expected a number with an optional K, M, G or T suffix");
        case SizeScan::Status::UnknownUnit:
            return bad(text, "unknown unit '" + std::string(scan.unit) + "' (use K, M, G or T)");
        case SizeScan::Status::TooLarge: return bad(text, "too large");
    }
    uint64_t size = scan.bytes;
    if (size % layout::kPage != 0) return bad(text, "not a multiple of 4 KiB");
    if (size < layout::kMinRamSize) return bad(text, "the minimum is " + format_size(layout::kMinRamSize));
    if (size > kMaxRamSize) return bad(text, "the maximum is " + format_size(kMaxRamSize));
    return size;
}

std::string format_size(uint64_t bytes) {
    static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int unit = 0;
    uint64_t whole = bytes;
    uint64_t rem = 0;
    while (whole >= 1024 && unit < 6) {
        rem = whole % 1024;
        whole /= 1024;
        ++unit;
    }
    char buf[48];
    if (rem == 0)
        (void)std::snprintf(buf, sizeof buf, "%llu %s", static_cast<unsigned long long>(whole), kUnits[unit]);
    else
        (void)std::snprintf(buf, sizeof buf, "%.1f %s", static_cast<double>(whole) + static_cast<double>(rem) / 1024.0,
                            kUnits[unit]);
    return buf;
}

}  // namespace pv::memory
