#include "vmm/store/uring_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>

#include "tests/vmm/store/store_test_util.h"
#include "vmm/kvm/fd.h"

namespace pv::store {
namespace {

using test::page_bytes;
using test::ScratchDir;

kvm::UniqueFd open_rw(const std::string& path) {
    return kvm::UniqueFd(::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
}

TEST(UringFile, BatchRoundTripLargerThanTheQueue) {
    ScratchDir dir;
    auto fd = open_rw(dir.file("f"));
    ASSERT_TRUE(fd.valid());
    auto file = UringFile::create(fd.get(), "f", UringFile::Options{8, std::chrono::milliseconds(10000)});
    ASSERT_TRUE(file) << file.error().to_string();
    constexpr size_t kPages = 100;
    std::vector<std::vector<std::byte>> pages;
    std::vector<WriteRequest> writes;
    for (size_t i = 0; i < kPages; ++i) pages.push_back(page_bytes(i, 7));
    for (size_t i = 0; i < kPages; ++i) writes.push_back({(kPages - 1 - i) * 4096, pages[i]});  // reverse order
    auto w = (*file)->write_batch(writes);
    ASSERT_TRUE(w) << w.error().to_string();
    std::vector<std::vector<std::byte>> back(kPages, std::vector<std::byte>(4096));
    std::vector<ReadRequest> reads;
    for (size_t i = 0; i < kPages; ++i) reads.push_back({(kPages - 1 - i) * 4096, back[i]});
    auto r = (*file)->read_batch(reads);
    ASSERT_TRUE(r) << r.error().to_string();
    for (size_t i = 0; i < kPages; ++i) EXPECT_EQ(back[i], pages[i]) << "page " << i;
    EXPECT_EQ((*file)->in_flight(), 0u);
    EXPECT_TRUE((*file)->sync());
}

TEST(UringFile, RegisteredBuffersRoundTrip) {
    ScratchDir dir;
    auto fd = open_rw(dir.file("f"));
    auto file = UringFile::create(fd.get(), "f");
    ASSERT_TRUE(file);
    std::vector<std::byte> region(16 * 4096);
    for (size_t i = 0; i < 16; ++i) {
        auto p = page_bytes(i, 1);
        std::memcpy(region.data() + i * 4096, p.data(), 4096);
    }
    std::span<std::byte> r(region);
    auto reg = (*file)->register_buffers(std::span(&r, 1));
    ASSERT_TRUE(reg) << reg.error().to_string();
    EXPECT_TRUE((*file)->uses_fixed_buffers());
    std::vector<WriteRequest> writes;
    for (size_t i = 0; i < 16; ++i) writes.push_back({i * 4096, r.subspan(i * 4096, 4096)});
    ASSERT_TRUE((*file)->write_batch(writes));
    std::vector<std::byte> copy = region;
    std::memset(region.data(), 0, region.size());
    std::vector<ReadRequest> reads;
    for (size_t i = 0; i < 16; ++i) reads.push_back({i * 4096, r.subspan(i * 4096, 4096)});
    ASSERT_TRUE((*file)->read_batch(reads));
    EXPECT_EQ(region, copy);
    EXPECT_EQ(test::read_file(dir.file("f")), copy);
}

TEST(UringFile, AsyncTagsAndLatencies) {
    ScratchDir dir;
    auto fd = open_rw(dir.file("f"));
    auto file = UringFile::create(fd.get(), "f");
    ASSERT_TRUE(file);
    auto a = page_bytes(1, 1);
    auto b = page_bytes(2, 1);
    ASSERT_TRUE((*file)->queue_write(0, a, 11));
    ASSERT_TRUE((*file)->queue_write(4096, b, 22));
    ASSERT_TRUE((*file)->submit());
    std::vector<IoCompletion> done;
    auto n = (*file)->reap(done, 2);
    ASSERT_TRUE(n) << n.error().to_string();
    ASSERT_EQ(done.size(), 2u);
    std::vector<uint64_t> tags{done[0].tag, done[1].tag};
    std::sort(tags.begin(), tags.end());
    EXPECT_EQ(tags, (std::vector<uint64_t>{11, 22}));
    for (auto& c : done) {
        EXPECT_TRUE(c.status);
        EXPECT_EQ(c.kind, IoKind::Write);
    }
    // Nothing pending: reap does not wait.
    EXPECT_EQ(*(*file)->reap(done, 5), 0u);
}

TEST(UringFile, ShortReadsAreCompleted) {
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    kvm::UniqueFd rd(p[0]), wr(p[1]);
    auto file = UringFile::create(rd.get(), "pipe");
    ASSERT_TRUE(file);
    std::vector<std::byte> data(200);
    for (size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i);
    ASSERT_EQ(::write(wr.get(), data.data(), 100), 100);
    std::vector<std::byte> back(200);
    ASSERT_TRUE((*file)->queue_read(0, back, 5));
    ASSERT_TRUE((*file)->submit());
    std::vector<IoCompletion> done;
    ASSERT_TRUE((*file)->reap(done, 0));  // the first half, if it has arrived, is resubmitted
    EXPECT_TRUE(done.empty());
    ASSERT_EQ(::write(wr.get(), data.data() + 100, 100), 100);
    ASSERT_TRUE((*file)->reap(done, 1));
    ASSERT_EQ(done.size(), 1u);
    EXPECT_TRUE(done[0].status) << done[0].status.error().to_string();
    EXPECT_EQ(back, data);
}

TEST(UringFile, EndOfFileIsAnErrorWithContext) {
    ScratchDir dir;
    auto fd = open_rw(dir.file("short"));
    ASSERT_EQ(::write(fd.get(), "abc", 3), 3);
    auto file = UringFile::create(fd.get(), dir.file("short"));
    ASSERT_TRUE(file);
    std::vector<std::byte> buf(4096);
    ReadRequest req{0, buf};
    auto r = (*file)->read_batch(std::span(&req, 1));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, ErrorKind::Io);
    EXPECT_NE(r.error().message.find(dir.file("short")), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("read of 4096 bytes at offset 0"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("after 3 bytes: end of file"), std::string::npos) << r.error().message;
}

TEST(UringFile, FullDeviceReportsErrno) {
    kvm::UniqueFd fd(::open("/dev/full", O_WRONLY | O_CLOEXEC));
    if (!fd.valid()) GTEST_SKIP() << "/dev/full is not available";
    auto file = UringFile::create(fd.get(), "/dev/full");
    ASSERT_TRUE(file);
    auto page = page_bytes(0, 0);
    WriteRequest req{8192, page};
    auto r = (*file)->write_batch(std::span(&req, 1));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, ErrorKind::Io);
    EXPECT_EQ(r.error().err_no, ENOSPC);
    EXPECT_EQ(r.error().to_string(),
              "/dev/full: write of 4096 bytes at offset 8192 failed: " + std::string(std::strerror(ENOSPC)));
}

TEST(UringFile, WriteToReadOnlyDescriptorFails) {
    ScratchDir dir;
    { auto fd = open_rw(dir.file("ro")); }
    kvm::UniqueFd fd(::open(dir.file("ro").c_str(), O_RDONLY | O_CLOEXEC));
    auto file = UringFile::create(fd.get(), "ro");
    ASSERT_TRUE(file);
    auto page = page_bytes(0, 0);
    WriteRequest req{0, page};
    auto r = (*file)->write_batch(std::span(&req, 1));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().err_no, EBADF);
    EXPECT_FALSE((*file)->broken());  // an I/O error does not disable the ring
}

TEST(UringFile, WaitIsBoundedByTheTimeout) {
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    kvm::UniqueFd rd(p[0]), wr(p[1]);
    auto file = UringFile::create(rd.get(), "pipe", UringFile::Options{4, std::chrono::milliseconds(50)});
    ASSERT_TRUE(file);
    std::vector<std::byte> buf(64);
    ReadRequest req{0, buf};
    auto r = (*file)->read_batch(std::span(&req, 1));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, ErrorKind::Timeout);
    EXPECT_EQ(r.error().message, "pipe: no I/O completion within 50 ms (1 requests in flight)");
    EXPECT_TRUE((*file)->broken());
    EXPECT_EQ((*file)->in_flight(), 0u);  // cancelled: the buffer is no longer in use
    auto again = (*file)->queue_read(0, buf, 1);
    ASSERT_FALSE(again);
    EXPECT_NE(again.error().message.find("after an earlier timeout"), std::string::npos);
}

TEST(UringFile, RejectsBadArguments) {
    EXPECT_FALSE(UringFile::create(-1, "x"));
    ScratchDir dir;
    auto fd = open_rw(dir.file("f"));
    EXPECT_FALSE(UringFile::create(fd.get(), "f", UringFile::Options{0, std::chrono::milliseconds(1)}));
    EXPECT_FALSE(UringFile::create(fd.get(), "f", UringFile::Options{8, std::chrono::milliseconds(0)}));
    auto file = UringFile::create(fd.get(), "f");
    ASSERT_TRUE(file);
    std::vector<std::byte> empty;
    EXPECT_EQ((*file)->queue_read(0, empty, 1).error().kind, ErrorKind::Invalid);
    std::vector<std::byte> buf(16);
    EXPECT_EQ((*file)->queue_read(UINT64_MAX - 4, buf, 1).error().kind, ErrorKind::Invalid);
}

}  // namespace
}  // namespace pv::store
