// GuestMemory against a page model, registered with a real KVM VM: random
// map / unmap / protect of eager, demand, read-only and hole areas. After every
// operation the set's invariants hold (each RAM area covered by memslot pieces),
// host_span/find_area agree with the model, and memory that was unmapped and
// mapped again reads as zero.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>

#include "tests/support/kvm.h"
#include "tests/support/seed.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vm.h"
#include "vmm/memory/fault_server.h"
#include "vmm/memory/guest_memory.h"

namespace pv::memory {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kBase = 0x1000'0000;
constexpr uint64_t kPages = 96;

struct PageModel {
    AreaKind kind;
    bool read_only;
    uint32_t id;  // model's area id (to tell areas apart)
};

mm::GuestPhysRange pages(uint64_t first, uint64_t n) {
    return mm::GuestPhysRange::from_start_size(mm::GuestPhysAddr(kBase + first * kPage), n * kPage);
}

TEST(GuestMemoryModel, RandomMapUnmapProtectOnKvm) {
    PV_REQUIRE_KVM();
    const uint64_t seed = pv::test::test_seed(77);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    auto kvm = kvm::Kvm::open();
    ASSERT_TRUE(kvm.has_value()) << kvm.error().to_string();
    auto vm = kvm->create_vm();
    ASSERT_TRUE(vm.has_value()) << vm.error().to_string();
    FaultServer::Options o;
    o.fault_around = FaultServer::FaultAround::Off;
    auto server = FaultServer::create(std::move(o));
    ASSERT_TRUE(server.has_value()) << server.error().to_string();
    auto created = GuestMemory::create_empty(DemandHooks{server->get(), nullptr});
    ASSERT_TRUE(created.has_value());
    GuestMemory& mem = *created;
    ASSERT_TRUE(mem.register_with(*vm).has_value());
    const bool readonly_ok = vm->supports_readonly_memory();

    std::map<uint64_t, PageModel> model;  // page index -> state
    std::vector<std::byte> rom(3 * kPage, std::byte{0x5a});
    uint32_t next_id = 0;
    for (int step = 0; step < 400; ++step) {
        const uint64_t first = rng() % kPages;
        const uint64_t n = 1 + rng() % std::min<uint64_t>(12, kPages - first);
        const int op = static_cast<int>(rng() % 3);
        SCOPED_TRACE("step " + std::to_string(step) + " op " + std::to_string(op) + " pages [" + std::to_string(first) +
                     ", +" + std::to_string(n) + ")");
        bool free = true;
        for (uint64_t p = first; p < first + n; ++p) free = free && model.count(p) == 0;
        if (op == 0) {
            AreaSpec spec;
            spec.name = "a" + std::to_string(next_id);
            spec.gpa = pages(first, n);
            const int k = static_cast<int>(rng() % (readonly_ok ? 4 : 3));
            spec.kind = k == 0   ? AreaKind::Eager
                        : k == 1 ? AreaKind::Demand
                        : k == 2 ? AreaKind::Hole
                                 : AreaKind::ReadOnly;
            if (spec.kind == AreaKind::ReadOnly)
                spec.contents = std::span<const std::byte>(rom).first(std::min(rom.size(), n * kPage));
            auto r = mem.map(spec);
            ASSERT_EQ(r.has_value(), free) << (r ? "" : r.error().to_string());
            if (free) {
                for (uint64_t p = first; p < first + n; ++p)
                    model[p] = {spec.kind, spec.kind == AreaKind::ReadOnly, next_id};
                ++next_id;
            }
        } else if (op == 1) {
            ASSERT_TRUE(mem.unmap(pages(first, n)).has_value());
            for (uint64_t p = first; p < first + n; ++p) model.erase(p);
        } else {
            const bool ro = readonly_ok && (rng() % 2) == 0;
            ASSERT_TRUE(mem.protect(pages(first, n), ro).has_value());
            for (uint64_t p = first; p < first + n; ++p) {
                auto it = model.find(p);
                if (it != model.end() && it->second.kind != AreaKind::Hole) it->second.read_only = ro;
            }
        }
        ASSERT_TRUE(mem.check_invariants());
        for (uint64_t p = 0; p < kPages; ++p) {
            const auto gpa = mm::GuestPhysAddr(kBase + p * kPage);
            auto it = model.find(p);
            auto area = mem.find_area(gpa);
            ASSERT_EQ(area.has_value(), it != model.end()) << "page " << p;
            auto span = mem.host_span(gpa, kPage);
            if (it == model.end()) {
                EXPECT_FALSE(span.has_value());
                continue;
            }
            EXPECT_EQ(area->kind, it->second.kind) << "page " << p;
            EXPECT_EQ(area->read_only, it->second.read_only) << "page " << p;
            ASSERT_EQ(span.has_value(), it->second.kind != AreaKind::Hole) << "page " << p;
            // Eager pages are written and must read back; a page mapped anew reads zero
            // (demand pages are left alone: touching them from this thread goes through the server).
            if (it->second.kind == AreaKind::Eager) {
                auto* word = reinterpret_cast<uint64_t*>(span->data());
                EXPECT_TRUE(*word == 0 || *word == (p ^ it->second.id)) << "page " << p;
                *word = p ^ it->second.id;
            }
        }
    }
    // Everything goes: no area, no memslot piece left.
    ASSERT_TRUE(mem.unmap(pages(0, kPages)).has_value());
    EXPECT_TRUE(mem.areas().empty());
    EXPECT_TRUE(mem.check_invariants());
}

TEST(GuestMemoryModel, BadAreasAreRefusedWithOneLine) {
    auto created = GuestMemory::create_empty();
    ASSERT_TRUE(created.has_value());
    GuestMemory& mem = *created;
    AreaSpec spec;
    spec.name = "d";
    spec.gpa = pages(0, 4);
    spec.kind = AreaKind::Demand;  // no fault server
    auto r = mem.map(spec);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("no fault server"), std::string::npos) << r.error().message;
    spec.kind = AreaKind::Eager;
    ASSERT_TRUE(mem.map(spec).has_value());
    spec.name = "overlap";
    spec.gpa = pages(2, 4);
    r = mem.map(spec);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("overlaps another area"), std::string::npos) << r.error().message;
    spec.gpa = mm::GuestPhysRange::from_start_size(mm::GuestPhysAddr(kBase + 100 * kPage + 8), kPage);
    EXPECT_FALSE(mem.map(spec).has_value());
    spec.gpa = pages(10, 1);
    std::vector<std::byte> big(2 * kPage);
    spec.kind = AreaKind::ReadOnly;
    spec.contents = big;
    r = mem.map(spec);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("smaller than its contents"), std::string::npos) << r.error().message;
    EXPECT_EQ(mem.areas().size(), 1u);
    EXPECT_TRUE(mem.check_invariants());
}

}  // namespace
}  // namespace pv::memory
