// bench/support/latency_export.h: bucketing and quantiles against a sorted
// reference, the JSON file format scripts/bench reads, and input validation.
#include "bench/support/latency_export.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "tests/support/seed.h"

namespace {

using pv::bench::histogram_from_buckets;
using pv::bench::histogram_from_samples;
using pv::bench::LatencyHistogram;
namespace fs = std::filesystem;

// A fresh directory under the temp dir, removed at the end of the test.
class TempDir {
public:
    TempDir() {
        std::string templ = (fs::temp_directory_path() / "pv-latency-XXXXXX").string();
        m_path = ::mkdtemp(templ.data()) != nullptr ? templ : "";
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        if (!m_path.empty()) fs::remove_all(m_path, ec);
    }
    const std::string& path() const { return m_path; }

private:
    std::string m_path;
};

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}

double nearest_rank(std::vector<double> sorted, double q) {
    std::sort(sorted.begin(), sorted.end());
    size_t rank = static_cast<size_t>(std::ceil(q * double(sorted.size())));
    return sorted[std::max<size_t>(rank, 1) - 1];
}

TEST(LatencyExport, LogBoundsAreIncreasingAndHitDecades) {
    auto b = pv::bench::log_bucket_bounds(100, 1e9, 10);
    ASSERT_FALSE(b.empty());
    EXPECT_EQ(b.front(), 100);
    EXPECT_EQ(b.back(), 1e9);
    EXPECT_EQ(b.size(), 71u);  // 7 decades x 10 + the first bound
    for (size_t i = 1; i < b.size(); ++i) EXPECT_GT(b[i], b[i - 1]);
    for (double decade : {1e3, 1e4, 1e5, 1e6}) EXPECT_NE(std::find(b.begin(), b.end(), decade), b.end());
    EXPECT_TRUE(pv::bench::log_bucket_bounds(0, 10, 4).empty());
    EXPECT_TRUE(pv::bench::log_bucket_bounds(10, 5, 4).empty());
    EXPECT_TRUE(pv::bench::log_bucket_bounds(10, 100, 0).empty());
    // An upper bound off the grid is still the last bound.
    auto odd = pv::bench::log_bucket_bounds(100, 1500, 1);
    EXPECT_EQ(odd, (std::vector<double>{100, 1000, 1500}));
}

// Random samples and bounds: every bucket holds exactly the samples in
// (previous le, le], quantiles and max match the sorted samples.
TEST(LatencyExport, SamplesMatchReferenceModel) {
    const uint64_t seed = pv::test::test_seed(0x1a7e);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (int round = 0; round < 200; ++round) {
        std::vector<double> bounds;
        double b = double(rng() % 50);
        for (size_t n = 1 + rng() % 12; n > 0; --n) bounds.push_back(b += double(1 + rng() % 100));
        std::vector<double> samples(rng() % 300);
        for (auto& s : samples) s = double(rng() % 800) + (rng() % 2 ? 0.5 : 0.0);
        auto h = histogram_from_samples("mode-" + std::to_string(round), samples, bounds);
        ASSERT_TRUE(h.has_value()) << h.error().to_string();
        ASSERT_EQ(h->count, samples.size());
        uint64_t total = 0;
        double prev = -1;
        for (size_t i = 0; i < h->buckets.size(); ++i) {
            const auto& bucket = h->buckets[i];
            if (i < bounds.size()) {
                EXPECT_EQ(bucket.le_ns, bounds[i]);
            } else {
                EXPECT_TRUE(std::isinf(bucket.le_ns));
            }
            auto expected =
                std::count_if(samples.begin(), samples.end(), [&](double s) { return s > prev && s <= bucket.le_ns; });
            EXPECT_EQ(bucket.count, uint64_t(expected)) << "bucket " << i;
            total += bucket.count;
            prev = bucket.le_ns;
        }
        EXPECT_EQ(total, samples.size());
        bool any_over = std::any_of(samples.begin(), samples.end(), [&](double s) { return s > bounds.back(); });
        EXPECT_EQ(h->buckets.size(), bounds.size() + (any_over ? 1 : 0));
        if (samples.empty()) {
            EXPECT_EQ(h->max_ns, 0);
            continue;
        }
        EXPECT_EQ(h->p50_ns, nearest_rank(samples, 0.50));
        EXPECT_EQ(h->p99_ns, nearest_rank(samples, 0.99));
        EXPECT_EQ(h->max_ns, *std::max_element(samples.begin(), samples.end()));
    }
}

TEST(LatencyExport, BucketQuantilesAreUpperBounds) {
    std::vector<double> bounds{1000, 2000, 4000};
    // 10 faults: 4 <= 1000, 5 in (1000, 2000], 1 overflow at 9000.
    auto h = histogram_from_buckets("uffd", bounds, std::vector<uint64_t>{4, 5, 0, 1}, 9000);
    ASSERT_TRUE(h.has_value()) << h.error().to_string();
    EXPECT_EQ(h->count, 10u);
    EXPECT_EQ(h->p50_ns, 2000);  // rank 5 is in the second bucket
    EXPECT_EQ(h->p99_ns, 9000);  // rank 10 is the overflow: max
    EXPECT_EQ(h->max_ns, 9000);
    ASSERT_EQ(h->buckets.size(), 4u);
    EXPECT_TRUE(std::isinf(h->buckets[3].le_ns));

    // Without overflow, a quantile never exceeds max.
    auto capped = histogram_from_buckets("uffd", bounds, std::vector<uint64_t>{0, 0, 3}, 2500);
    ASSERT_TRUE(capped.has_value());
    EXPECT_EQ(capped->p50_ns, 2500);

    auto empty = histogram_from_buckets("uffd", bounds, std::vector<uint64_t>{0, 0, 0}, 77);
    ASSERT_TRUE(empty.has_value());
    EXPECT_EQ(empty->count, 0u);
    EXPECT_EQ(empty->max_ns, 0);
}

TEST(LatencyExport, RejectsBadInput) {
    std::vector<double> bounds{10, 20};
    std::vector<uint64_t> counts{1, 1};
    for (const char* mode : {"", "../x", "a/b", ".hidden", "sp ace", "x\n"})
        EXPECT_FALSE(histogram_from_buckets(mode, bounds, counts, 20).has_value()) << mode;
    EXPECT_FALSE(histogram_from_buckets("m", std::vector<double>{}, std::vector<uint64_t>{}, 0).has_value());
    EXPECT_FALSE(histogram_from_buckets("m", std::vector<double>{20, 10}, counts, 20).has_value());
    EXPECT_FALSE(histogram_from_buckets("m", std::vector<double>{10, 10}, counts, 20).has_value());
    EXPECT_FALSE(histogram_from_buckets("m", std::vector<double>{10, NAN}, counts, 20).has_value());
    EXPECT_FALSE(histogram_from_buckets("m", bounds, std::vector<uint64_t>{1}, 20).has_value());
    EXPECT_FALSE(histogram_from_buckets("m", bounds, std::vector<uint64_t>{1, 1, 1, 1}, 20).has_value());
    EXPECT_FALSE(histogram_from_buckets("m", bounds, counts, -1).has_value());
    EXPECT_FALSE(histogram_from_buckets("m", bounds, std::vector<uint64_t>{UINT64_MAX, 1}, 20).has_value());
    EXPECT_FALSE(histogram_from_samples("m", std::vector<double>{1, NAN}, bounds).has_value());
    EXPECT_FALSE(histogram_from_samples("m", std::vector<double>{-1}, bounds).has_value());
    auto err = histogram_from_samples("a/b", std::vector<double>{1}, bounds);
    ASSERT_FALSE(err.has_value());
    EXPECT_NE(err.error().to_string().find("mode"), std::string::npos);
}

TEST(LatencyExport, WritesTheDocumentedFormat) {
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    auto h = histogram_from_samples("uffd-copy", std::vector<double>{500, 1500, 1500, 99999},
                                    std::vector<double>{1000, 2000});
    ASSERT_TRUE(h.has_value());
    auto path = pv::bench::write_histogram(*h, dir.path() + "/latency");
    ASSERT_TRUE(path.has_value()) << path.error().to_string();
    EXPECT_EQ(*path, dir.path() + "/latency/uffd-copy.json");
    auto j = read_json(*path);
    EXPECT_EQ(j["mode"], "uffd-copy");
    EXPECT_EQ(j["unit"], "ns");
    EXPECT_EQ(j["count"], 4);
    EXPECT_EQ(j["p50"], 1500.0);
    EXPECT_EQ(j["p99"], 99999.0);
    EXPECT_EQ(j["max"], 99999.0);
    ASSERT_EQ(j["buckets"].size(), 3u);
    EXPECT_EQ(j["buckets"][0]["le"], 1000.0);
    EXPECT_EQ(j["buckets"][0]["count"], 1);
    EXPECT_EQ(j["buckets"][1]["count"], 2);
    EXPECT_EQ(j["buckets"][2]["le"], "+Inf");
    EXPECT_EQ(j["buckets"][2]["count"], 1);

    // A directory that cannot be created is an Io error, not a crash.
    std::ofstream(dir.path() + "/file") << "x";
    auto bad = pv::bench::write_histogram(*h, dir.path() + "/file/sub");
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().kind, pv::ErrorKind::Io);
}

TEST(LatencyExport, ExportFollowsTheEnvironment) {
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    auto h = histogram_from_samples("zero-page", std::vector<double>{3000}, pv::bench::log_bucket_bounds());
    ASSERT_TRUE(h.has_value());
    ::unsetenv(pv::bench::kHistDirEnv);
    EXPECT_TRUE(pv::bench::export_histogram(*h).has_value());
    EXPECT_TRUE(fs::is_empty(dir.path()));
    ::setenv(pv::bench::kHistDirEnv, dir.path().c_str(), 1);
    EXPECT_TRUE(pv::bench::export_histogram(*h).has_value());
    ::unsetenv(pv::bench::kHistDirEnv);
    ASSERT_TRUE(fs::exists(dir.path() + "/zero-page.json"));
    EXPECT_EQ(read_json(dir.path() + "/zero-page.json")["p50"], 3000.0);
}

}  // namespace
