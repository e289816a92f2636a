// GuestAddressSpace over the real per-node frame allocator (mm/frames.h):
// placement by node, quota as mmap failure, 2 MiB blocks, and every frame back
// in the allocator at the end.
#include <mutex>
#include <thread>

#include "mm/frames.h"
#include "tests/vmm/paging/paging_fixture.h"

namespace pv::paging::test {
namespace {

using Frames = mm::FrameAllocator<std::mutex>;
static_assert(FrameSource<Frames>);

class RealFramesTest : public ::testing::Test {
protected:
    static constexpr uint64_t kNodeFrames = 16 * kMiB / kPage;

    void SetUp() override {
        auto mem = memory::GuestMemory::create(64 * kMiB);
        ASSERT_TRUE(mem.has_value());
        m_mem = std::make_unique<memory::GuestMemory>(std::move(*mem));
        m_meta.resize(Frames::metadata_bytes(2, 2, kNodeFrames));
        ASSERT_TRUE(m_frames.init(std::span(m_meta), 2, 2).has_value());
        for (uint32_t n = 0; n < 2; ++n)
            ASSERT_TRUE(
                m_frames.add_range(n, mm::GuestFrameRange{mm::GuestFrame((32 + 16 * n) * kMiB / kPage), kNodeFrames})
                    .has_value());
        auto as = GuestAddressSpace::create(
            AddressSpaceConfig{2, 8, 1024},
            [mem = m_mem.get()](mm::GuestPhysAddr a, uint64_t n) { return mem->host_span(a, n); }, m_provider, nullptr,
            std::nullopt);
        ASSERT_TRUE(as.has_value());
        m_as = std::move(*as);
        m_as->set_shootdown([] {});
    }
    uint64_t used(uint32_t node) { return m_frames.stats(node).used_frames; }

    std::unique_ptr<memory::GuestMemory> m_mem;
    std::vector<std::byte> m_meta;
    Frames m_frames;
    FrameSourceAdapter<Frames> m_provider{m_frames, 2, 64 * kMiB / kPage};
    std::unique_ptr<GuestAddressSpace> m_as;
};

TEST_F(RealFramesTest, PlacementHugePagesAndQuota) {
    auto a = m_as->mmap(Caller{1, 1}, 0, 64 * kPage, kRW, 0, abi::kNodeAny);
    ASSERT_TRUE(a.has_value());
    for (uint64_t i = 0; i < 64; ++i)
        ASSERT_EQ(m_as->handle_fault(mm::GuestVirtAddr(*a + i * kPage), kPfUser | kPfWrite, 1, 1).kind ==
                      FaultResult::Kind::Segv,
                  false);
    EXPECT_EQ(m_as->stats().frames_per_node[1], 64U) << "first touch on vCPU 1's node";
    EXPECT_EQ(m_as->stats().frames_per_node[0], 0U);
    auto h = m_as->mmap(Caller{0, 0}, 0, 2 * k2M, kRW, abi::kMapHuge | abi::kMapPopulate, 0);
    ASSERT_TRUE(h.has_value());
    EXPECT_EQ(m_as->query(mm::GuestVirtAddr(*h))->size, mm::PageSize::Size2M);
    ASSERT_TRUE(m_as->munmap(Caller{0, 0}, *h + kPage, kPage).has_value());  // split, block kept
    EXPECT_GE(used(0), 2 * kHugePages);
    mm::FrameNodeConfig quota;
    quota.quota_frames = used(0) + 8;
    ASSERT_TRUE(m_frames.configure(0, quota).has_value());
    auto r = m_as->mmap(Caller{0, 0}, 0, 16 * kPage, kRW, abi::kMapPopulate, 0);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), abi::MemError::NoMemory) << "a quota refusal is an mmap failure";
    EXPECT_TRUE(m_as->check_invariants());
    ASSERT_TRUE(m_as->munmap(Caller{0, 0}, *h, 2 * k2M).has_value());
    ASSERT_TRUE(m_as->munmap(Caller{1, 1}, *a, 64 * kPage).has_value());
    m_as.reset();
    EXPECT_EQ(used(0), 0U) << "every frame, table and 2 MiB block returned";
    EXPECT_EQ(used(1), 0U);
}

}  // namespace
}  // namespace pv::paging::test
