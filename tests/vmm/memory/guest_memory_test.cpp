// GuestMemory layout and bounds, and --memory size parsing. No KVM needed.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "tests/support/seed.h"
#include "vmm/abi/layout.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/memory/memory_size.h"

namespace pv::memory {
namespace {

using mm::GuestPhysAddr;
constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kGiB = 1ULL << 30;

TEST(MemorySize, AcceptsSuffixes) {
    EXPECT_EQ(*parse_memory_size("256M"), 256 * kMiB);
    EXPECT_EQ(*parse_memory_size("256m"), 256 * kMiB);
    EXPECT_EQ(*parse_memory_size("256MiB"), 256 * kMiB);
    EXPECT_EQ(*parse_memory_size("1G"), kGiB);
    EXPECT_EQ(*parse_memory_size("1gb"), kGiB);
    EXPECT_EQ(*parse_memory_size("49152K"), 48 * kMiB);
    EXPECT_EQ(*parse_memory_size("50331648"), 48 * kMiB);
    EXPECT_EQ(*parse_memory_size("1T"), 1ULL << 40);
}

TEST(MemorySize, RejectsBadInput) {
    for (const char* bad : {"", "M", "-1G", "1.5G", "12Q", "256 M", "0x100M", "47M", "1025G0", "2T",
                            "99999999999999999999", "18446744073709551615G", "49153K"}) {
        auto r = parse_memory_size(bad);
        ASSERT_FALSE(r.has_value()) << "'" << bad << "' was accepted";
        EXPECT_EQ(r.error().kind, ErrorKind::Usage);
        EXPECT_NE(r.error().message.find(std::string("invalid memory size '") + bad + "'"), std::string::npos);
    }
}

TEST(MemorySize, MinimumIsTheLayoutMinimum) {
    EXPECT_TRUE(parse_memory_size("48M").has_value());
    EXPECT_FALSE(parse_memory_size("48M").value() < layout::kMinRamSize);
    auto r = parse_memory_size("32M");
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("minimum is 48 MiB"), std::string::npos) << r.error().message;
}

TEST(MemorySize, Formats) {
    EXPECT_EQ(format_size(256 * kMiB), "256 MiB");
    EXPECT_EQ(format_size(kGiB + kGiB / 2), "1.5 GiB");
    EXPECT_EQ(format_size(4096), "4 KiB");
    EXPECT_EQ(format_size(100), "100 B");
}

TEST(GuestMemory, SmallGuestHasOneRegion) {
    auto m = GuestMemory::create(64 * kMiB);
    ASSERT_TRUE(m.has_value()) << m.error().to_string();
    ASSERT_EQ(m->regions().size(), 1u);
    EXPECT_EQ(m->regions()[0].gpa.start(), GuestPhysAddr(0));
    EXPECT_EQ(m->regions()[0].gpa.size(), 64 * kMiB);
    EXPECT_EQ(m->low_end(), 64 * kMiB);
    EXPECT_EQ(m->size(), 64 * kMiB);
}

TEST(GuestMemory, LargeGuestSplitsAroundTheHole) {
    auto m = GuestMemory::create(4 * kGiB);  // MAP_NORESERVE: nothing is touched
    ASSERT_TRUE(m.has_value()) << m.error().to_string();
    ASSERT_EQ(m->regions().size(), 2u);
    EXPECT_EQ(m->regions()[0].gpa.size(), layout::kLowRamLimit);
    EXPECT_EQ(m->regions()[1].gpa.start(), GuestPhysAddr(layout::k4GiB));
    EXPECT_EQ(m->regions()[1].gpa.size(), 4 * kGiB - layout::kLowRamLimit);
    EXPECT_TRUE(m->contains(GuestPhysAddr(layout::kLowRamLimit - 8), 8));
    EXPECT_FALSE(m->contains(GuestPhysAddr(layout::kLowRamLimit - 8), 16));
    EXPECT_FALSE(m->contains(GuestPhysAddr(layout::kDeviceWindowAddr), 1));
    EXPECT_TRUE(m->contains(GuestPhysAddr(layout::k4GiB), 4096));
    EXPECT_FALSE(m->contains(GuestPhysAddr(layout::k4GiB - 1), 2));
    EXPECT_FALSE(m->contains(GuestPhysAddr(8 * kGiB - 4096), 4097));
}

TEST(GuestMemory, RejectsBadSizes) {
    EXPECT_FALSE(GuestMemory::create(layout::kMinRamSize - 4096).has_value());
    EXPECT_FALSE(GuestMemory::create(layout::kMinRamSize + 1).has_value());
}

TEST(GuestMemory, ReadWriteAndBounds) {
    auto m = GuestMemory::create(48 * kMiB);
    ASSERT_TRUE(m.has_value());
    ASSERT_TRUE(m->write<uint64_t>(GuestPhysAddr(0x1234), 0xDEAD'BEEF'CAFE'F00DULL).has_value());
    auto v = m->read<uint64_t>(GuestPhysAddr(0x1234));
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(*v, 0xDEAD'BEEF'CAFE'F00DULL);
    EXPECT_TRUE(m->read<uint64_t>(GuestPhysAddr(48 * kMiB - 8)).has_value());
    auto end = m->read<uint64_t>(GuestPhysAddr(48 * kMiB - 4));
    ASSERT_FALSE(end.has_value());
    EXPECT_EQ(end.error().kind, ErrorKind::GuestFault);
    EXPECT_FALSE(m->host_span(GuestPhysAddr(UINT64_MAX - 3), 8).has_value());  // wraps
    EXPECT_FALSE(m->host_span(GuestPhysAddr(0), UINT64_MAX).has_value());
    EXPECT_TRUE(m->host_span(GuestPhysAddr(48 * kMiB - 4096), 4096).has_value());
    EXPECT_TRUE(m->host_span(GuestPhysAddr(0), 0).has_value());
    EXPECT_FALSE(m->host_span(GuestPhysAddr(48 * kMiB), 0).has_value());
}

// Host mappings have a PROT_NONE page on each side (read from /proc/self/maps).
TEST(GuestMemory, GuardPagesAroundTheMapping) {
    auto m = GuestMemory::create(48 * kMiB);
    ASSERT_TRUE(m.has_value());
    auto host = reinterpret_cast<uintptr_t>(m->regions()[0].host);
    auto perms_at = [](uintptr_t addr) -> std::string {
        std::ifstream maps("/proc/self/maps");
        std::string line;
        while (std::getline(maps, line)) {
            std::istringstream in(line);
            uintptr_t lo = 0, hi = 0;
            char dash = 0;
            std::string perms;
            in >> std::hex >> lo >> dash >> hi >> perms;
            if (addr >= lo && addr < hi) return perms;
        }
        return "unmapped";
    };
    EXPECT_EQ(perms_at(host - 1).substr(0, 3), "---");
    EXPECT_EQ(perms_at(host + 48 * kMiB).substr(0, 3), "---");
    EXPECT_EQ(perms_at(host).substr(0, 3), "rw-");
}

// Randomized: host_span agrees with a reference predicate over the region list.
TEST(GuestMemory, HostSpanMatchesModel) {
    const uint64_t seed = pv::test::test_seed(41);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    auto m = GuestMemory::create(4 * kGiB);
    ASSERT_TRUE(m.has_value());
    const uint64_t interesting[] = {0, layout::kLowRamLimit, layout::k4GiB, 5 * kGiB, UINT64_MAX};
    const auto regions = m->regions();
    ASSERT_EQ(regions.size(), 2u);
    for (int i = 0; i < 20000; ++i) {
        uint64_t base = interesting[rng() % 5];
        uint64_t gpa = (rng() % 2) ? base + (rng() % 8192) - 4096 : rng();
        uint64_t len = (rng() % 4 == 0) ? rng() : rng() % 16384;
        bool expected = false;
        for (auto [lo, hi] : {std::pair<uint64_t, uint64_t>{0, layout::kLowRamLimit},
                              std::pair<uint64_t, uint64_t>{layout::k4GiB, 5 * kGiB}})
            expected = expected || (gpa >= lo && gpa < hi && len <= hi - gpa);
        auto span = m->host_span(GuestPhysAddr(gpa), len);
        ASSERT_EQ(span.has_value(), expected) << "gpa=" << gpa << " len=" << len;
        if (expected) {
            const auto& r = gpa < layout::kLowRamLimit ? regions[0] : regions[1];
            EXPECT_EQ(span->data(), r.host + (gpa - r.gpa.start().value()));
            EXPECT_EQ(span->size(), len);
        }
    }
}

TEST(GuestMemory, MoveTransfersOwnership) {
    auto m = GuestMemory::create(48 * kMiB);
    ASSERT_TRUE(m.has_value());
    GuestMemory moved = std::move(*m);
    EXPECT_EQ(moved.size(), 48 * kMiB);
    EXPECT_TRUE(moved.write<uint32_t>(GuestPhysAddr(0x10), 7).has_value());
    EXPECT_TRUE(m->regions().empty());
    EXPECT_FALSE(m->host_span(GuestPhysAddr(0x10), 4).has_value());
}

}  // namespace
}  // namespace pv::memory
