// Seeds for randomized tests. Every randomized test derives its seed from
// base_seed() (PAGEVISOR_SEED, or a fresh random value) and reports it on
// failure with SCOPED_TRACE(seed_trace(seed)).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

namespace pv::test {

inline std::uint64_t base_seed() {
    static const std::uint64_t seed = [] {
        if (const char* s = std::getenv("PAGEVISOR_SEED"); s != nullptr && *s != '\0')
            return static_cast<std::uint64_t>(std::strtoull(s, nullptr, 0));
        return (static_cast<std::uint64_t>(std::random_device{}()) << 32) | std::random_device{}();
    }();
    return seed;
}

// A per-test seed: the base seed mixed with a test-specific salt.
inline std::uint64_t test_seed(std::uint64_t salt) {
    std::uint64_t z = base_seed() + 0x9E3779B97F4A7C15ULL * (salt + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

inline std::string seed_trace(std::uint64_t seed) {
    return "randomized test seed " + std::to_string(seed) +
           " (rerun with PAGEVISOR_SEED=" + std::to_string(base_seed()) + ")";
}

// True when KVM tests must not skip (set by the test command when /dev/kvm exists).
inline bool kvm_required() {
    const char* s = std::getenv("PAGEVISOR_REQUIRE_KVM");
    return s != nullptr && std::string(s) == "1";
}

}  // namespace pv::test
