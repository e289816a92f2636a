// Per-fault latency histograms for scripts/bench: a benchmark that measures the
// latency of each fault (one demand-paging mode at a time) hands its samples or
// its bucket counts to this header, which writes `<dir>/<mode>.json` when the
// environment variable PAGEVISOR_BENCH_HIST_DIR names a directory (scripts/bench
// sets it to `<out>/latency/` and plots every file found there).
//
// File format (docs/benchmarks.md, "Fault latency files"):
//   {"mode": "uffd-copy", "unit": "ns",
//    "buckets": [{"le": 1000.0, "count": 3}, ..., {"le": "+Inf", "count": 1}],
//    "count": 1234, "p50": 41250.0, "p99": 97000.0, "max": 1520000.0}
// A bucket counts the faults with latency <= le and > the previous bucket's le;
// bounds strictly increase; only the last bucket may be the overflow "+Inf".
// `count` is the sum of the bucket counts.
//
// Usage in a benchmark (after its timed loop):
//   auto h = pv::bench::histogram_from_samples("uffd-copy", samples_ns, pv::bench::log_bucket_bounds());
//   if (!h) return state.SkipWithError(h.error().to_string().c_str());
//   if (auto s = pv::bench::export_histogram(*h); !s) state.SkipWithError(s.error().to_string().c_str());
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "vmm/base/error.h"

namespace pv::bench {

inline constexpr const char* kHistDirEnv = "PAGEVISOR_BENCH_HIST_DIR";
inline constexpr double kOverflow = std::numeric_limits<double>::infinity();

struct LatencyBucket {
    double le_ns = 0;  // upper bound (inclusive); kOverflow for the last, open bucket
    uint64_t count = 0;
};

struct LatencyHistogram {
    std::string mode;
    std::vector<LatencyBucket> buckets;
    uint64_t count = 0;
    double p50_ns = 0;
    double p99_ns = 0;
    double max_ns = 0;
};

// Geometric bucket bounds from first_ns to last_ns (both included), per_decade
// buckets per factor of ten, rounded to whole nanoseconds.
inline std::vector<double> log_bucket_bounds(double first_ns = 100, double last_ns = 1e9, int per_decade = 10) {
    std::vector<double> bounds;
    if (!(first_ns >= 1) || !(last_ns >= first_ns) || per_decade < 1 || !std::isfinite(last_ns)) return bounds;
    for (int i = 0;; ++i) {
        double b = std::round(first_ns * std::pow(10.0, double(i) / per_decade));
        if (b > last_ns * (1 + 1e-9)) break;
        if (bounds.empty() || b > bounds.back()) bounds.push_back(b);
    }
    if (bounds.back() < last_ns) bounds.push_back(last_ns);
    return bounds;
}

namespace detail {

inline mm::Unexpected<Error> invalid(const std::string& what) {
    return make_error(ErrorKind::Invalid, "latency histogram: " + what);
}

// A mode becomes a file name: letters, digits, '.', '_', '-'; not starting with '.'.
inline Status check_mode(const std::string& mode) {
    if (mode.empty() || mode.size() > 64 || mode.front() == '.') return invalid("bad mode name '" + mode + "'");
    for (char c : mode) {
        bool good = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
        if (!good) return invalid("bad character in mode name '" + mode + "'");
    }
    return {};
}

inline Status check_bounds(std::span<const double> bounds) {
    if (bounds.empty()) return invalid("no bucket bounds");
    for (size_t i = 0; i < bounds.size(); ++i) {
        if (!std::isfinite(bounds[i]) || bounds[i] < 0) return invalid("bucket bound is not a finite value >= 0");
        if (i > 0 && !(bounds[i] > bounds[i - 1])) return invalid("bucket bounds do not strictly increase");
    }
    return {};
}

// Upper bound of the bucket holding the q-quantile (nearest rank): the
// distribution's value at q is at most this. The overflow bucket answers max.
inline double bucket_quantile(const LatencyHistogram& h, double q) {
    uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * double(h.count))));
    uint64_t seen = 0;
    for (const auto& b : h.buckets) {
        seen += b.count;
        if (seen >= rank) return std::isinf(b.le_ns) ? h.max_ns : std::min(b.le_ns, h.max_ns);
    }
    return h.max_ns;
}

}  // namespace detail

// From bucket counts: counts.size() == bounds.size(), or one more (the last is
// the overflow bucket, > bounds.back()). p50/p99 are bucket upper bounds (capped
// at max_ns), so they over-estimate by at most one bucket width.
inline Expected<LatencyHistogram> histogram_from_buckets(std::string mode, std::span<const double> upper_bounds_ns,
                                                         std::span<const uint64_t> counts, double max_ns) {
    PV_TRY(detail::check_mode(mode));
    PV_TRY(detail::check_bounds(upper_bounds_ns));
    if (counts.size() != upper_bounds_ns.size() && counts.size() != upper_bounds_ns.size() + 1)
        return detail::invalid("need one count per bound (plus optionally one overflow count)");
    if (!std::isfinite(max_ns) || max_ns < 0) return detail::invalid("max is not a finite value >= 0");
    LatencyHistogram h;
    h.mode = std::move(mode);
    for (size_t i = 0; i < counts.size(); ++i) {
        h.buckets.push_back({i < upper_bounds_ns.size() ? upper_bounds_ns[i] : kOverflow, counts[i]});
        if (h.count + counts[i] < h.count) return detail::invalid("counts overflow");
        h.count += counts[i];
    }
    if (h.count == 0) {
        h.max_ns = 0;
        return h;
    }
    h.max_ns = max_ns;
    h.p50_ns = detail::bucket_quantile(h, 0.50);
    h.p99_ns = detail::bucket_quantile(h, 0.99);
    return h;
}

// From raw samples (ns): exact p50/p99 (nearest rank) and max; samples above
// the last bound go to an overflow bucket, present only when non-empty.
inline Expected<LatencyHistogram> histogram_from_samples(std::string mode, std::span<const double> samples_ns,
                                                         std::span<const double> upper_bounds_ns) {
    PV_TRY(detail::check_mode(mode));
    PV_TRY(detail::check_bounds(upper_bounds_ns));
    std::vector<double> sorted(samples_ns.begin(), samples_ns.end());
    for (double s : sorted)
        if (!std::isfinite(s) || s < 0) return detail::invalid("sample is not a finite value >= 0");
    std::sort(sorted.begin(), sorted.end());
    LatencyHistogram h;
    h.mode = std::move(mode);
    auto it = sorted.begin();
    for (double le : upper_bounds_ns) {
        auto end = std::upper_bound(it, sorted.end(), le);
        h.buckets.push_back({le, static_cast<uint64_t>(end - it)});
        it = end;
    }
    if (it != sorted.end()) h.buckets.push_back({kOverflow, static_cast<uint64_t>(sorted.end() - it)});
    h.count = sorted.size();
    if (sorted.empty()) return h;
    auto nearest_rank = [&](double q) {
        size_t rank = std::max<size_t>(1, static_cast<size_t>(std::ceil(q * double(sorted.size()))));
        return sorted[rank - 1];
    };
    h.p50_ns = nearest_rank(0.50);
    h.p99_ns = nearest_rank(0.99);
    h.max_ns = sorted.back();
    return h;
}

inline nlohmann::json to_json(const LatencyHistogram& h) {
    nlohmann::json buckets = nlohmann::json::array();
    for (const auto& b : h.buckets) {
        nlohmann::json le = std::isinf(b.le_ns) ? nlohmann::json("+Inf") : nlohmann::json(b.le_ns);
        buckets.push_back({{"le", le}, {"count", b.count}});
    }
    return {{"mode", h.mode},  {"unit", "ns"},    {"buckets", buckets}, {"count", h.count},
            {"p50", h.p50_ns}, {"p99", h.p99_ns}, {"max", h.max_ns}};
}

// Writes `<dir>/<mode>.json` (creating dir); returns the path written.
inline Expected<std::string> write_histogram(const LatencyHistogram& h, const std::string& dir) {
    PV_TRY(detail::check_mode(h.mode));
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return make_error(ErrorKind::Io, "latency histogram: cannot create " + dir + ": " + ec.message());
    std::string path = (std::filesystem::path(dir) / (h.mode + ".json")).string();
    std::ofstream out(path, std::ios::trunc);
    out << to_json(h).dump(1) << "\n";
    out.close();
    if (!out) return make_error(ErrorKind::Io, "latency histogram: cannot write " + path);
    return path;
}

// Writes the file into $PAGEVISOR_BENCH_HIST_DIR; does nothing when it is unset or empty.
inline Status export_histogram(const LatencyHistogram& h) {
    const char* dir = std::getenv(kHistDirEnv);
    if (dir == nullptr || dir[0] == '\0') return {};
    PV_TRY(write_histogram(h, dir));
    return {};
}

}  // namespace pv::bench
