// The boot state written into guest RAM (no KVM): page tables over the pool,
// GDT/IDT/TSS/BootInfo contents, image loading.
#include <gtest/gtest.h>

#include <cstring>

#include "vmm/abi/hypercall.h"
#include "vmm/abi/layout.h"
#include "vmm/loader/elf_loader.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/x86/boot.h"
#include "vmm/x86/descriptors.h"

namespace pv::x86 {
namespace {

using mm::GuestFrame;
using mm::GuestVirtAddr;
using mm::Perm;

TEST(TablePool, AllocatesZeroedFramesInsideThePool) {
    auto mem = memory::GuestMemory::create(layout::kMinRamSize);
    ASSERT_TRUE(mem.has_value());
    // Dirty the pool first: alloc_table must zero.
    auto pool_bytes = mem->host_span(mm::GuestPhysAddr(layout::kPageTablePoolAddr), layout::kPageTablePoolSize);
    std::memset(pool_bytes->data(), 0xAB, pool_bytes->size());
    TablePool pool(*mem);
    std::vector<GuestFrame> frames;
    for (uint64_t i = 0; i < TablePool::kFrames; ++i) {
        auto f = pool.alloc_table();
        ASSERT_TRUE(f.has_value());
        EXPECT_GE(f->start_address().value(), layout::kPageTablePoolAddr);
        EXPECT_LT(f->start_address().value(), layout::kPageTablePoolAddr + layout::kPageTablePoolSize);
        auto t = pool.table(*f);
        ASSERT_TRUE(t.has_value());
        for (int e = 0; e < 512; ++e) ASSERT_EQ((*t)[e], 0u);
        frames.push_back(*f);
        ASSERT_TRUE(pool.check_invariants());
    }
    EXPECT_EQ(pool.alloc_table().error(), mm::Error::NoMemory);
    pool.free_table(frames[7]);
    EXPECT_EQ(pool.used(), TablePool::kFrames - 1);
    auto again = pool.alloc_table();
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(*again, frames[7]);
}

TEST(TablePool, ResetAndClaimRebuildTheUsedSetWithoutTouchingTables) {
    auto mem = memory::GuestMemory::create(layout::kMinRamSize);
    ASSERT_TRUE(mem.has_value());
    TablePool pool(*mem);
    auto a = pool.alloc_table();
    auto b = pool.alloc_table();
    ASSERT_TRUE(a && b);
    (*pool.table(*b))[3] = 0x1234;  // contents a restored snapshot put there
    pool.reset();
    EXPECT_EQ(pool.used(), 0U);
    EXPECT_TRUE(pool.claim(*b));
    EXPECT_FALSE(pool.claim(*b));  // twice
    EXPECT_EQ((*pool.table(*b))[3], 0x1234U);
    EXPECT_FALSE(pool.claim(GuestFrame(1)));  // not a pool frame
    EXPECT_TRUE(pool.contains(*a));
    EXPECT_FALSE(pool.contains(GuestFrame(1)));
    EXPECT_EQ(pool.used(), 1U);
    auto c = pool.alloc_table();  // the first free frame: a, not the claimed b
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(*c, *a);
    EXPECT_TRUE(pool.check_invariants());
}

TEST(TablePool, TableOutsideThePoolIsOutOfRange) {
    auto mem = memory::GuestMemory::create(layout::kMinRamSize);
    ASSERT_TRUE(mem.has_value());
    TablePool pool(*mem);
    const uint64_t first = layout::kPageTablePoolAddr / layout::kPage;
    const uint64_t end = first + TablePool::kFrames;
    for (uint64_t n : {uint64_t(0), first - 1, end, end + 1, GuestFrame::kMaxNumber}) {
        auto t = pool.table(GuestFrame(n));
        ASSERT_FALSE(t.has_value()) << n;
        EXPECT_EQ(t.error(), mm::Error::OutOfRange);
    }
    EXPECT_TRUE(pool.table(GuestFrame(first)).has_value());
    EXPECT_TRUE(pool.table(GuestFrame(end - 1)).has_value());
}

class BootTables : public testing::Test {
protected:
    void SetUp() override {
        auto mem = memory::GuestMemory::create(64ULL << 20);
        ASSERT_TRUE(mem.has_value());
        m_mem.emplace(std::move(*mem));
        auto image = loader::load_elf_file(PAGEVISOR_GUEST_IMAGE);
        ASSERT_TRUE(image.has_value()) << image.error().to_string();
        m_image = std::move(*image);
        m_pool = std::make_unique<TablePool>(*m_mem);
        auto pt = build_page_tables(*m_pool, m_image, kVcpus);
        ASSERT_TRUE(pt.has_value()) << pt.error().to_string();
        m_pt.emplace(std::move(*pt));
    }

    // The effective permission at va, or None if unmapped; checks identity mapping.
    Perm perm_at(uint64_t va) {
        auto m = m_pt->query(GuestVirtAddr(va));
        if (!m) {
            EXPECT_EQ(m.error(), mm::Error::NotFound) << std::hex << va;
            return Perm::None;
        }
        EXPECT_EQ(m->phys.value() + (va - m->base.value()), va) << "identity mapping at " << std::hex << va;
        return m->perm;
    }

    static constexpr uint32_t kVcpus = 3;
    std::optional<memory::GuestMemory> m_mem;
    loader::Image m_image;
    std::unique_ptr<TablePool> m_pool;
    std::optional<GuestPageTable> m_pt;
};

constexpr Perm kUserRW = Perm::Read | Perm::Write | Perm::User;
constexpr Perm kSupRW = Perm::Read | Perm::Write;

TEST_F(BootTables, FixedRegionsHaveTheirPermissions) {
    EXPECT_TRUE(m_pt->check_invariants());
    EXPECT_EQ(perm_at(0), Perm::None);
    EXPECT_EQ(perm_at(0xFFF), Perm::None);
    EXPECT_EQ(perm_at(layout::kGdtAddr), kSupRW);
    EXPECT_EQ(perm_at(layout::kIdtAddr), kSupRW);
    EXPECT_EQ(perm_at(layout::kBootInfoAddr), Perm::Read | Perm::User);
    EXPECT_EQ(perm_at(layout::kTssArrayAddr), kSupRW);
    for (uint32_t i = 0; i < kVcpus; ++i) {
        EXPECT_EQ(perm_at(layout::hypercall_page(i)), kUserRW);
        EXPECT_EQ(perm_at(layout::kernel_stack_top(i) - 8), kSupRW);
        EXPECT_EQ(perm_at(layout::user_stack_top(i) - 8), kUserRW);
        uint64_t bottom = layout::user_stack_top(i) - layout::kUserStackSize;
        EXPECT_EQ(perm_at(bottom), Perm::None) << "guard page of vCPU " << i;
        EXPECT_EQ(perm_at(bottom + layout::kPage), kUserRW);
    }
    EXPECT_EQ(perm_at(layout::hypercall_page(kVcpus)), Perm::None);
    EXPECT_EQ(perm_at(layout::kernel_stack_top(kVcpus) - 8), Perm::None);
    EXPECT_EQ(perm_at(layout::kPageTablePoolAddr), Perm::None);
    EXPECT_EQ(perm_at(layout::kDeviceWindowAddr), kUserRW);
    EXPECT_EQ(perm_at(layout::kDeviceWindowAddr + layout::kDeviceWindowSize - 1), kUserRW);
    EXPECT_EQ(perm_at(layout::kDeviceWindowAddr + layout::kDeviceWindowSize), Perm::None);
    EXPECT_EQ(perm_at(layout::kFreeRamStart), Perm::None);
}

TEST_F(BootTables, ImageSegmentsKeepTheLoadersPermissions) {
    ASSERT_FALSE(m_image.segments.empty());
    bool saw_supervisor = false;
    for (const auto& seg : m_image.segments) {
        for (uint64_t off = 0; off < seg.page_span(); off += layout::kPage)
            ASSERT_EQ(perm_at(seg.vaddr.value() + off), seg.perm) << std::hex << seg.vaddr.value() + off;
        saw_supervisor = saw_supervisor || !mm::has(seg.perm, Perm::User);
    }
    EXPECT_TRUE(saw_supervisor) << "the exception stubs live in a supervisor segment";
    EXPECT_EQ(perm_at(layout::kExceptionStubsAddr) & Perm::User, Perm::None);
    EXPECT_TRUE(mm::has(perm_at(m_image.entry.value()), Perm::User | Perm::Exec));
}

TEST_F(BootTables, BootStructuresAreWritten) {
    BootConfig c{kVcpus, 42, "hello", {1, 2, 3, 4, 5, 6, 7, 8}, {}, {}, 2};
    c.ram = {{layout::kFreeRamStart, 16ULL << 20, 0, abi::RamKind::Eager},
             {layout::kFreeRamStart + (16ULL << 20), 16ULL << 20, 1, abi::RamKind::Demand}};
    c.vcpu_node = {0, 1, 1};
    ASSERT_TRUE(write_boot_structures(*m_mem, c).has_value());
    auto info = m_mem->read<abi::BootInfo>(mm::GuestPhysAddr(layout::kBootInfoAddr));
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->magic, abi::kBootMagic);
    EXPECT_EQ(info->abi_version, abi::kAbiVersion);
    EXPECT_EQ(info->vcpu_count, kVcpus);
    EXPECT_EQ(info->ram_size, 64ULL << 20);
    EXPECT_EQ(info->free_ram_start, layout::kFreeRamStart);
    EXPECT_EQ(info->free_ram_end, 64ULL << 20);
    EXPECT_EQ(info->seed, 42u);
    EXPECT_STREQ(info->workload, "hello");
    EXPECT_EQ(info->params[7], 8u);
    EXPECT_EQ(info->node_count, 2u);
    ASSERT_EQ(info->ram_count, 2u);
    EXPECT_EQ(info->ram[1].gpa, layout::kFreeRamStart + (16ULL << 20));
    EXPECT_EQ(info->ram[1].size, 16ULL << 20);
    EXPECT_EQ(info->ram[1].node, 1u);
    EXPECT_EQ(info->ram[1].kind, abi::RamKind::Demand);
    EXPECT_EQ(info->vcpu_node[2], 1u);
    EXPECT_EQ(info->vcpu_node[3], 0u);
    c.ram.resize(abi::kMaxRamRanges + 1, c.ram[0]);
    EXPECT_EQ(write_boot_structures(*m_mem, c).error().kind, ErrorKind::Usage);
    auto gdt = guest_gdt(kVcpus);
    for (size_t i = 0; i < gdt.size(); ++i)
        EXPECT_EQ(*m_mem->read<uint64_t>(mm::GuestPhysAddr(layout::kGdtAddr + 8 * i)), gdt[i]);
    auto rsp0 = m_mem->read<uint64_t>(mm::GuestPhysAddr(layout::tss_addr(2) + 4));
    EXPECT_EQ(*rsp0, layout::kernel_stack_top(2));
}

TEST_F(BootTables, BadBootConfigIsRejected) {
    EXPECT_EQ(write_boot_structures(*m_mem, BootConfig{0, 0, "", {}, {}, {}, 1}).error().kind, ErrorKind::Usage);
    EXPECT_EQ(write_boot_structures(*m_mem, BootConfig{layout::kMaxVcpus + 1, 0, "", {}, {}, {}, 1}).error().kind,
              ErrorKind::Usage);
    EXPECT_EQ(write_boot_structures(*m_mem, BootConfig{1, 0, std::string(32, 'w'), {}, {}, {}, 1}).error().kind,
              ErrorKind::Usage);
}

TEST_F(BootTables, ImageIsCopiedAndBssZeroed) {
    for (const auto& seg : m_image.segments) {
        auto span = m_mem->host_span(mm::GuestPhysAddr(seg.vaddr.value()), seg.page_span());
        std::memset(span->data(), 0xCC, span->size());
    }
    ASSERT_TRUE(load_image(*m_mem, m_image).has_value());
    for (const auto& seg : m_image.segments) {
        auto span = m_mem->host_span(mm::GuestPhysAddr(seg.vaddr.value()), seg.page_span());
        EXPECT_EQ(std::memcmp(span->data(), seg.data.data(), seg.data.size()), 0);
        for (size_t i = seg.data.size(); i < span->size(); ++i) ASSERT_EQ((*span)[i], std::byte{0});
    }
}

TEST_F(BootTables, MaximumVcpusFitInThePool) {
    TablePool pool(*m_mem);
    auto pt = build_page_tables(pool, m_image, layout::kMaxVcpus);
    ASSERT_TRUE(pt.has_value()) << pt.error().to_string();
    EXPECT_TRUE(pt->check_invariants());
    EXPECT_LT(pool.used(), 64u);  // a handful of tables
}

}  // namespace
}  // namespace pv::x86
