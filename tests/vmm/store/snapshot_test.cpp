// SnapshotWriter + SnapshotReader: model-based round trips and the writer's contract.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "tests/support/seed.h"
#include "tests/vmm/store/store_test_util.h"
#include "vmm/store/snapshot_reader.h"
#include "vmm/store/snapshot_writer.h"

namespace pv::store {
namespace {

using test::page_bytes;
using test::ScratchDir;

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

struct Model {
    std::map<uint64_t, std::vector<std::byte>> pages;
    std::vector<std::pair<uint32_t, std::vector<std::byte>>> records;
};

Model random_model(std::mt19937_64& rng, uint32_t page_size) {
    Model m;
    size_t count = std::uniform_int_distribution<size_t>(0, 300)(rng);
    uint64_t gpn = std::uniform_int_distribution<uint64_t>(0, 1000)(rng);
    for (size_t i = 0; i < count; ++i) {
        // Mostly runs of neighbours, sometimes a large jump (sparse guests).
        gpn += rng() % 4 == 0 ? 1 + rng() % 100000 : 1;
        m.pages[gpn] = page_bytes(gpn, rng(), page_size);
    }
    size_t nrec = rng() % 5;
    for (size_t i = 0; i < nrec; ++i) {
        std::vector<std::byte> payload(rng() % 300);
        for (auto& b : payload) b = std::byte(rng());
        m.records.emplace_back(uint32_t(RecordKind::User) + uint32_t(rng() % 8), std::move(payload));
    }
    return m;
}

Status write_model(const std::string& path, const Model& m, SnapshotWriter::Options options) {
    PV_TRY_ASSIGN(auto w, SnapshotWriter::create(path, std::move(options)));
    for (const auto& [kind, payload] : m.records) PV_TRY(w->add_record(kind, payload));
    for (const auto& [gpn, page] : m.pages) PV_TRY(w->add_page(gpn, page));
    PV_TRY_ASSIGN(auto summary, w->finish());
    if (summary.pages != m.pages.size()) return make_error(ErrorKind::Internal, "page count");
    return {};
}

void expect_matches(SnapshotReader& r, const Model& m, std::mt19937_64& rng) {
    ASSERT_TRUE(r.check_invariants());
    std::vector<uint64_t> keys;
    for (const auto& [gpn, page] : m.pages) keys.push_back(gpn);
    ASSERT_TRUE(std::equal(keys.begin(), keys.end(), r.page_numbers().begin(), r.page_numbers().end()));
    ASSERT_EQ(r.records().size(), m.records.size());
    for (size_t i = 0; i < m.records.size(); ++i) {
        EXPECT_EQ(r.records()[i].kind, m.records[i].first);
        EXPECT_TRUE(std::ranges::equal(r.records()[i].payload, m.records[i].second));
    }
    const uint32_t ps = r.page_size();
    // A random subset in random order, read in one call.
    std::vector<uint64_t> want;
    for (auto k : keys)
        if (rng() % 3 == 0) want.push_back(k);
    std::shuffle(want.begin(), want.end(), rng);
    std::vector<std::byte> out(want.size() * ps);
    auto s = r.read_pages(want, out);
    ASSERT_TRUE(s) << s.error().to_string();
    for (size_t i = 0; i < want.size(); ++i)
        ASSERT_TRUE(
            std::equal(out.begin() + long(i * ps), out.begin() + long((i + 1) * ps), m.pages.at(want[i]).begin()))
            << "page " << want[i];
    ASSERT_TRUE(r.verify_all());
    for (int i = 0; i < 20; ++i) {
        uint64_t probe = rng() % (keys.empty() ? 1000 : keys.back() + 2);
        EXPECT_EQ(r.find(probe).has_value(), m.pages.contains(probe)) << probe;
        if (auto pos = r.find(probe)) {
            EXPECT_EQ(*r.page_offset(probe), r.header().data_offset + *pos * ps);
        }
    }
    ASSERT_TRUE(r.check_invariants());
}

TEST(Snapshot, RandomRoundTripsMatchTheModel) {
    auto seed = pv::test::test_seed(901);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    ScratchDir dir;
    for (int iter = 0; iter < 8; ++iter) {
        SCOPED_TRACE("iteration " + std::to_string(iter));
        SnapshotWriter::Options opt;
        opt.page_size = rng() % 4 == 0 ? 8192 : 4096;
        opt.pages_per_block = std::vector<uint32_t>{1, 3, 16, 64}[rng() % 4];
        opt.batch_pages = 1 + uint32_t(rng() % 70);
        opt.chunks = 2 + uint32_t(rng() % 4);
        opt.sync = rng() % 2 == 0;
        opt.io.queue_depth = 4 + unsigned(rng() % 60);
        Model m = random_model(rng, opt.page_size);
        std::string path = dir.file("snap" + std::to_string(iter));
        auto w = write_model(path, m, opt);
        ASSERT_TRUE(w) << w.error().to_string();
        SnapshotReader::Options ropt;
        ropt.max_blocks_per_batch = 1 + uint32_t(rng() % 8);
        auto r = SnapshotReader::open(path, ropt);
        ASSERT_TRUE(r) << r.error().to_string();
        expect_matches(**r, m, rng);
        EXPECT_EQ((*r)->header().file_size, test::read_file(path).size());
    }
}

TEST(Snapshot, EmptySnapshotRoundTrips) {
    ScratchDir dir;
    auto w = SnapshotWriter::create(dir.file("empty"));
    ASSERT_TRUE(w);
    auto summary = (*w)->finish();
    ASSERT_TRUE(summary) << summary.error().to_string();
    EXPECT_EQ(summary->pages, 0u);
    EXPECT_EQ(summary->file_size, 4096u);
    auto r = SnapshotReader::open(dir.file("empty"));
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ((*r)->page_count(), 0u);
    EXPECT_TRUE((*r)->records().empty());
    EXPECT_TRUE((*r)->verify_all());
    EXPECT_TRUE((*r)->check_invariants());
}

TEST(Snapshot, FinalNameAppearsOnlyAfterFinish) {
    ScratchDir dir;
    std::string path = dir.file("snap");
    std::string temp;
    {
        auto w = SnapshotWriter::create(path);
        ASSERT_TRUE(w);
        temp = (*w)->temp_path();
        ASSERT_TRUE((*w)->add_pages(10, page_bytes(10, 0)));
        EXPECT_TRUE(exists(temp));
        EXPECT_FALSE(exists(path));
        // Abandoned without finish(): the temporary file goes away.
    }
    EXPECT_FALSE(exists(temp));
    EXPECT_FALSE(exists(path));
    auto w = SnapshotWriter::create(path);
    ASSERT_TRUE(w);
    ASSERT_TRUE((*w)->add_page(10, page_bytes(10, 0)));
    ASSERT_TRUE((*w)->finish());
    EXPECT_TRUE(exists(path));
    EXPECT_FALSE(exists((*w)->temp_path()));
}

TEST(Snapshot, WriterRejectsMisuse) {
    ScratchDir dir;
    auto w = SnapshotWriter::create(dir.file("snap"));
    ASSERT_TRUE(w);
    auto page = page_bytes(5, 0);
    ASSERT_TRUE((*w)->add_page(5, page));
    auto dup = (*w)->add_page(5, page);
    ASSERT_FALSE(dup);
    EXPECT_EQ(dup.error().kind, ErrorKind::Invalid);
    EXPECT_NE(dup.error().message.find("page 5 added after page 5"), std::string::npos) << dup.error().message;
    EXPECT_FALSE((*w)->add_page(4, page));
    std::vector<std::byte> small(100);
    auto sz = (*w)->add_page(6, small);
    ASSERT_FALSE(sz);
    EXPECT_NE(sz.error().message.find("is 100 bytes, not 4096"), std::string::npos);
    EXPECT_FALSE((*w)->add_pages(6, std::span(page).first(4000)));
    EXPECT_FALSE((*w)->add_page(UINT64_MAX, page));
    ASSERT_TRUE((*w)->add_page(7, page));  // misuse above changed nothing
    ASSERT_TRUE((*w)->finish());
    EXPECT_FALSE((*w)->add_page(8, page));
    EXPECT_FALSE((*w)->finish());
    auto r = SnapshotReader::open(dir.file("snap"));
    ASSERT_TRUE(r);
    EXPECT_EQ(std::vector<uint64_t>((*r)->page_numbers().begin(), (*r)->page_numbers().end()),
              (std::vector<uint64_t>{5, 7}));
    SnapshotWriter::Options bad;
    bad.page_size = 1000;
    EXPECT_EQ(SnapshotWriter::create(dir.file("x"), bad).error().kind, ErrorKind::Invalid);
    // An existing temporary name (another writer) is not overwritten.
    auto w1 = SnapshotWriter::create(dir.file("same"));
    ASSERT_TRUE(w1);
    auto w2 = SnapshotWriter::create(dir.file("same"));
    ASSERT_FALSE(w2);
    EXPECT_EQ(w2.error().err_no, EEXIST);
}

TEST(Snapshot, ProgressIsMonotoneAndEndsAtTheTotal) {
    ScratchDir dir;
    std::vector<std::pair<uint64_t, uint64_t>> calls;
    SnapshotWriter::Options opt;
    opt.batch_pages = 8;
    opt.expected_pages = 100;
    opt.progress = [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); };
    auto w = SnapshotWriter::create(dir.file("snap"), opt);
    ASSERT_TRUE(w);
    for (uint64_t g = 0; g < 100; ++g) ASSERT_TRUE((*w)->add_page(g * 2, page_bytes(g, 0)));
    ASSERT_TRUE((*w)->finish());
    ASSERT_GE(calls.size(), 2u);
    for (size_t i = 0; i < calls.size(); ++i) {
        EXPECT_LE(calls[i].first, calls[i].second);
        EXPECT_EQ(calls[i].second, 100u * 4096);
        if (i > 0) {
            EXPECT_GE(calls[i].first, calls[i - 1].first);
        }
    }
    EXPECT_EQ(calls.back().first, 100u * 4096);
}

TEST(Snapshot, ReadPagesRejectsUnknownPagesAndBadBuffers) {
    ScratchDir dir;
    Model m;
    for (uint64_t g : {3, 4, 9}) m.pages[g] = page_bytes(g, 1);
    ASSERT_TRUE(write_model(dir.file("snap"), m, {}));
    auto r = SnapshotReader::open(dir.file("snap"));
    ASSERT_TRUE(r);
    std::vector<uint64_t> missing{3, 5};
    std::vector<std::byte> out(2 * 4096);
    auto s = (*r)->read_pages(missing, out);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().kind, ErrorKind::Invalid);
    EXPECT_NE(s.error().message.find("page 0x5 is not in the snapshot"), std::string::npos);
    std::vector<uint64_t> ok{9};
    EXPECT_FALSE((*r)->read_pages(ok, out));  // two pages of buffer for one page
    EXPECT_FALSE((*r)->read_block(1, out));   // one block only
    EXPECT_EQ((*r)->pages_in_block(0), 3u);
    EXPECT_EQ((*r)->pages_in_block(1), 0u);
}

TEST(Snapshot, OpenMissingFileNamesIt) {
    auto r = SnapshotReader::open("/nonexistent/dir/snap");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, ErrorKind::Io);
    EXPECT_EQ(r.error().err_no, ENOENT);
    EXPECT_NE(r.error().message.find("/nonexistent/dir/snap"), std::string::npos);
}

TEST(Snapshot, WriterSurfacesIoErrors) {
    // A directory that cannot be written to: creation fails with the path and errno.
    auto w = SnapshotWriter::create("/proc/pv-snapshot-test");
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error().kind, ErrorKind::Io);
    EXPECT_NE(w.error().message.find("/proc/pv-snapshot-test.tmp."), std::string::npos) << w.error().message;
}

}  // namespace
}  // namespace pv::store
