// Shared helpers of the libFuzzer targets: a property check that aborts (a
// finding libFuzzer saves as crash-<sha1>) and a byte reader that turns the
// fuzzer's input into structured values without ever failing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

// A violated property is a bug in pagevisor, not in the input: report and abort.
#define PV_FUZZ_CHECK(cond, what)                                                                                     \
    do {                                                                                                              \
        if (!(cond)) {                                                                                                \
            std::fprintf(stderr, "pagevisor fuzz: property violated at %s:%d: %s\n  %s\n", __FILE__, __LINE__, #cond, \
                         std::string(what).c_str());                                                                  \
            std::abort();                                                                                             \
        }                                                                                                             \
    } while (0)

namespace pv::fuzz {

// Consumes the input from the front; past the end every read yields zeros.
class ByteReader {
public:
    ByteReader(const uint8_t* data, size_t size) : m_data(data), m_size(size) {}

    [[nodiscard]] bool empty() const { return m_pos >= m_size; }
    [[nodiscard]] size_t remaining() const { return empty() ? 0 : m_size - m_pos; }

    template <class T>
    T take() {
        T value{};
        size_t n = remaining() < sizeof(T) ? remaining() : sizeof(T);
        if (n > 0) std::memcpy(&value, m_data + m_pos, n);
        m_pos += sizeof(T);
        return value;
    }
    uint8_t byte() { return take<uint8_t>(); }
    uint64_t u64() { return take<uint64_t>(); }
    // Up to `max` bytes, as raw bytes (for text fields).
    std::string_view bytes(size_t max) {
        size_t n = remaining() < max ? remaining() : max;
        std::string_view out(reinterpret_cast<const char*>(m_data + (empty() ? 0 : m_pos)), n);
        m_pos += n;
        return out;
    }

private:
    const uint8_t* m_data;
    size_t m_size;
    size_t m_pos = 0;
};

// One-line, non-empty: the project's rule for every error message.
inline bool is_one_line(std::string_view message) {
    return !message.empty() && message.find('\n') == std::string_view::npos;
}

}  // namespace pv::fuzz
