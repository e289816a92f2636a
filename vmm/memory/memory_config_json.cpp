// The JSON form of MemoryConfig: reading with precise key paths, and to_json.
#include <algorithm>
#include <optional>

#include <nlohmann/json.hpp>

#include "vmm/abi/layout.h"
#include "vmm/memory/memory_config.h"
#include "vmm/memory/memory_config_detail.h"

namespace pv::memory {
namespace {

using detail::quote;
using nlohmann::json;

mm::Unexpected<Error> bad(const std::string& path, const std::string& why) {
    return make_error(ErrorKind::Usage, "config: " + path + ": " + why);
}
mm::Unexpected<Error> bad(const std::string& path, const Error& e) { return bad(path, e.message); }

// A non-negative integer (parsed text gives unsigned; a json built in code may hold a signed one).
std::optional<uint64_t> as_unsigned(const json& v) {
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
    return std::nullopt;
}

std::string type_of(const json& v) {
    if (as_unsigned(v)) return "an unsigned integer";
    if (v.is_number_integer()) return "a negative integer";
    if (v.is_number_float()) return "a fractional number";
    if (v.is_boolean()) return "a boolean";
    if (v.is_string()) return "a string";
    if (v.is_array()) return "an array";
    if (v.is_object()) return "an object";
    return "null";
}

// The object's keys must all be in `known`.
Status check_object(const json& obj, const std::string& path, std::initializer_list<std::string_view> known) {
    if (!obj.is_object()) return bad(path, "expected an object, got " + type_of(obj));
    for (const auto& item : obj.items()) {
        if (std::find(known.begin(), known.end(), item.key()) != known.end()) continue;
        std::string list;
        for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
        return bad(path, "unknown key " + quote(item.key()) + " (known: " + list + ")");
    }
    return {};
}

Expected<uint32_t> get_u32(const json& v, const std::string& path, uint32_t max) {
    const std::optional<uint64_t> number = as_unsigned(v);
    if (!number) return bad(path, "expected an unsigned integer, got " + type_of(v));
    const uint64_t value = *number;
    if (value > max)
        return bad(path, std::to_string(value) + " is out of range (the maximum is " + std::to_string(max) + ")");
    return static_cast<uint32_t>(value);
}

// "1G" or a byte count.
Expected<uint64_t> get_size(const json& v, const std::string& path) {
    if (const std::optional<uint64_t> bytes = as_unsigned(v)) return *bytes;
    if (!v.is_string()) return bad(path, "expected a size (\"512M\" or a byte count), got " + type_of(v));
    auto size = detail::parse_size(v.get_ref<const std::string&>());
    if (!size) return bad(path, size.error());
    return *size;
}

Expected<std::string> get_string(const json& v, const std::string& path) {
    if (!v.is_string()) return bad(path, "expected a string, got " + type_of(v));
    return v.get<std::string>();
}

Expected<bool> get_bool(const json& v, const std::string& path) {
    if (!v.is_boolean()) return bad(path, "expected true or false, got " + type_of(v));
    return v.get<bool>();
}

Expected<std::vector<uint32_t>> get_u32_array(const json& v, const std::string& path, uint32_t bound,
                                              std::string_view item) {
    if (!v.is_array()) return bad(path, "expected an array, got " + type_of(v));
    std::vector<uint32_t> out;
    for (size_t i = 0; i < v.size(); ++i) {
        PV_TRY_ASSIGN(uint32_t value, get_u32(v[i], path + "[" + std::to_string(i) + "]", bound - 1));
        out.push_back(value);
    }
    if (auto st = detail::check_u32_values(out, bound, item); !st) return bad(path, st.error());
    return out;
}

// Runs a field check and prefixes its reason with the key path.
template <class F>
Status checked(const std::string& path, F&& check) {
    if (auto st = check(); !st) return bad(path, st.error());
    return {};
}

template <class T, class F>
Expected<T> parsed(const std::string& path, F&& parse) {
    auto r = parse();
    if (!r) return bad(path, r.error());
    return std::move(r).value();
}

Status read_zone_key(ZoneConfig& zone, const std::string& key, const json& v, const std::string& path) {
    if (key == "id") {
        PV_TRY_ASSIGN(zone.id, get_string(v, path));
        return checked(path, [&] { return detail::check_zone_id(zone.id); });
    }
    if (key == "size") {
        PV_TRY_ASSIGN(zone.size, get_size(v, path));
        return checked(path, [&] { return detail::check_zone_size(zone.size); });
    }
    if (key == "quota") {
        PV_TRY_ASSIGN(zone.quota, get_size(v, path));
        return checked(path, [&] { return detail::check_quota(zone.quota); });
    }
    if (key == "host_numa_node") {
        PV_TRY_ASSIGN(uint32_t node, get_u32(v, path, kMaxHostNumaNodes - 1));
        zone.host_numa_node = node;
        return {};
    }
    if (key == "host_nodes") {
        PV_TRY_ASSIGN(zone.host_nodes, get_u32_array(v, path, kMaxHostNumaNodes, "host node"));
        std::sort(zone.host_nodes.begin(), zone.host_nodes.end());
        return {};
    }
    if (key == "prefault") {
        PV_TRY_ASSIGN(zone.prefault, get_bool(v, path));
        return {};
    }
    PV_TRY_ASSIGN(std::string text, get_string(v, path));
    if (key == "backend") {
        PV_TRY_ASSIGN(zone.backend, parsed<ZoneBackend>(path, [&] { return detail::parse_backend(text); }));
    } else {
        PV_TRY_ASSIGN(zone.policy, parsed<ZonePolicy>(path, [&] { return detail::parse_policy(text); }));
    }
    return {};
}

Expected<ZoneConfig> read_zone(const json& obj, const std::string& path) {
    PV_TRY(check_object(obj, path,
                        {"id", "size", "backend", "host_numa_node", "host_nodes", "policy", "quota", "prefault"}));
    for (const char* key : {"id", "size"})
        if (!obj.contains(key)) return bad(path, std::string("missing \"") + key + "\"");
    ZoneConfig zone;
    for (const auto& item : obj.items()) PV_TRY(read_zone_key(zone, item.key(), item.value(), path + "." + item.key()));
    return zone;
}

Expected<NumaNodeConfig> read_node(const json& obj, const std::string& path) {
    PV_TRY(check_object(obj, path, {"guest_numa_id", "cpus", "memory_zones", "fallback"}));
    if (!obj.contains("guest_numa_id")) return bad(path, "missing \"guest_numa_id\"");
    NumaNodeConfig node;
    PV_TRY_ASSIGN(node.guest_numa_id, get_u32(obj["guest_numa_id"], path + ".guest_numa_id", kMaxGuestNumaNodes - 1));
    if (obj.contains("cpus")) {
        PV_TRY_ASSIGN(node.cpus, get_u32_array(obj["cpus"], path + ".cpus", layout::kMaxVcpus, "vCPU"));
    }
    if (obj.contains("fallback")) {
        PV_TRY_ASSIGN(node.fallback,
                      get_u32_array(obj["fallback"], path + ".fallback", kMaxGuestNumaNodes, "guest node"));
    }
    if (obj.contains("memory_zones")) {
        const json& zones = obj["memory_zones"];
        const std::string zpath = path + ".memory_zones";
        if (!zones.is_array()) return bad(zpath, "expected an array, got " + type_of(zones));
        for (size_t i = 0; i < zones.size(); ++i) {
            const std::string ipath = zpath + "[" + std::to_string(i) + "]";
            PV_TRY_ASSIGN(std::string id, get_string(zones[i], ipath));
            PV_TRY(checked(ipath, [&] { return detail::check_zone_id(id); }));
            node.memory_zones.push_back(std::move(id));
        }
    }
    return node;
}

Expected<FaultAroundConfig> read_fault_around(const json& obj, const std::string& path) {
    PV_TRY(check_object(obj, path, {"enabled", "pages"}));
    FaultAroundConfig fa;
    if (obj.contains("enabled")) {
        PV_TRY_ASSIGN(fa.enabled, get_bool(obj["enabled"], path + ".enabled"));
    }
    if (obj.contains("pages")) {
        PV_TRY_ASSIGN(fa.pages, get_u32(obj["pages"], path + ".pages", kMaxFaultAroundPages));
        PV_TRY(checked(path + ".pages", [&] { return detail::check_fault_around_pages(fa.pages); }));
    }
    return fa;
}

template <class T, class F>
Expected<std::vector<T>> read_array(const json& v, const std::string& path, F&& read_item) {
    if (!v.is_array()) return bad(path, "expected an array, got " + type_of(v));
    std::vector<T> out;
    for (size_t i = 0; i < v.size(); ++i) {
        PV_TRY_ASSIGN(T item, read_item(v[i], path + "[" + std::to_string(i) + "]"));
        out.push_back(std::move(item));
    }
    return out;
}

json zone_to_json(const ZoneConfig& zone) {
    json j = {{"id", zone.id},
              {"size", format_exact_size(zone.size)},
              {"backend", to_string(zone.backend)},
              {"policy", to_string(zone.policy)},
              {"quota", format_exact_size(zone.quota)},
              {"prefault", zone.prefault}};
    if (zone.host_numa_node) j["host_numa_node"] = *zone.host_numa_node;
    if (!zone.host_nodes.empty()) j["host_nodes"] = zone.host_nodes;
    return j;
}

json node_to_json(const NumaNodeConfig& node) {
    return {{"guest_numa_id", node.guest_numa_id},
            {"cpus", node.cpus},
            {"memory_zones", node.memory_zones},
            {"fallback", node.fallback}};
}

}  // namespace

Expected<MemoryConfig> memory_config_from_json(const json& memory, const std::string& path) {
    PV_TRY(check_object(memory, path, {"zones", "numa", "fault_around"}));
    MemoryConfig config;
    if (memory.contains("zones")) {
        PV_TRY_ASSIGN(config.zones, read_array<ZoneConfig>(memory["zones"], path + ".zones", read_zone));
    }
    if (memory.contains("numa")) {
        PV_TRY_ASSIGN(config.nodes, read_array<NumaNodeConfig>(memory["numa"], path + ".numa", read_node));
    }
    if (memory.contains("fault_around")) {
        PV_TRY_ASSIGN(config.fault_around, read_fault_around(memory["fault_around"], path + ".fault_around"));
    }
    return config;
}

Expected<MemoryConfig> parse_memory_config_json(std::string_view text) {
    json doc;
    try {
        doc = json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {
        std::string what = e.what();  // may quote raw input: keep the message one printable line
        for (char& c : what)
            if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F) c = '?';
        return make_error(ErrorKind::Usage, "config: invalid JSON: " + what);
    }
    PV_TRY(check_object(doc, "(top level)", {"memory"}));
    if (!doc.contains("memory")) return bad("(top level)", "missing \"memory\"");
    return memory_config_from_json(doc["memory"]);
}

json to_json(const MemoryConfig& config) {
    json zones = json::array();
    for (const ZoneConfig& z : config.zones) zones.push_back(zone_to_json(z));
    json nodes = json::array();
    for (const NumaNodeConfig& n : config.nodes) nodes.push_back(node_to_json(n));
    return {{"zones", std::move(zones)},
            {"numa", std::move(nodes)},
            {"fault_around", {{"enabled", config.fault_around.enabled}, {"pages", config.fault_around.pages}}}};
}

std::string to_json_text(const MemoryConfig& config, int indent) {
    return json{{"memory", to_json(config)}}.dump(indent, ' ', false, json::error_handler_t::replace);
}

}  // namespace pv::memory
