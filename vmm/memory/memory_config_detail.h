// Internal to memory_config*.cpp: value parsers and field checks shared by the
// flag syntax, the JSON reader and the topology validation. Each returns a
// Usage error whose message is only the reason; callers add the flag or key.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/base/error.h"
#include "vmm/memory/memory_config.h"

namespace pv::memory::detail {

// `text` made safe for a one-line message: control and non-ASCII bytes as \xNN,
// cut to 64 characters, in single quotes.
std::string quote(std::string_view text);
mm::Unexpected<Error> usage(std::string message);

// "<digits>[K|M|G|T][i][B]" (binary units, case-insensitive), no bounds.
Expected<uint64_t> parse_size(std::string_view text);
// A decimal integer <= max.
Expected<uint32_t> parse_u32(std::string_view text, uint32_t max);
// on/off/true/false/yes/no.
Expected<bool> parse_switch(std::string_view text);
Expected<ZoneBackend> parse_backend(std::string_view text);
Expected<ZonePolicy> parse_policy(std::string_view text);
// "[0-3,5]", "0-3" or "5": values < bound, no duplicates, in the order given.
Expected<std::vector<uint32_t>> parse_u32_list(std::string_view text, uint32_t bound, std::string_view item);
// "[a,b]" or "a": zone ids.
Expected<std::vector<std::string>> parse_id_list(std::string_view text);

Status check_zone_id(std::string_view id);
Status check_zone_size(uint64_t size);
Status check_quota(uint64_t quota);
Status check_fault_around_pages(uint64_t pages);
// Values must be < bound and unique.
Status check_u32_values(const std::vector<uint32_t>& values, uint32_t bound, std::string_view item);

}  // namespace pv::memory::detail
