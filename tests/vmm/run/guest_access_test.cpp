// PageTableGuestAccess over the boot page tables (no KVM): only present, user
// pages backed by RAM are reachable, with write permission for writes.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>

#include "tests/support/seed.h"
#include "vmm/abi/layout.h"
#include "vmm/loader/elf_loader.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/run/guest_access.h"
#include "vmm/x86/boot.h"

namespace pv::run {
namespace {

using mm::GuestVirtAddr;

class GuestAccessTest : public testing::Test {
protected:
    void SetUp() override {
        auto mem = memory::GuestMemory::create(64ULL << 20);
        ASSERT_TRUE(mem.has_value());
        m_mem.emplace(std::move(*mem));
        auto image = loader::load_elf_file(PAGEVISOR_GUEST_IMAGE);
        ASSERT_TRUE(image.has_value()) << image.error().to_string();
        m_image = std::move(*image);
        m_pool = std::make_unique<x86::TablePool>(*m_mem);
        auto pt = x86::build_page_tables(*m_pool, m_image, kVcpus);
        ASSERT_TRUE(pt.has_value());
        m_pt.emplace(std::move(*pt));
        m_access = std::make_unique<PageTableGuestAccess>(*m_mem, *m_pt);
    }

    Status write_bytes(uint64_t gva, size_t n, uint8_t value) {
        std::vector<std::byte> buf(n, std::byte{value});
        return m_access->write(GuestVirtAddr(gva), buf);
    }
    Status read_bytes(uint64_t gva, size_t n) {
        std::vector<std::byte> buf(n);
        return m_access->read(GuestVirtAddr(gva), buf);
    }

    static constexpr uint32_t kVcpus = 2;
    std::optional<memory::GuestMemory> m_mem;
    loader::Image m_image;
    std::unique_ptr<x86::TablePool> m_pool;
    std::optional<x86::GuestPageTable> m_pt;
    std::unique_ptr<PageTableGuestAccess> m_access;
};

TEST_F(GuestAccessTest, UserPagesRoundTrip) {
    uint64_t gva = layout::hypercall_page(1) + 100;
    const char text[] = "hello, guest";
    ASSERT_TRUE(m_access->write(GuestVirtAddr(gva), std::as_bytes(std::span(text))).has_value());
    char back[sizeof text] = {};
    ASSERT_TRUE(m_access->read(GuestVirtAddr(gva), std::as_writable_bytes(std::span(back))).has_value());
    EXPECT_STREQ(back, text);
    auto host = m_mem->host_span(mm::GuestPhysAddr(gva), sizeof text);
    EXPECT_EQ(std::memcmp(host->data(), text, sizeof text), 0);
}

TEST_F(GuestAccessTest, CrossesPagesOfOneMapping) {
    uint64_t top = layout::user_stack_top(0);
    EXPECT_TRUE(write_bytes(top - 3 * layout::kPage - 10, 3 * layout::kPage + 10, 0x5A).has_value());
    EXPECT_FALSE(write_bytes(top - 10, 11, 0x5A).has_value()) << "runs off the stack top into vCPU 1's guard";
}

TEST_F(GuestAccessTest, RejectsWhatTheGuestCannotTouch) {
    struct Case {
        uint64_t gva;
        size_t len;
        bool write;
        const char* why;
    };
    const Case cases[] = {
        {0, 8, false, "page 0"},
        {layout::kGdtAddr, 8, false, "supervisor GDT"},
        {layout::kernel_stack_top(0) - 72, 72, false, "kernel stack"},
        {layout::kExceptionStubsAddr, 16, false, "kernel text"},
        {layout::kBootInfoAddr, 8, true, "read-only BootInfo"},
        {layout::kPageTablePoolAddr, 8, false, "page tables"},
        {layout::kDeviceWindowAddr, 8, false, "device window (no RAM)"},
        {layout::kDeviceWindowAddr, 8, true, "device window (no RAM)"},
        {layout::user_stack_top(0) - layout::kUserStackSize, 8, true, "stack guard page"},
        {layout::kFreeRamStart, 8, false, "unmapped RAM"},
        {0x8000'0000'0000'0000ULL, 8, false, "non-canonical"},
        {UINT64_MAX - 3, 8, false, "wraps"},
    };
    for (const auto& c : cases) {
        Status s = c.write ? write_bytes(c.gva, c.len, 1) : read_bytes(c.gva, c.len);
        ASSERT_FALSE(s.has_value()) << c.why;
        EXPECT_EQ(s.error().kind, ErrorKind::GuestFault) << c.why;
    }
}

TEST_F(GuestAccessTest, ZeroLengthSucceeds) { EXPECT_TRUE(read_bytes(layout::hypercall_page(0), 0).has_value()); }

TEST_F(GuestAccessTest, FailedWriteChangesNothing) {
    uint64_t top = layout::user_stack_top(kVcpus - 1);  // the page above is unmapped
    auto host = m_mem->host_span(mm::GuestPhysAddr(top - 16), 16);
    std::memset(host->data(), 0x11, 16);
    ASSERT_FALSE(write_bytes(top - 16, 32, 0x99).has_value());
    for (auto b : *host) EXPECT_EQ(b, std::byte{0x11});
}

TEST_F(GuestAccessTest, CorruptTableFaultsInsteadOfEscaping) {
    // Point the PML4 entry of the low half at a frame far outside the pool.
    auto root = m_pool->table(m_pt->root());
    ASSERT_TRUE(root.has_value());
    (*root)[0] = 0x7FFF'FFFF'F000ULL | 0x7;
    Status s = read_bytes(layout::hypercall_page(0), 8);
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().kind, ErrorKind::GuestFault);
}

// Randomized: access succeeds exactly when every page is user-accessible per the
// layout (a reference computed from layout.h and the image, not from the table).
TEST_F(GuestAccessTest, MatchesLayoutModel) {
    const uint64_t seed = pv::test::test_seed(77);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::set<uint64_t> readable, writable;
    auto add = [](std::set<uint64_t>& s, uint64_t start, uint64_t size) {
        for (uint64_t p = start; p < start + size; p += layout::kPage) s.insert(p);
    };
    add(readable, layout::kBootInfoAddr, layout::kPage);
    add(writable, layout::kHypercallPagesAddr, kVcpus * layout::kPage);
    for (uint32_t i = 0; i < kVcpus; ++i)
        add(writable, layout::user_stack_top(i) - layout::kUserStackSize + layout::kPage,
            layout::kUserStackSize - layout::kPage);
    for (const auto& seg : m_image.segments) {
        if (!mm::has(seg.perm, mm::Perm::User)) continue;
        add(readable, seg.vaddr.value(), seg.page_span());
        if (mm::has(seg.perm, mm::Perm::Write)) add(writable, seg.vaddr.value(), seg.page_span());
    }
    readable.insert(writable.begin(), writable.end());
    std::vector<uint64_t> anchors(readable.begin(), readable.end());
    anchors.push_back(layout::kDeviceWindowAddr);
    anchors.push_back(0);
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 3000; ++i) {
        uint64_t gva = anchors[rng() % anchors.size()] + (rng() % 8192) - 4096;
        uint64_t len = rng() % 9000;
        bool write = rng() % 2;
        const auto& model = write ? writable : readable;
        bool expected = len == 0 || gva + (len - 1) >= gva;  // a wrapping range is never valid
        if (len > 0 && expected)
            for (uint64_t p = gva & ~(layout::kPage - 1); expected && p <= gva + len - 1; p += layout::kPage)
                expected = model.count(p) > 0;  // stops at the first miss, so p never wraps (nothing is at the top)
        Status s = write ? write_bytes(gva, len, 0x42) : read_bytes(gva, len);
        ASSERT_EQ(s.has_value(), expected) << std::hex << "gva=0x" << gva << " len=0x" << len << " write=" << write;
    }
}

}  // namespace
}  // namespace pv::run
