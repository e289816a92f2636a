// Model-based randomized test: random mmap/munmap/mprotect/brk calls and guest
// accesses against a simple model (page -> area permission and contents),
// check_invariants() after every operation. The seed is printed on failure.
#include <algorithm>
#include <map>
#include <random>
#include <sstream>

#include "tests/support/seed.h"
#include "tests/vmm/paging/paging_fixture.h"

namespace pv::paging::test {
namespace {

constexpr uint64_t kWindowPages = 1024;  // the mmap part of the model: 4 MiB at kMmapBase
constexpr uint64_t kHeapPages = 64;
constexpr uint64_t kProts[] = {0, abi::kProtRead, kRW, abi::kProtRead | abi::kProtExec, kRW | abi::kProtExec};

struct ModelPage {
    uint64_t prot;
    uint64_t value;  // what offset 0 of the page holds (0 until written)
};

class ModelTest : public PagingTest {
protected:
    std::map<uint64_t, ModelPage> m_model;  // page address -> state
    uint64_t m_brk = abi::kBrkBase;
    std::mt19937_64 m_rng;

    uint64_t pick(uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(m_rng); }
    uint64_t random_page() {
        return pick(0, 3) == 0 ? abi::kBrkBase + pick(0, kHeapPages - 1) * kPage
                               : abi::kMmapBase + pick(0, kWindowPages - 1) * kPage;
    }
    uint64_t random_len() { return (pick(0, 9) == 0 ? pick(1, 600) : pick(1, 24)) * kPage; }

    void set_range(uint64_t start, uint64_t len, uint64_t prot) {
        for (uint64_t p = start; p < start + len; p += kPage) m_model[p] = ModelPage{prot, 0};
    }
    void erase_range(uint64_t start, uint64_t len) {
        m_model.erase(m_model.lower_bound(start), m_model.lower_bound(start + len));
    }
    bool any_in(uint64_t start, uint64_t len) {
        auto it = m_model.lower_bound(start);
        return it != m_model.end() && it->first < start + len;
    }

    void do_mmap_fixed() {
        uint64_t start = abi::kMmapBase + pick(0, kWindowPages - 1) * kPage;
        uint64_t len = std::min(random_len(), abi::kMmapBase + kWindowPages * kPage - start);
        uint64_t prot = kProts[pick(0, 4)];
        uint64_t flags = abi::kMapFixed | (pick(0, 3) == 0 ? abi::kMapPopulate : 0) |
                         (pick(0, 2) == 0 ? abi::kMapHuge : 0) | (pick(0, 3) == 0 ? abi::kMapNoReplace : 0);
        auto r = mmap(start, len, prot, flags, pick(0, 2) == 0 ? pick(0, 1) : abi::kNodeAny);
        if ((flags & abi::kMapNoReplace) != 0 && any_in(start, len)) {
            ASSERT_FALSE(r.has_value());
            EXPECT_EQ(r.error(), abi::MemError::Exists);
            return;
        }
        ASSERT_TRUE(r.has_value()) << int(r.error());
        ASSERT_EQ(*r, start);
        set_range(start, len, prot);
    }
    void do_mmap_hint() {
        uint64_t hint = abi::kMmapBase + pick(0, kWindowPages - 1) * kPage;
        uint64_t len = random_len();
        uint64_t prot = kProts[pick(0, 4)];
        auto r = mmap(hint, len, prot, pick(0, 3) == 0 ? abi::kMapPopulate : 0);
        ASSERT_TRUE(r.has_value());
        ASSERT_FALSE(any_in(*r, len)) << "mmap returned a range in use";
        ASSERT_GE(*r, abi::kMmapBase);
        if (*r + len > abi::kMmapBase + kWindowPages * kPage) {  // keep the model window bounded
            ASSERT_TRUE(m_as->munmap(Caller{}, *r, len).has_value());
            return;
        }
        set_range(*r, len, prot);
    }
    void do_munmap() {
        uint64_t start = random_page();
        uint64_t len = random_len();
        ASSERT_TRUE(m_as->munmap(Caller{}, start, len).has_value());
        erase_range(start, len);
    }
    void do_mprotect() {
        uint64_t start = random_page();
        uint64_t len = pick(1, 16) * kPage;
        uint64_t prot = kProts[pick(0, 4)];
        bool covered = true;
        for (uint64_t p = start; p < start + len; p += kPage) covered = covered && m_model.count(p) != 0;
        auto r = m_as->mprotect(Caller{}, start, len, prot);
        if (!covered) {
            ASSERT_FALSE(r.has_value());
            EXPECT_EQ(r.error(), abi::MemError::NotMapped);
            return;
        }
        ASSERT_TRUE(r.has_value());
        for (uint64_t p = start; p < start + len; p += kPage) m_model[p].prot = prot;
    }
    void do_brk() {
        uint64_t new_end = abi::kBrkBase + pick(0, kHeapPages * kPage);
        auto r = m_as->brk(Caller{}, new_end);
        ASSERT_TRUE(r.has_value());
        uint64_t old_top = *mm::align_up(m_brk, kPage);
        uint64_t new_top = *mm::align_up(new_end, kPage);
        if (new_top > old_top) set_range(old_top, new_top - old_top, kRW);
        if (new_top < old_top) erase_range(new_top, old_top - new_top);
        m_brk = new_end;
    }
    void do_access() {
        uint64_t page = random_page();
        uint64_t kind = pick(0, 2);
        auto it = m_model.find(page);
        uint64_t value = m_rng();
        AccessKind ak = kind == 0 ? AccessKind::Read : kind == 1 ? AccessKind::Write : AccessKind::Exec;
        uint32_t vcpu = static_cast<uint32_t>(pick(0, 1));
        FaultResult r = access(page, ak, &value, vcpu, vcpu);
        if (it == m_model.end()) {
            ASSERT_EQ(r.kind, FaultResult::Kind::Segv);
            EXPECT_EQ(r.reason, SegvReason::NoArea);
            EXPECT_EQ(r.addr.value(), page);
            return;
        }
        uint64_t need = kind == 0 ? abi::kProtRead : kind == 1 ? abi::kProtWrite : abi::kProtExec;
        if ((it->second.prot & need) == 0) {
            ASSERT_EQ(r.kind, FaultResult::Kind::Segv);
            EXPECT_EQ(r.reason, SegvReason::Protection);
            return;
        }
        ASSERT_TRUE(r.kind == FaultResult::Kind::Mapped || r.kind == FaultResult::Kind::Spurious)
            << "page " << std::hex << page << " kind " << kind << " prot " << it->second.prot << " result "
            << int(r.kind) << " reason " << int(r.reason) << dump_areas();
        if (kind == 1)
            it->second.value = value;
        else
            ASSERT_EQ(value, it->second.value) << "contents of " << std::hex << page;
    }
    std::string dump_areas() {
        std::ostringstream o;
        for (const auto& a : m_as->areas())
            o << "\n  [" << std::hex << a.range.start().value() << ", " << a.range.start().value() + a.range.size()
              << ") flags " << int(a.flags) << " kind " << int(a.backend.kind);
        return o.str();
    }
    // The areas cover exactly the model's pages, with the model's permissions.
    void verify_areas(const char* op) {
        auto it = m_model.begin();
        for (const auto& a : m_as->areas()) {
            uint64_t prot = 0;
            if (mm::has(a.flags, mm::Perm::Read)) prot |= abi::kProtRead;
            if (mm::has(a.flags, mm::Perm::Write)) prot |= abi::kProtWrite;
            if (mm::has(a.flags, mm::Perm::Exec)) prot |= abi::kProtExec;
            for (uint64_t p = a.range.start().value(); p <= a.range.last().value(); p += kPage, ++it) {
                ASSERT_TRUE(it != m_model.end() && it->first == p && it->second.prot == prot)
                    << "areas diverge from the model at " << std::hex << p << " after " << op << dump_areas();
            }
        }
        ASSERT_TRUE(it == m_model.end()) << "model page " << std::hex << it->first << " has no area after " << op;
    }
    // Every present user page is in the model with its contents; no page outside.
    void verify_contents() {
        for (uint64_t base : {abi::kBrkBase, abi::kMmapBase}) {
            uint64_t pages = base == abi::kBrkBase ? kHeapPages : kWindowPages + 1024;
            for (uint64_t p = base; p < base + pages * kPage; p += kPage) {
                auto m = m_as->query(mm::GuestVirtAddr(p));
                if (!m) continue;
                auto it = m_model.find(p);
                ASSERT_NE(it, m_model.end()) << "page " << std::hex << p << " mapped outside every area";
                uint64_t v = 0;
                std::memcpy(&v, m_mem->host_span(m->phys + (p - m->base.value()), 8)->data(), 8);
                ASSERT_EQ(v, it->second.value) << std::hex << p;
            }
        }
    }

    void run(uint64_t seed, int ops) {
        SCOPED_TRACE(pv::test::seed_trace(seed));
        m_rng.seed(seed);
        m_model.clear();
        m_brk = abi::kBrkBase;
        make_space(AddressSpaceConfig{2, static_cast<uint32_t>(pick(0, 1) == 0 ? 1 : 8), 4096});
        m_as->set_shootdown([this] { ++m_shootdowns; });
        for (int i = 0; i < ops; ++i) {
            static const char* const kNames[] = {"mmap fixed", "mmap hint", "munmap", "mprotect", "brk", "access"};
            uint64_t op = std::min<uint64_t>(pick(0, 9), 5);
            switch (op) {
                case 0: do_mmap_fixed(); break;
                case 1: do_mmap_hint(); break;
                case 2: do_munmap(); break;
                case 3: do_mprotect(); break;
                case 4: do_brk(); break;
                default: do_access(); break;
            }
            if (HasFatalFailure()) return;
            verify_areas(kNames[op]);
            if (HasFatalFailure()) return;
            ASSERT_TRUE(m_as->check_invariants()) << "after op " << i;
            if (i % 200 == 0) verify_contents();
        }
        verify_contents();
        ASSERT_TRUE(m_as->munmap(Caller{}, abi::kMmapBase, abi::kUserTop - abi::kMmapBase).has_value());
        ASSERT_TRUE(m_as->brk(Caller{}, abi::kBrkBase).has_value());
        EXPECT_EQ(m_frames.used(), m_as->stats().provider_tables) << "every data frame returned";
    }
};

TEST_F(ModelTest, RandomCallsAndAccessesMatchTheModel) {
    for (uint64_t round = 0; round < 3; ++round) {
        run(pv::test::test_seed(0x6a7a + round), 1000);
        if (HasFatalFailure()) return;
    }
}

}  // namespace
}  // namespace pv::paging::test
