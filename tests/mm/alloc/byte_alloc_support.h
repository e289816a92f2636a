// Test helpers shared by the byte allocator tests: aligned arenas and the
// address-derived fill pattern that catches overlapping live blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

namespace pv::test {

// An owned buffer aligned to `align` (at least 64 KiB so regions can start at a
// known alignment and tests can offset from it).
class Arena {
public:
    explicit Arena(std::size_t size, std::size_t align = 64 * 1024)
        : m_size(size), m_mem(static_cast<std::byte*>(std::aligned_alloc(align, round(size, align)))) {}
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;
    ~Arena() { std::free(m_mem); }

    [[nodiscard]] std::byte* data() const { return m_mem; }
    [[nodiscard]] std::size_t size() const { return m_size; }
    [[nodiscard]] std::span<std::byte> span(std::size_t offset = 0, std::size_t len = SIZE_MAX) const {
        if (len == SIZE_MAX) len = m_size - offset;
        return {m_mem + offset, len};
    }

private:
    static std::size_t round(std::size_t s, std::size_t a) { return (s + a - 1) / a * a; }
    std::size_t m_size;
    std::byte* m_mem;
};

inline std::uint64_t mix64(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Fills [p, p+size) with a pattern derived from the address and the seed.
inline void fill_pattern(void* p, std::size_t size, std::uint64_t seed) {
    auto* b = static_cast<unsigned char*>(p);
    std::uint64_t h = mix64(reinterpret_cast<std::uintptr_t>(p) ^ seed);
    std::size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        std::uint64_t w = h + i * 0x9E3779B97F4A7C15ULL;
        std::memcpy(b + i, &w, 8);
    }
    for (; i < size; ++i) b[i] = static_cast<unsigned char>(h >> (i % 8 * 8));
}

// True if [p, p+size) still holds fill_pattern(p, size, seed).
inline bool check_pattern(const void* p, std::size_t size, std::uint64_t seed) {
    const auto* b = static_cast<const unsigned char*>(p);
    std::uint64_t h = mix64(reinterpret_cast<std::uintptr_t>(p) ^ seed);
    std::size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        std::uint64_t w = h + i * 0x9E3779B97F4A7C15ULL;
        if (std::memcmp(b + i, &w, 8) != 0) return false;
    }
    for (; i < size; ++i)
        if (b[i] != static_cast<unsigned char>(h >> (i % 8 * 8))) return false;
    return true;
}

}  // namespace pv::test
