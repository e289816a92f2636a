// Lock-free fault latency histogram used by the fault server (fault_server.h).
//
// Buckets are log2 of nanoseconds: bucket b counts samples in [2^b, 2^(b+1))
// (bucket 0 also holds 0 ns). Recording is one relaxed fetch_add plus a CAS
// loop for the maximum, so any number of server threads may record at once.
// A Snapshot is a plain copy that computes quantiles: quantile(q) returns the
// upper bound of the bucket holding the q-th sample (clamped to the exact
// maximum), so it over-estimates by less than 2x and never exceeds max().
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>

namespace pv::memory {

class LatencyHistogram {
public:
    static constexpr unsigned kBuckets = 64;

    struct Snapshot {
        std::array<uint64_t, kBuckets> buckets{};
        uint64_t count = 0;
        uint64_t max_ns = 0;
        uint64_t sum_ns = 0;

        // Smallest bucket upper bound covering a fraction q (0..1] of the samples; 0 if empty.
        [[nodiscard]] uint64_t quantile_ns(double q) const {
            if (count == 0) return 0;
            auto rank = static_cast<uint64_t>(q * static_cast<double>(count));
            if (rank == 0) rank = 1;
            if (rank > count) rank = count;
            uint64_t seen = 0;
            for (unsigned b = 0; b < kBuckets; ++b) {
                seen += buckets[b];
                if (seen >= rank) {
                    uint64_t upper = b >= 63 ? UINT64_MAX : (uint64_t{1} << (b + 1)) - 1;
                    return upper < max_ns ? upper : max_ns;
                }
            }
            return max_ns;
        }
        [[nodiscard]] uint64_t p50_ns() const { return quantile_ns(0.50); }
        [[nodiscard]] uint64_t p99_ns() const { return quantile_ns(0.99); }
        [[nodiscard]] uint64_t mean_ns() const { return count == 0 ? 0 : sum_ns / count; }
    };

    static constexpr unsigned bucket_of(uint64_t ns) {
        return ns == 0 ? 0 : static_cast<unsigned>(63 - std::countl_zero(ns));
    }

    void record(uint64_t ns) {
        m_buckets[bucket_of(ns)].fetch_add(1, std::memory_order_relaxed);
        m_sum.fetch_add(ns, std::memory_order_relaxed);
        uint64_t cur = m_max.load(std::memory_order_relaxed);
        while (ns > cur && !m_max.compare_exchange_weak(cur, ns, std::memory_order_relaxed)) {
        }
    }

    // Not atomic as a whole: concurrent records may be partly included.
    [[nodiscard]] Snapshot snapshot() const {
        Snapshot s;
        for (unsigned b = 0; b < kBuckets; ++b) {
            s.buckets[b] = m_buckets[b].load(std::memory_order_relaxed);
            s.count += s.buckets[b];
        }
        s.max_ns = m_max.load(std::memory_order_relaxed);
        s.sum_ns = m_sum.load(std::memory_order_relaxed);
        return s;
    }

private:
    std::array<std::atomic<uint64_t>, kBuckets> m_buckets{};
    std::atomic<uint64_t> m_max{0};
    std::atomic<uint64_t> m_sum{0};
};

}  // namespace pv::memory
