// Test support for vmm/paging: a fake frame source over part of a real
// GuestMemory, and a software "CPU" that accesses guest-virtual memory the way
// hardware would (walk the page table, fault, retry).
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/paging/address_space.h"

namespace pv::paging::test {

inline constexpr uint64_t kMiB = 1ULL << 20;
inline constexpr uint64_t kPage = mm::kPageSize;
inline constexpr uint64_t k2M = 2 * kMiB;

struct FakeGrant {
    mm::GuestFrame frame;
    uint32_t node;
};

// Frames [first, first + count) split evenly between `nodes` nodes; `quota` caps
// the frames in use (OOM tests). Detects double and mismatched frees. Thread-safe
// (one mutex): vCPU threads of the address space allocate concurrently.
class FakeFrames {
public:
    FakeFrames(uint64_t first, uint64_t count, uint32_t nodes)
        : m_first(first), m_count(count), m_nodes(nodes), m_state(count, kFree), m_next(nodes, 0) {}

    mm::Result<FakeGrant> alloc(uint32_t, uint32_t node) {
        std::lock_guard guard(m_lock);
        if (node >= m_nodes || m_used + 1 > m_quota) return mm::err(mm::Error::NoMemory);
        uint64_t begin = node_begin(node), n = node_begin(node + 1) - begin;
        for (uint64_t k = 0; k < n; ++k) {  // next fit from the last hand-out
            uint64_t i = begin + (m_next[node] + k) % n;
            if (m_state[i] != kFree) continue;
            m_state[i] = kSingle;
            m_next[node] = i - begin + 1;
            ++m_used;
            return FakeGrant{mm::GuestFrame(m_first + i), node};
        }
        return mm::err(mm::Error::NoMemory);
    }
    mm::Result<FakeGrant> alloc_contiguous(uint32_t node, size_t n, size_t align) {
        std::lock_guard guard(m_lock);
        if (node >= m_nodes || m_used + n > m_quota || !m_allow_contiguous) return mm::err(mm::Error::NoMemory);
        for (uint64_t i = node_begin(node); i + n <= node_begin(node + 1); ++i) {
            if ((m_first + i) % align != 0 || !range_free(i, n)) continue;
            for (uint64_t k = 0; k < n; ++k) m_state[i + k] = k == 0 ? kHead : kBody;
            m_used += n;
            return FakeGrant{mm::GuestFrame(m_first + i), node};
        }
        return mm::err(mm::Error::NoMemory);
    }
    mm::Status free(uint32_t, mm::GuestFrame f) {
        std::lock_guard guard(m_lock);
        uint64_t i = f.number() - m_first;
        if (f.number() < m_first || i >= m_count || m_state[i] != kSingle) {
            ++m_bad_frees;
            return mm::err(mm::Error::NotAllocated);
        }
        m_state[i] = kFree;
        --m_used;
        return mm::ok();
    }
    mm::Status free_contiguous(mm::GuestFrame f, size_t n) {
        std::lock_guard guard(m_lock);
        uint64_t i = f.number() - m_first;
        if (f.number() < m_first || i + n > m_count || m_state[i] != kHead) {
            ++m_bad_frees;
            return mm::err(mm::Error::NotAllocated);
        }
        for (uint64_t k = 0; k < n; ++k) m_state[i + k] = kFree;
        m_used -= n;
        return mm::ok();
    }

    mm::Result<uint32_t> claim(mm::GuestFrame f, size_t n) {
        std::lock_guard guard(m_lock);
        uint64_t i = f.number() - m_first;
        if (n == 0 || f.number() < m_first || i >= m_count || n > m_count - i) return mm::err(mm::Error::OutOfRange);
        uint32_t node = node_of(f);
        if (node_of(f + (n - 1)) != node) return mm::err(mm::Error::OutOfRange);
        if (m_used + n > m_quota) return mm::err(mm::Error::NoMemory);
        if (!range_free(i, n)) return mm::err(mm::Error::AlreadyExists);
        for (uint64_t k = 0; k < n; ++k) m_state[i + k] = n == 1 ? kSingle : k == 0 ? kHead : kBody;
        m_used += n;
        return node;
    }

    [[nodiscard]] uint64_t used() const {
        std::lock_guard guard(m_lock);
        return m_used;
    }
    [[nodiscard]] uint64_t bad_frees() const {
        std::lock_guard guard(m_lock);
        return m_bad_frees;
    }
    void set_quota(uint64_t q) {
        std::lock_guard guard(m_lock);
        m_quota = q;
    }
    void allow_contiguous(bool on) {
        std::lock_guard guard(m_lock);
        m_allow_contiguous = on;
    }
    [[nodiscard]] uint32_t node_of(mm::GuestFrame f) const {
        return static_cast<uint32_t>((f.number() - m_first) / (m_count / m_nodes));
    }

private:
    enum : uint8_t { kFree, kSingle, kHead, kBody };
    [[nodiscard]] uint64_t node_begin(uint32_t node) const { return m_count / m_nodes * node; }
    [[nodiscard]] bool range_free(uint64_t i, uint64_t n) const {
        for (uint64_t k = 0; k < n; ++k)
            if (m_state[i + k] != kFree) return false;
        return true;
    }
    mutable std::mutex m_lock;
    uint64_t m_first, m_count;
    uint32_t m_nodes;
    std::vector<uint8_t> m_state;
    std::vector<uint64_t> m_next;  // per node: where the next single-frame search starts
    uint64_t m_used = 0;
    uint64_t m_quota = UINT64_MAX;
    uint64_t m_bad_frees = 0;
    bool m_allow_contiguous = true;
};
static_assert(FrameSource<FakeFrames>);

// 64 MiB of guest RAM; frames for the address space from [32 MiB, 64 MiB), two nodes.
class PagingTest : public ::testing::Test {
protected:
    static constexpr uint64_t kRam = 64 * kMiB;
    static constexpr uint64_t kFirstFrame = 32 * kMiB / kPage;
    static constexpr uint64_t kFrames = 32 * kMiB / kPage;

    void SetUp() override { make_space(AddressSpaceConfig{2, 1, 4096}); }
    void TearDown() override {
        if (m_as) {
            EXPECT_TRUE(m_as->check_invariants());
            m_as.reset();
            EXPECT_EQ(m_frames.used(), 0U) << "frames leaked";
            EXPECT_EQ(m_frames.bad_frees(), 0U);
        }
    }

    void make_space(AddressSpaceConfig cfg) {
        m_as.reset();
        if (!m_mem) {
            auto mem = memory::GuestMemory::create(kRam);
            ASSERT_TRUE(mem.has_value());
            m_mem = std::make_unique<memory::GuestMemory>(std::move(*mem));
        }
        auto as = GuestAddressSpace::create(cfg, access(), m_provider, nullptr, std::nullopt);
        ASSERT_TRUE(as.has_value()) << as.error().message;
        m_as = std::move(*as);
        m_as->set_shootdown([this] { ++m_shootdowns; });
    }
    HostAccess access() {
        return [mem = m_mem.get()](mm::GuestPhysAddr gpa, uint64_t len) { return mem->host_span(gpa, len); };
    }

    // Reads/writes through the page table like a CPL3 access, faulting as needed.
    // Returns the fault that stopped the access (Segv/OOM), or Mapped/Spurious on success.
    FaultResult access(uint64_t gva, AccessKind kind, uint64_t* value, uint32_t vcpu = 0, uint32_t node = 0) {
        mm::GuestVirtAddr va(gva);
        FaultResult last = FaultResult::spurious();
        for (int attempt = 0; attempt < 3; ++attempt) {
            auto m = m_as->query(va);
            mm::Perm need = kind == AccessKind::Write  ? mm::Perm::Write
                            : kind == AccessKind::Exec ? mm::Perm::Exec
                                                       : mm::Perm::Read;
            if (m && mm::has(m->perm, need | mm::Perm::User)) {
                auto span = m_mem->host_span(m->phys + (va - m->base), 8);
                EXPECT_TRUE(span.has_value());
                if (kind == AccessKind::Write)
                    std::memcpy(span->data(), value, 8);
                else
                    std::memcpy(value, span->data(), 8);
                return last;
            }
            uint64_t ec = kPfUser | (m ? kPfPresent : 0) | (kind == AccessKind::Write ? kPfWrite : 0) |
                          (kind == AccessKind::Exec ? kPfFetch : 0);
            last = m_as->handle_fault(va, ec, vcpu, node);
            if (last.kind == FaultResult::Kind::Segv || last.kind == FaultResult::Kind::OutOfMemory) return last;
        }
        ADD_FAILURE() << "access did not converge at " << std::hex << gva;
        return last;
    }
    bool write(uint64_t gva, uint64_t v, uint32_t vcpu = 0) {
        auto r = access(gva, AccessKind::Write, &v, vcpu);
        return r.kind == FaultResult::Kind::Mapped || r.kind == FaultResult::Kind::Spurious;
    }
    std::optional<uint64_t> read(uint64_t gva, uint32_t vcpu = 0) {
        uint64_t v = 0;
        auto r = access(gva, AccessKind::Read, &v, vcpu);
        if (r.kind == FaultResult::Kind::Mapped || r.kind == FaultResult::Kind::Spurious) return v;
        return std::nullopt;
    }

    MemResult mmap(uint64_t hint, uint64_t len, uint64_t prot, uint64_t flags, uint64_t node = abi::kNodeAny) {
        return m_as->mmap(Caller{0, 0}, hint, len, prot, flags, node);
    }

    FakeFrames m_frames{kFirstFrame, kFrames, 2};
    FrameSourceAdapter<FakeFrames> m_provider{m_frames, 2, kRam / kPage};
    std::unique_ptr<memory::GuestMemory> m_mem;
    std::unique_ptr<GuestAddressSpace> m_as;
    uint64_t m_shootdowns = 0;
};

inline constexpr uint64_t kRW = abi::kProtRead | abi::kProtWrite;

}  // namespace pv::paging::test
