// Parsing of the --memory size ("256M", "1G", "49152K", "52428800").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "vmm/base/error.h"

namespace pv::memory {

// Largest guest pagevisor accepts: RAM is reserved with MAP_NORESERVE, but
// the guest may touch all of it.
inline constexpr uint64_t kMaxRamSize = uint64_t(1) << 40;  // 1 TiB

// The size grammar shared by every size pagevisor parses (--memory, zone sizes and
// quotas): a decimal number with an optional K/M/G/T suffix (binary units,
// case-insensitive, optional "iB"/"B"). Each caller words its own errors.
struct SizeScan {
    enum class Status { Ok, NoNumber, UnknownUnit, TooLarge } status = Status::Ok;
    uint64_t bytes = 0;     // valid when status == Ok
    std::string_view unit;  // the suffix as written (for UnknownUnit messages)
};
SizeScan scan_size(std::string_view text);

// A decimal number with an optional K/M/G/T suffix (binary units, case-insensitive,
// an optional trailing "iB"/"B"). Usage error unless the result is page aligned and
// within [layout::kMinRamSize, kMaxRamSize].
Expected<uint64_t> parse_memory_size(std::string_view text);

// "256 MiB", "1.5 GiB", "48 MiB": for reports.
std::string format_size(uint64_t bytes);

}  // namespace pv::memory
