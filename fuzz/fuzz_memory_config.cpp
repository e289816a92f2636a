// fuzz_memory_config: the memory/NUMA configuration parsers and validation
// (vmm/memory/memory_config.h).
//
// Input (text): a header line "<mode><vcpus><host nodes><ram>" then the body.
//   mode 'j': the body is a JSON document for parse_memory_config_json;
//   otherwise every body line "z:<spec>", "n:<spec>", "f:<spec>" goes to
//   parse_memory_zone / parse_numa_node / parse_fault_around.
//   vcpus = 1 + (char % 32), host nodes = 1 + (char % 4), ram = ('0'..'9' ->
//   (digit + 1) * 64 MiB, anything else -> not given).
// Then resolve_memory_config. Properties: every error is ErrorKind::Usage with
// one line; a resolved config survives to_json -> memory_config_from_json and
// to_json_text -> parse_memory_config_json unchanged; its zone pieces cover
// exactly total_size() and its node pools add up to it.
#include <nlohmann/json.hpp>
#include <string>

#include "fuzz/fuzz_check.h"
#include "vmm/memory/memory_config.h"

namespace {

using namespace pv::memory;

template <class T>
bool accept(const pv::Expected<T>& r) {
    if (r) return true;
    PV_FUZZ_CHECK(r.error().kind == pv::ErrorKind::Usage, r.error().message);
    PV_FUZZ_CHECK(pv::fuzz::is_one_line(r.error().message), r.error().message);
    return false;
}

pv::Expected<MemoryConfig> parse_flags(std::string_view body) {
    MemoryConfig cfg;
    while (!body.empty()) {
        size_t nl = body.find('\n');
        std::string_view line = body.substr(0, nl);
        body = nl == std::string_view::npos ? std::string_view{} : body.substr(nl + 1);
        if (line.size() < 2 || line[1] != ':') continue;
        std::string_view spec = line.substr(2);
        if (line[0] == 'z') {
            auto z = parse_memory_zone(spec);
            if (!accept(z)) return mm::Unexpected<pv::Error>{z.error()};
            cfg.zones.push_back(*z);
        } else if (line[0] == 'n') {
            auto n = parse_numa_node(spec);
            if (!accept(n)) return mm::Unexpected<pv::Error>{n.error()};
            cfg.nodes.push_back(*n);
        } else if (line[0] == 'f') {
            auto f = parse_fault_around(spec);
            if (!accept(f)) return mm::Unexpected<pv::Error>{f.error()};
            cfg.fault_around = *f;
        }
    }
    return cfg;
}

void check_resolved(const MemoryConfig& cfg) {
    auto back = memory_config_from_json(to_json(cfg));
    PV_FUZZ_CHECK(back.has_value(), "to_json output rejected: " + back.error().message);
    PV_FUZZ_CHECK(*back == cfg, "JSON round trip changed the config: " + to_json_text(cfg));
    auto text = parse_memory_config_json(to_json_text(cfg, 2));
    PV_FUZZ_CHECK(text.has_value(), "to_json_text output rejected: " + text.error().message);
    PV_FUZZ_CHECK(*text == cfg, "JSON text round trip changed the config: " + to_json_text(cfg));

    uint64_t pieces = 0;
    for (const auto& p : place_zones(cfg)) {
        PV_FUZZ_CHECK(p.zone_index < cfg.zones.size() && p.size > 0, "bad zone piece");
        pieces += p.size;
    }
    PV_FUZZ_CHECK(pieces == cfg.total_size(), "zone pieces do not cover the zones");
    uint64_t pooled = 0;
    for (const auto& pool : node_pools(cfg)) pooled += pool.size;
    PV_FUZZ_CHECK(pooled == cfg.total_size(), "node pools do not add up to the zones");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    size_t nl = input.find('\n');
    std::string_view header = input.substr(0, nl);
    std::string_view body = nl == std::string_view::npos ? std::string_view{} : input.substr(nl + 1);
    auto h = [&](size_t i) { return i < header.size() ? static_cast<unsigned char>(header[i]) : 0u; };

    TopologyLimits limits;
    limits.vcpus = 1 + h(1) % 32;
    limits.host_nodes = 1 + h(2) % 4;
    if (h(3) >= '0' && h(3) <= '9') limits.ram_size = uint64_t(h(3) - '0' + 1) << 26;

    auto cfg = h(0) == 'j' ? parse_memory_config_json(body) : parse_flags(body);
    if (!accept(cfg)) return 0;
    auto resolved = resolve_memory_config(*cfg, limits);
    if (!accept(resolved)) return 0;
    check_resolved(*resolved);
    return 0;
}
