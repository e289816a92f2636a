#include "vmm/store/swap_store.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>

#include "tests/support/seed.h"
#include "tests/vmm/store/store_test_util.h"
#include "vmm/store/snapshot_writer.h"

namespace pv::store {
namespace {

using test::page_bytes;
using test::ScratchDir;

uint64_t file_size(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? uint64_t(st.st_size) : 0;
}

SwapStore::Options small_options(uint64_t max_pages, uint64_t grow) {
    SwapStore::Options o;
    o.max_pages = max_pages;
    o.grow_pages = grow;
    o.io.queue_depth = 16;
    return o;
}

// Random allocate / write / read / free against a map slot -> contents,
// with writes and reads batched asynchronously.
TEST(SwapStore, RandomOperationsMatchTheModel) {
    auto seed = pv::test::test_seed(903);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    ScratchDir dir;
    auto store = SwapStore::create(dir.file("swap"), small_options(300, 32));
    ASSERT_TRUE(store) << store.error().to_string();
    SwapStore& s = **store;
    std::map<SwapSlot, uint64_t> model;  // slot -> version written (0: allocated, never written)
    std::set<SwapSlot> allocated;
    uint64_t version = 0, writes = 0, reads = 0;
    for (int step = 0; step < 400; ++step) {
        int op = int(rng() % 10);
        if (op < 3) {  // allocate
            auto slot = s.allocate();
            if (allocated.size() == 300) {
                ASSERT_FALSE(slot);
                EXPECT_EQ(slot.error().kind, ErrorKind::Resource);
            } else {
                ASSERT_TRUE(slot) << slot.error().to_string();
                ASSERT_TRUE(allocated.insert(*slot).second) << "slot " << *slot << " handed out twice";
                ASSERT_LT(*slot, s.file_pages());
            }
        } else if (op < 6 && !allocated.empty()) {  // a batch of writes
            std::vector<std::vector<std::byte>> bufs;
            std::vector<std::pair<SwapSlot, uint64_t>> batch;
            for (size_t n = 1 + rng() % 20; n > 0; --n) {
                auto it = allocated.begin();
                std::advance(it, long(rng() % allocated.size()));
                if (std::any_of(batch.begin(), batch.end(), [&](auto& b) { return b.first == *it; })) continue;
                batch.emplace_back(*it, ++version);
                bufs.push_back(page_bytes(*it, version));
            }
            for (size_t i = 0; i < batch.size(); ++i) ASSERT_TRUE(s.write_async(batch[i].first, bufs[i], i));
            ASSERT_TRUE(s.submit());
            std::vector<SwapCompletion> done;
            ASSERT_TRUE(s.reap(done, batch.size()));
            ASSERT_EQ(done.size(), batch.size());
            for (auto& c : done) {
                ASSERT_TRUE(c.status) << c.status.error().to_string();
                ASSERT_EQ(c.slot, batch[c.tag].first);
                model[c.slot] = batch[c.tag].second;
            }
            writes += batch.size();
        } else if (op < 8 && !model.empty()) {  // a batch of reads of written slots
            std::vector<SwapSlot> slots;
            for (auto& [slot, v] : model)
                if (rng() % 3 == 0) slots.push_back(slot);
            std::vector<std::vector<std::byte>> bufs(slots.size(), std::vector<std::byte>(4096));
            for (size_t i = 0; i < slots.size(); ++i) ASSERT_TRUE(s.read_async(slots[i], bufs[i], i));
            ASSERT_TRUE(s.submit());
            std::vector<SwapCompletion> done;
            ASSERT_TRUE(s.reap(done, slots.size()));
            ASSERT_EQ(done.size(), slots.size());
            for (auto& c : done) {
                ASSERT_TRUE(c.status) << c.status.error().to_string();
                ASSERT_EQ(bufs[c.tag], page_bytes(c.slot, model.at(c.slot))) << "slot " << c.slot;
            }
            reads += slots.size();
        } else if (!allocated.empty()) {  // free
            auto it = allocated.begin();
            std::advance(it, long(rng() % allocated.size()));
            ASSERT_TRUE(s.free(*it));
            model.erase(*it);
            allocated.erase(it);
        }
        ASSERT_TRUE(s.check_invariants()) << "step " << step;
        ASSERT_EQ(s.slots_in_use(), allocated.size());
        ASSERT_LE(s.file_pages(), 300u);
        ASSERT_EQ(file_size(s.path()), s.file_pages() * 4096);
    }
    auto st = s.stats();
    EXPECT_EQ(st.pages_written, writes);
    EXPECT_EQ(st.pages_read, reads);
    EXPECT_EQ(st.bytes_written, writes * 4096);
    EXPECT_EQ(st.write_latency.count, writes);
    EXPECT_EQ(st.read_latency.count, reads);
    EXPECT_EQ(st.slots_in_use, allocated.size());
}

TEST(SwapStore, GrowsOnDemandUpToTheLimit) {
    ScratchDir dir;
    auto store = SwapStore::create(dir.file("swap"), small_options(10, 4));
    ASSERT_TRUE(store);
    SwapStore& s = **store;
    EXPECT_EQ(s.file_pages(), 0u);
    std::vector<uint64_t> sizes;
    for (int i = 0; i < 10; ++i) {
        auto slot = s.allocate();
        ASSERT_TRUE(slot) << i;
        sizes.push_back(s.file_pages());
    }
    EXPECT_EQ(sizes, (std::vector<uint64_t>{4, 4, 4, 4, 8, 8, 8, 8, 10, 10}));
    auto full = s.allocate();
    ASSERT_FALSE(full);
    EXPECT_EQ(full.error().kind, ErrorKind::Resource);
    EXPECT_EQ(full.error().message, dir.file("swap") + ": swap file is full (10 pages of 4096 bytes)");
    ASSERT_TRUE(s.free(3));
    auto again = s.allocate();
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, 3u);
    EXPECT_TRUE(s.check_invariants());
}

TEST(SwapStore, SynchronousRoundTripAndFileRemoval) {
    ScratchDir dir;
    std::string path = dir.file("swap");
    {
        auto store = SwapStore::create(path, small_options(8, 8));
        ASSERT_TRUE(store);
        auto slot = (*store)->allocate();
        ASSERT_TRUE(slot);
        auto page = page_bytes(42, 1);
        ASSERT_TRUE((*store)->write(*slot, page));
        std::vector<std::byte> back(4096);
        ASSERT_TRUE((*store)->read(*slot, back));
        EXPECT_EQ(back, page);
        // An existing file is never reused.
        auto clash = SwapStore::create(path, small_options(8, 8));
        ASSERT_FALSE(clash);
        EXPECT_EQ(clash.error().err_no, EEXIST);
    }
    EXPECT_EQ(::access(path.c_str(), F_OK), -1);
}

TEST(SwapStore, RegisteredMemoryIsUsedForFixedBufferIo) {
    ScratchDir dir;
    auto store = SwapStore::create(dir.file("swap"), small_options(64, 64));
    ASSERT_TRUE(store);
    std::vector<std::byte> ram(32 * 4096);
    for (size_t i = 0; i < 32; ++i) {
        auto p = page_bytes(i, 9);
        std::copy(p.begin(), p.end(), ram.begin() + long(i * 4096));
    }
    std::span<std::byte> region(ram);
    ASSERT_TRUE((*store)->register_memory(std::span(&region, 1)));
    std::vector<SwapSlot> slots;
    for (size_t i = 0; i < 32; ++i) {
        slots.push_back(*(*store)->allocate());
        ASSERT_TRUE((*store)->write_async(slots[i], region.subspan(i * 4096, 4096), i));
    }
    ASSERT_TRUE((*store)->submit());
    std::vector<SwapCompletion> done;
    ASSERT_TRUE((*store)->reap(done, 32));
    auto copy = ram;
    std::fill(ram.begin(), ram.end(), std::byte{0});
    for (size_t i = 0; i < 32; ++i) ASSERT_TRUE((*store)->read_async(slots[i], region.subspan(i * 4096, 4096), i));
    ASSERT_TRUE((*store)->submit());
    ASSERT_TRUE((*store)->reap(done, 32));
    for (auto& c : done) EXPECT_TRUE(c.status);
    EXPECT_EQ(ram, copy);
}

TEST(SwapStore, DirectIoRoundTripNeedsAlignedBuffers) {
    ScratchDir dir;
    SwapStore::Options o = small_options(16, 16);
    o.direct_io = true;
    auto store = SwapStore::create(dir.file("swap"), o);
    if (!store && store.error().message.find("O_DIRECT") != std::string::npos)
        GTEST_SKIP() << "the scratch file system has no O_DIRECT: " << store.error().to_string();
    ASSERT_TRUE(store) << store.error().to_string();
    std::unique_ptr<std::byte, decltype(&std::free)> mem(static_cast<std::byte*>(std::aligned_alloc(4096, 3 * 4096)),
                                                         &std::free);
    std::span<std::byte> buf(mem.get(), 3 * 4096);
    auto page = page_bytes(3, 3);
    std::copy(page.begin(), page.end(), buf.begin());
    auto slot = (*store)->allocate();
    ASSERT_TRUE(slot);
    ASSERT_TRUE((*store)->write(*slot, buf.first(4096)));
    auto read = (*store)->read(*slot, buf.subspan(4096, 4096));
    ASSERT_TRUE(read) << read.error().to_string();
    EXPECT_TRUE(std::equal(page.begin(), page.end(), buf.begin() + 4096));
    auto unaligned = (*store)->read(*slot, buf.subspan(100, 4096));
    ASSERT_FALSE(unaligned);
    EXPECT_EQ(unaligned.error().kind, ErrorKind::Invalid);
    EXPECT_NE(unaligned.error().message.find("not aligned to 4096 bytes (O_DIRECT)"), std::string::npos);
}

TEST(SwapStore, RejectsMisuse) {
    ScratchDir dir;
    auto store = SwapStore::create(dir.file("swap"), small_options(8, 8));
    ASSERT_TRUE(store);
    SwapStore& s = **store;
    auto page = page_bytes(1, 1);
    EXPECT_EQ(s.write(0, page).error().kind, ErrorKind::Invalid);  // not allocated
    EXPECT_EQ(s.free(0).error().kind, ErrorKind::Invalid);
    EXPECT_EQ(s.free(1000).error().kind, ErrorKind::Invalid);
    auto slot = s.allocate();
    ASSERT_TRUE(slot);
    std::vector<std::byte> small(100);
    auto e = s.write(*slot, small);
    ASSERT_FALSE(e);
    EXPECT_NE(e.error().message.find("write of 100 bytes, the swap page size is 4096"), std::string::npos);
    ASSERT_TRUE(s.write_async(*slot, page, 1));
    auto busy = s.free(*slot);
    ASSERT_FALSE(busy);
    EXPECT_NE(busy.error().message.find("with I/O in flight"), std::string::npos);
    EXPECT_FALSE(s.write(*slot, page));  // synchronous I/O while asynchronous is pending
    std::vector<SwapCompletion> done;
    ASSERT_TRUE(s.reap(done, 1));
    ASSERT_TRUE(s.free(*slot));
    EXPECT_FALSE(s.free(*slot));  // double free
    EXPECT_TRUE(s.check_invariants());
    SwapStore::Options bad;
    bad.max_pages = 0;
    EXPECT_EQ(SwapStore::create(dir.file("bad"), bad).error().kind, ErrorKind::Invalid);
    bad = {};
    bad.page_size = 3000;
    EXPECT_EQ(SwapStore::create(dir.file("bad2"), bad).error().kind, ErrorKind::Invalid);
}

// The file-size limit (RLIMIT_FSIZE) stands in for a full file system: growth
// and writes past it fail with EFBIG, reported with the file and size.
class FileSizeLimit : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &m_saved), 0);
        m_old_handler = std::signal(SIGXFSZ, SIG_IGN);
        rlimit lim = m_saved;
        lim.rlim_cur = 64 * 1024;
        ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
    }
    void TearDown() override {
        ::setrlimit(RLIMIT_FSIZE, &m_saved);
        std::signal(SIGXFSZ, m_old_handler);
    }
    rlimit m_saved{};
    void (*m_old_handler)(int) = nullptr;
};

TEST_F(FileSizeLimit, SwapGrowthFailsCleanly) {
    ScratchDir dir;
    auto store = SwapStore::create(dir.file("swap"), small_options(1000, 10));
    ASSERT_TRUE(store);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE((*store)->allocate());
    auto e = (*store)->allocate();  // the file is 40 KiB; growing to 80 KiB passes the limit
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().kind, ErrorKind::Resource);
    EXPECT_EQ(e.error().err_no, EFBIG);
    EXPECT_NE(e.error().message.find("cannot grow the swap file to 81920 bytes"), std::string::npos);
    EXPECT_TRUE((*store)->check_invariants());
    EXPECT_EQ((*store)->file_pages(), 10u);
}

TEST_F(FileSizeLimit, SnapshotWriterReportsTheFailedWrite) {
    ScratchDir dir;
    SnapshotWriter::Options opt;
    opt.batch_pages = 4;
    auto w = SnapshotWriter::create(dir.file("snap"), opt);
    ASSERT_TRUE(w);
    Status s;
    for (uint64_t g = 0; g < 64 && s; ++g) s = (*w)->add_page(g, page_bytes(g, 0));
    Expected<SnapshotSummary> f = s ? (*w)->finish() : Expected<SnapshotSummary>(mm::Unexpected<Error>{s.error()});
    ASSERT_FALSE(f);
    EXPECT_EQ(f.error().kind, ErrorKind::Io);
    EXPECT_EQ(f.error().err_no, EFBIG);
    EXPECT_NE(f.error().message.find(".tmp."), std::string::npos) << f.error().message;
    EXPECT_NE(f.error().message.find("write of "), std::string::npos) << f.error().message;
    EXPECT_FALSE((*w)->finish());  // stays failed
    EXPECT_EQ(::access(dir.file("snap").c_str(), F_OK), -1);
}

}  // namespace
}  // namespace pv::store
