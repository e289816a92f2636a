// Value parsers and the flag syntax (--memory-zone, --numa, --fault-around).
// JSON lives in memory_config_json.cpp, validation in memory_config_validate.cpp.
#include "vmm/memory/memory_config.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "vmm/abi/layout.h"
#include "vmm/memory/memory_config_detail.h"
#include "vmm/memory/memory_size.h"

namespace pv::memory {
namespace detail {
namespace {

constexpr size_t kMaxQuoted = 64;

std::string lower(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string_view strip_brackets(std::string_view text) {
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']') return text.substr(1, text.size() - 2);
    return text;
}

std::vector<std::string_view> split(std::string_view text, char sep) {
    std::vector<std::string_view> out;
    size_t start = 0;
    for (size_t i = 0; i <= text.size(); ++i) {
        if (i == text.size() || text[i] == sep) {
            out.push_back(text.substr(start, i - start));
            start = i + 1;
        }
    }
    return out;
}

}  // namespace

std::string quote(std::string_view text) {
    std::string out = "'";
    for (size_t i = 0; i < text.size() && i < kMaxQuoted; ++i) {
        auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x20 && c < 0x7F) {
            out += static_cast<char>(c);
        } else {
            char buf[8];
            (void)std::snprintf(buf, sizeof buf, "\\x%02X", c);
            out += buf;
        }
    }
    if (text.size() > kMaxQuoted) out += "...";
    return out + "'";
}

mm::Unexpected<Error> usage(std::string message) { return make_error(ErrorKind::Usage, std::move(message)); }

Expected<uint64_t> parse_size(std::string_view text) {
    SizeScan scan = scan_size(text);  // the grammar --memory uses (memory_size.h)
    switch (scan.status) {
        case SizeScan::Status::Ok: return scan.bytes;
        case SizeScan::Status::NoNumber: return usage("expected a size like 512M or 1G, got " + quote(text));
        case SizeScan::Status::UnknownUnit: return usage("unknown unit in " + quote(text) + " (use K, M, G or T)");
        case SizeScan::Status::TooLarge: return usage("size " + quote(text) + " is too large");
    }
    return usage("size " + quote(text) + " is invalid");
}

Expected<uint32_t> parse_u32(std::string_view text, uint32_t max) {
    if (text.empty() || text.size() > 10 ||
        !std::all_of(text.begin(), text.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
        return usage("expected an unsigned integer, got " + quote(text));
    uint64_t value = 0;
    for (char c : text) value = value * 10 + static_cast<uint64_t>(c - '0');
    if (value > max)
        return usage(std::to_string(value) + " is out of range (the maximum is " + std::to_string(max) + ")");
    return static_cast<uint32_t>(value);
}

Expected<bool> parse_switch(std::string_view text) {
    std::string v = lower(text);
    if (v == "on" || v == "true" || v == "yes") return true;
    if (v == "off" || v == "false" || v == "no") return false;
    return usage("expected on or off, got " + quote(text));
}

Expected<ZoneBackend> parse_backend(std::string_view text) {
    std::string v = lower(text);
    if (v == "eager") return ZoneBackend::Eager;
    if (v == "demand") return ZoneBackend::Demand;
    return usage("unknown backend " + quote(text) + " (use eager or demand)");
}

Expected<ZonePolicy> parse_policy(std::string_view text) {
    std::string v = lower(text);
    if (v == "default") return ZonePolicy::Default;
    if (v == "bind") return ZonePolicy::Bind;
    if (v == "preferred") return ZonePolicy::Preferred;
    if (v == "interleave") return ZonePolicy::Interleave;
    return usage("unknown policy " + quote(text) + " (use default, bind, preferred or interleave)");
}

Status check_u32_values(const std::vector<uint32_t>& values, uint32_t bound, std::string_view item) {
    std::vector<bool> seen(bound, false);
    for (uint32_t v : values) {
        if (v >= bound)
            return usage(std::string(item) + " " + std::to_string(v) + " is out of range (the maximum is " +
                         std::to_string(bound - 1) + ")");
        if (seen[v]) return usage(std::string(item) + " " + std::to_string(v) + " is listed twice");
        seen[v] = true;
    }
    return {};
}

Expected<std::vector<uint32_t>> parse_u32_list(std::string_view text, uint32_t bound, std::string_view item) {
    std::string_view body = strip_brackets(text);
    std::vector<uint32_t> out;
    if (body.empty()) return out;
    for (std::string_view part : split(body, ',')) {
        size_t dash = part.find('-');
        PV_TRY_ASSIGN(uint32_t first, parse_u32(part.substr(0, dash), bound - 1));
        uint32_t last = first;
        if (dash != std::string_view::npos) {
            PV_TRY_ASSIGN(last, parse_u32(part.substr(dash + 1), bound - 1));
            if (last < first) return usage("range " + quote(part) + " is reversed");
        }
        // Bounded by `bound`: a duplicate is caught below before the list can grow past it.
        for (uint64_t v = first; v <= last && out.size() <= bound; ++v) out.push_back(static_cast<uint32_t>(v));
        if (out.size() > bound) break;
    }
    PV_TRY(check_u32_values(out, bound, item));
    return out;
}

Expected<std::vector<std::string>> parse_id_list(std::string_view text) {
    std::string_view body = strip_brackets(text);
    std::vector<std::string> out;
    if (body.empty()) return out;
    for (std::string_view id : split(body, ',')) {
        PV_TRY(check_zone_id(id));
        out.emplace_back(id);
    }
    return out;
}

Status check_zone_id(std::string_view id) {
    auto ok = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'; };
    if (id.empty() || id.size() > kMaxZoneIdLength || !std::all_of(id.begin(), id.end(), ok))
        return usage("invalid zone id " + quote(id) + " (1-64 of A-Z a-z 0-9 _ - .)");
    return {};
}

Status check_zone_size(uint64_t size) {
    if (size % layout::kPage != 0) return usage(std::to_string(size) + " bytes is not a multiple of 4 KiB");
    if (size < kMinZoneSize)
        return usage(format_size(size) + " is below the minimum zone size " + format_size(kMinZoneSize));
    if (size > kMaxRamSize) return usage(format_size(size) + " is above the maximum " + format_size(kMaxRamSize));
    return {};
}

Status check_quota(uint64_t quota) {
    if (quota % layout::kPage != 0) return usage(std::to_string(quota) + " bytes is not a multiple of 4 KiB");
    if (quota > kMaxRamSize) return usage(format_size(quota) + " is above the maximum " + format_size(kMaxRamSize));
    return {};
}

Status check_fault_around_pages(uint64_t pages) {
    if (pages == 0 || pages > kMaxFaultAroundPages || (pages & (pages - 1)) != 0)
        return usage(std::to_string(pages) + " is not a power of two in [1, " + std::to_string(kMaxFaultAroundPages) +
                     "]");
    return {};
}

}  // namespace detail

namespace {

using detail::quote;
using detail::usage;

struct KeyValue {
    std::string_view key;
    std::string_view value;
};

// Splits "a=1,b=[x,y]" at commas outside brackets.
Expected<std::vector<KeyValue>> split_spec(std::string_view flag, std::string_view spec) {
    if (spec.empty()) return usage(std::string(flag) + ": empty value");
    std::vector<KeyValue> out;
    size_t start = 0;
    int depth = 0;
    for (size_t i = 0; i <= spec.size(); ++i) {
        char c = i < spec.size() ? spec[i] : ',';
        if (c == '[' && ++depth > 1) return usage(std::string(flag) + " " + quote(spec) + ": nested '['");
        if (c == ']' && --depth < 0) return usage(std::string(flag) + " " + quote(spec) + ": unmatched ']'");
        if (c != ',' || depth != 0) continue;
        std::string_view item = spec.substr(start, i - start);
        size_t eq = item.find('=');
        if (eq == std::string_view::npos || eq == 0)
            return usage(std::string(flag) + " " + quote(item) + ": expected key=value");
        out.push_back({item.substr(0, eq), item.substr(eq + 1)});
        start = i + 1;
    }
    if (depth != 0) return usage(std::string(flag) + " " + quote(spec) + ": unmatched '['");
    return out;
}

Error in_context(std::string_view flag, const KeyValue& kv, const Error& e) {
    return e.with_context(std::string(flag) + " " + quote(std::string(kv.key) + "=" + std::string(kv.value)));
}

// Rejects a key given twice (host-nodes excepted: QEMU appends).
Status check_unique_keys(std::string_view flag, const std::vector<KeyValue>& kvs) {
    for (size_t i = 0; i < kvs.size(); ++i)
        for (size_t j = 0; j < i; ++j)
            if (kvs[i].key == kvs[j].key && kvs[i].key != "host-nodes" && kvs[i].key != "host_nodes")
                return usage(std::string(flag) + " " + quote(kvs[i].key) + " is given twice");
    return {};
}

Status apply_zone_key(ZoneConfig& zone, const KeyValue& kv) {
    const std::string_view k = kv.key;
    if (k == "id") {
        PV_TRY(detail::check_zone_id(kv.value));
        zone.id = std::string(kv.value);
    } else if (k == "size") {
        PV_TRY_ASSIGN(zone.size, detail::parse_size(kv.value));
        PV_TRY(detail::check_zone_size(zone.size));
    } else if (k == "host_numa_node") {
        PV_TRY_ASSIGN(uint32_t node, detail::parse_u32(kv.value, kMaxHostNumaNodes - 1));
        zone.host_numa_node = node;
    } else if (k == "host-nodes" || k == "host_nodes") {
        PV_TRY_ASSIGN(auto nodes, detail::parse_u32_list(kv.value, kMaxHostNumaNodes, "host node"));
        zone.host_nodes.insert(zone.host_nodes.end(), nodes.begin(), nodes.end());
        PV_TRY(detail::check_u32_values(zone.host_nodes, kMaxHostNumaNodes, "host node"));
        std::sort(zone.host_nodes.begin(), zone.host_nodes.end());
    } else if (k == "backend") {
        PV_TRY_ASSIGN(zone.backend, detail::parse_backend(kv.value));
    } else if (k == "policy") {
        PV_TRY_ASSIGN(zone.policy, detail::parse_policy(kv.value));
    } else if (k == "quota") {
        PV_TRY_ASSIGN(zone.quota, detail::parse_size(kv.value));
        PV_TRY(detail::check_quota(zone.quota));
    } else if (k == "prefault") {
        PV_TRY_ASSIGN(zone.prefault, detail::parse_switch(kv.value));
    } else {
        return usage("unknown key (known: id, size, backend, host_numa_node, host-nodes, policy, quota, prefault)");
    }
    return {};
}

Status apply_node_key(NumaNodeConfig& node, const KeyValue& kv) {
    const std::string_view k = kv.key;
    if (k == "guest_numa_id") {
        PV_TRY_ASSIGN(node.guest_numa_id, detail::parse_u32(kv.value, kMaxGuestNumaNodes - 1));
    } else if (k == "cpus") {
        PV_TRY_ASSIGN(node.cpus, detail::parse_u32_list(kv.value, layout::kMaxVcpus, "vCPU"));
    } else if (k == "memory_zones") {
        PV_TRY_ASSIGN(node.memory_zones, detail::parse_id_list(kv.value));
    } else if (k == "fallback") {
        PV_TRY_ASSIGN(node.fallback, detail::parse_u32_list(kv.value, kMaxGuestNumaNodes, "guest node"));
    } else {
        return usage("unknown key (known: guest_numa_id, cpus, memory_zones, fallback)");
    }
    return {};
}

bool has_key(const std::vector<KeyValue>& kvs, std::string_view key) {
    return std::any_of(kvs.begin(), kvs.end(), [&](const KeyValue& kv) { return kv.key == key; });
}

}  // namespace

Expected<ZoneConfig> parse_memory_zone(std::string_view spec) {
    constexpr std::string_view kFlag = "--memory-zone";
    PV_TRY_ASSIGN(auto kvs, split_spec(kFlag, spec));
    PV_TRY(check_unique_keys(kFlag, kvs));
    ZoneConfig zone;
    for (const KeyValue& kv : kvs)
        if (auto st = apply_zone_key(zone, kv); !st) return mm::Unexpected<Error>{in_context(kFlag, kv, st.error())};
    for (std::string_view key : {"id", "size"})
        if (!has_key(kvs, key))
            return usage(std::string(kFlag) + " " + quote(spec) + ": missing " + std::string(key) + "=");
    return zone;
}

Expected<NumaNodeConfig> parse_numa_node(std::string_view spec) {
    constexpr std::string_view kFlag = "--numa";
    PV_TRY_ASSIGN(auto kvs, split_spec(kFlag, spec));
    PV_TRY(check_unique_keys(kFlag, kvs));
    NumaNodeConfig node;
    for (const KeyValue& kv : kvs)
        if (auto st = apply_node_key(node, kv); !st) return mm::Unexpected<Error>{in_context(kFlag, kv, st.error())};
    if (!has_key(kvs, "guest_numa_id"))
        return usage(std::string(kFlag) + " " + quote(spec) + ": missing guest_numa_id=");
    return node;
}

namespace {

Expected<uint32_t> parse_fault_around_pages(std::string_view text) {
    PV_TRY_ASSIGN(uint32_t pages, detail::parse_u32(text, kMaxFaultAroundPages));
    PV_TRY(detail::check_fault_around_pages(pages));
    return pages;
}

}  // namespace

Expected<FaultAroundConfig> parse_fault_around(std::string_view spec) {
    if (spec == "on") return FaultAroundConfig{true, kDefaultFaultAroundPages};
    if (spec == "off") return FaultAroundConfig{false, kDefaultFaultAroundPages};
    if (spec.substr(0, 6) != "pages=") return usage("--fault-around " + quote(spec) + ": expected on, off or pages=N");
    auto pages = parse_fault_around_pages(spec.substr(6));
    if (!pages) return mm::Unexpected<Error>{pages.error().with_context("--fault-around " + quote(spec))};
    return FaultAroundConfig{true, *pages};
}

uint64_t MemoryConfig::total_size() const {
    uint64_t total = 0;
    for (const ZoneConfig& z : zones) total = z.size > UINT64_MAX - total ? UINT64_MAX : total + z.size;
    return total;
}

const ZoneConfig* MemoryConfig::find_zone(std::string_view id) const {
    auto it = std::find_if(zones.begin(), zones.end(), [&](const ZoneConfig& z) { return z.id == id; });
    return it == zones.end() ? nullptr : &*it;
}

const NumaNodeConfig* MemoryConfig::find_node(uint32_t guest_numa_id) const {
    auto it = std::find_if(nodes.begin(), nodes.end(),
                           [&](const NumaNodeConfig& n) { return n.guest_numa_id == guest_numa_id; });
    return it == nodes.end() ? nullptr : &*it;
}

const NumaNodeConfig* MemoryConfig::node_of_zone(std::string_view zone_id) const {
    for (const NumaNodeConfig& n : nodes)
        if (std::find(n.memory_zones.begin(), n.memory_zones.end(), zone_id) != n.memory_zones.end()) return &n;
    return nullptr;
}

std::vector<uint32_t> zone_host_nodes(const ZoneConfig& zone) {
    if (zone.host_numa_node) return {*zone.host_numa_node};
    return zone.host_nodes;
}

ZonePolicy effective_policy(const ZoneConfig& zone) {
    if (zone.policy == ZonePolicy::Default && !zone_host_nodes(zone).empty()) return ZonePolicy::Bind;
    return zone.policy;
}

std::vector<ZonePiece> place_zones(const MemoryConfig& config) {
    std::vector<ZonePiece> pieces;
    uint64_t gpa = 0;
    for (size_t i = 0; i < config.zones.size(); ++i) {
        uint64_t offset = 0;
        while (offset < config.zones[i].size) {
            uint64_t room = gpa < layout::kLowRamLimit ? layout::kLowRamLimit - gpa : UINT64_MAX - gpa;
            uint64_t size = std::min(config.zones[i].size - offset, room);
            pieces.push_back({i, gpa, size, offset});
            offset += size;
            gpa += size;
            if (gpa == layout::kLowRamLimit) gpa = layout::k4GiB;
        }
    }
    return pieces;
}

std::string_view to_string(ZoneBackend backend) { return backend == ZoneBackend::Demand ? "demand" : "eager"; }

std::string_view to_string(ZonePolicy policy) {
    switch (policy) {
        case ZonePolicy::Default: return "default";
        case ZonePolicy::Bind: return "bind";
        case ZonePolicy::Preferred: return "preferred";
        case ZonePolicy::Interleave: return "interleave";
    }
    return "default";
}

std::string format_exact_size(uint64_t bytes) {
    static constexpr const char* kUnits[] = {"", "K", "M", "G", "T"};
    int unit = 0;
    while (unit < 4 && bytes != 0 && bytes % 1024 == 0) {
        bytes /= 1024;
        ++unit;
    }
    return std::to_string(bytes) + kUnits[unit];
}

}  // namespace pv::memory
