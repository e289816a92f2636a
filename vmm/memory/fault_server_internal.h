// FaultServer's private types, shared by fault_server.cpp and
// fault_server_resolve.cpp. Not part of the public API.
#pragma once

#include <time.h>

#include "vmm/memory/fault_server.h"

namespace pv::memory {

inline uint64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// Pages a window may span: the fault-around size, at least one.
inline uint64_t window_capacity(const FaultServer::Options& o) {
    return o.fault_around_pages > 1 ? o.fault_around_pages : 1;
}

std::string fault_hex(uint64_t v);

// One registered range. Immutable apart from its atomics; owned by the range
// table and only reached under m_ranges_lock.
struct FaultServer::Range {
    Range(uint64_t s, uint64_t len, RangeInfo i) : start(s), size(len), info(i) {}
    [[nodiscard]] uint64_t end() const { return start + size; }
    [[nodiscard]] uint64_t page_count() const { return size / kFaultPageSize; }
    [[nodiscard]] RangeStats stats() const {
        return RangeStats{info.id,
                          info.node,
                          mm::HostVirtAddr(start),
                          size,
                          pages.load(std::memory_order_relaxed),
                          charged.load(std::memory_order_relaxed),
                          faults.load(std::memory_order_relaxed)};
    }

    const uint64_t start;
    const uint64_t size;
    const RangeInfo info;
    // Sequential streams: the page index each recent toucher faults on next
    // if it goes on sequentially (the end of its last window). Several slots so
    // that vCPUs touching different parts of one range do not break each
    // other's streams. Racy by design: a hint for fault-around only.
    static constexpr unsigned kStreams = 4;
    std::array<std::atomic<uint64_t>, kStreams> next_page = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
    std::atomic<unsigned> next_slot{0};  // slot a new stream replaces (round robin)

    // Slot whose stream this page continues, or -1.
    [[nodiscard]] int stream_of(uint64_t page) const {
        for (unsigned i = 0; i < kStreams; ++i)
            if (next_page[i].load(std::memory_order_relaxed) == page) return static_cast<int>(i);
        return -1;
    }
    // Points the stream (a new one if slot < 0) at `next`; returns its slot.
    int advance_stream(int slot, uint64_t next) {
        unsigned i =
            slot >= 0 ? static_cast<unsigned>(slot) : next_slot.fetch_add(1, std::memory_order_relaxed) % kStreams;
        next_page[i].store(next, std::memory_order_relaxed);
        return static_cast<int>(i);
    }
    std::atomic<uint64_t> pages{0};
    std::atomic<uint64_t> charged{0};
    std::atomic<uint64_t> faults{0};
};

// One server thread and what the watchdog sees of it.
struct FaultServer::Worker {
    unsigned index = 0;
    int cpu = kNoCpu;
    std::thread thread;
    std::vector<std::byte> buffer;           // PageSource data for one window
    std::atomic<uint64_t> busy_since_ns{0};  // 0: idle
    std::atomic<uint64_t> busy_address{0};
    uint64_t reported_since = 0;  // watchdog thread only
    bool fatal_pending = false;   // this thread recorded the first fatal error; notify after unlocking
    uint64_t wake_address = 0;    // page to UFFDIO_WAKE after the notification (0: none)
};

}  // namespace pv::memory
