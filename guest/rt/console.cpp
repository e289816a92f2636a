#include "guest/rt/console.h"

#include "guest/rt/format.h"
#include "guest/rt/runtime.h"

namespace pv::guest {

int64_t console_write(const char* s, size_t len) {
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done < abi::kMaxConsoleWrite ? len - done : abi::kMaxConsoleWrite;
        int64_t r = hypercall(abi::Call::ConsoleWrite, reinterpret_cast<uint64_t>(s + done), chunk);
        if (r < 0) return r;
        if (r == 0) break;  // the VMM took nothing: do not spin
        done += static_cast<size_t>(r);
    }
    return static_cast<int64_t>(done);
}

void print(const char* s) { (void)console_write(s, string_length(s)); }

namespace {

// Buffers formatted output and flushes it through ConsoleWrite when full.
class ConsoleOut {
public:
    void put(char c) {
        if (m_len == sizeof(m_buf)) flush();
        m_buf[m_len++] = c;
    }
    void flush() {
        if (m_len != 0) (void)console_write(m_buf, m_len);
        m_len = 0;
    }

private:
    char m_buf[512];
    size_t m_len = 0;
};

}  // namespace

void printf(const char* fmt, ...) {
    ConsoleOut out;
    va_list ap;
    va_start(ap, fmt);
    fmt::vformat(out, fmt, ap);
    va_end(ap);
    out.flush();
}

}  // namespace pv::guest
