// fuzz_pagetable: the x86-64 page-table walker over arbitrary table contents.
//
// Input byte 0 picks the mode:
//  - even: mm::x86::PageTable over a small fake TableMemory (1..16 tables, all
//    of whose entries the input may set), adopted at a root the input picks
//    (possibly outside table memory). Queries, translate, bounded
//    for_each_mapping, then edits (map, unmap_region, protect_region,
//    clear_accessed) on the garbage: edits may fail, never crash, and never
//    hand M::free_table a frame outside table memory.
//  - odd: the VMM's own PageTableGuestAccess (vmm/run/guest_access.h) over a
//    real GuestMemory (48 MiB, created once) and its TablePool, pool tables
//    filled from the input; resolve() of input ranges. Every span it returns
//    lies inside a guest RAM region: translation never touches host memory
//    outside guest RAM.
// Both: walks never loop (libFuzzer's -timeout catches a hang), a successful
// query returns an aligned page containing the address.
#include <array>
#include <memory>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "mm/paging/page_table.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/run/guest_access.h"
#include "vmm/x86/table_pool.h"

namespace {

using pv::fuzz::ByteReader;
constexpr uint64_t kPage = 0x1000;
constexpr uint64_t kFakeFirstFrame = 0x100;
constexpr size_t kFakeSpare = 8;  // tables alloc_table may hand out (splits, new subtrees)

class FakeTables {
public:
    explicit FakeTables(size_t n) : m_tables(n + kFakeSpare), m_used(n + kFakeSpare, false) {
        for (size_t i = 0; i < n; ++i) m_used[i] = true;
    }
    [[nodiscard]] mm::Result<uint64_t*> table(mm::GuestFrame f) const {
        if (!inside(f)) return mm::err(mm::Error::OutOfRange);
        return const_cast<uint64_t*>(m_tables[f.number() - kFakeFirstFrame].data());
    }
    mm::Result<mm::GuestFrame> alloc_table() {
        for (size_t i = 0; i < m_used.size(); ++i) {
            if (m_used[i]) continue;
            m_used[i] = true;
            m_tables[i].fill(0);
            return mm::GuestFrame(kFakeFirstFrame + i);
        }
        return mm::err(mm::Error::NoMemory);
    }
    void free_table(mm::GuestFrame f) {
        PV_FUZZ_CHECK(inside(f), "free_table of a frame outside table memory: " + std::to_string(f.number()));
        m_used[f.number() - kFakeFirstFrame] = false;
    }
    std::array<uint64_t, 512>& at(size_t i) { return m_tables[i]; }

private:
    [[nodiscard]] bool inside(mm::GuestFrame f) const {
        return f.number() >= kFakeFirstFrame && f.number() - kFakeFirstFrame < m_tables.size();
    }
    std::vector<std::array<uint64_t, 512>> m_tables;
    std::vector<bool> m_used;
};

// An entry value: mostly "present, pointing at table k" with input flags, so walks go deep.
uint64_t take_entry(ByteReader& in, uint64_t first_frame, uint64_t n_frames) {
    uint8_t tag = in.byte();
    uint8_t flags = in.byte();
    switch (tag % 4) {
        case 0:
        case 1: {
            uint64_t frame = first_frame + in.byte() % (n_frames + 2);    // +2: just outside
            return (frame << 12) | flags | (uint64_t(tag & 0x80) << 56);  // bit 63: NX
        }
        case 2: return (in.u64() & 0x000f'ffff'ffe0'0000ULL) | flags | 0x80;  // huge leaf, sometimes misaligned
        default: return in.u64();
    }
}

uint64_t canonical(uint64_t lin) { return (lin & (1ULL << 47)) ? (lin | 0xffff'0000'0000'0000ULL) : lin; }

// An address: table indices from the input (so it reaches the entries written) or raw.
uint64_t take_address(ByteReader& in) {
    uint8_t tag = in.byte();
    if (tag % 8 == 7) return in.u64();
    uint64_t lin = 0;
    for (int level = 0; level < 4; ++level) lin = (lin << 9) | (in.take<uint16_t>() % 512);
    return canonical((lin << 12) | (in.take<uint16_t>() % kPage));
}

void check_mapping(const mm::x86::Mapping& m, uint64_t va) {
    const uint64_t size = mm::bytes(m.size);
    PV_FUZZ_CHECK(m.base.value() % size == 0 && m.phys.value() % size == 0, "mapping not aligned to its size");
    PV_FUZZ_CHECK(va >= m.base.value() && va - m.base.value() < size, "mapping does not contain the address");
}

void fuzz_fake(ByteReader& in) {
    const size_t n = 1 + in.byte() % 16;
    FakeTables mem(n);
    for (unsigned writes = in.byte(); writes > 0; --writes) {
        auto& t = mem.at(in.byte() % n);
        uint16_t slot = in.take<uint16_t>() % 512;
        t[slot] = take_entry(in, kFakeFirstFrame, n);
    }
    auto pt = mm::x86::PageTable<FakeTables>::adopt(&mem, mm::GuestFrame(kFakeFirstFrame + in.byte() % (n + 1)));
    (void)pt.check_invariants();
    for (unsigned step = 0; !in.empty() && step < 64; ++step) {
        const uint8_t op = in.byte();
        const uint64_t va = take_address(in);
        switch (op % 8) {
            case 0:
            case 1:
            case 2: {
                auto m = pt.query(mm::GuestVirtAddr(va));
                if (m) check_mapping(*m, va);
                break;
            }
            case 3: {  // bounded so that shared subtables cannot make one step enumerate 2^36 leaves
                uint64_t len = 1 + (in.u64() & ((1ULL << 31) - 1));
                auto range = mm::GuestVirtRange::try_create(mm::GuestVirtAddr(va), len);
                if (!range) break;
                unsigned visits = 0;
                (void)pt.for_each_mapping(*range, [&](const mm::x86::Mapping&) { return ++visits < 4096; });
                break;
            }
            case 4: (void)pt.clear_accessed(mm::GuestVirtAddr(va)); break;
            case 5: {
                constexpr mm::PageSize kSizes[] = {mm::PageSize::Size4K, mm::PageSize::Size2M, mm::PageSize::Size1G,
                                                   mm::PageSize(0x3000)};
                const mm::PageSize size = kSizes[in.byte() % 4];
                (void)pt.map(mm::GuestVirtAddr(va & ~(kPage - 1)), mm::GuestPhysAddr(in.u64() & 0xffff'f000), size,
                             mm::Perm::Read | mm::Perm(in.byte() & 0xe));
                break;
            }
            case 6: {
                auto range = mm::GuestVirtRange::try_create(mm::GuestVirtAddr(va & ~(kPage - 1)),
                                                            (in.take<uint32_t>() & 0x3fff) * kPage);
                if (range) (void)pt.unmap_region(*range);
                break;
            }
            default: {
                auto range = mm::GuestVirtRange::try_create(mm::GuestVirtAddr(va & ~(kPage - 1)),
                                                            (in.take<uint32_t>() & 0x3fff) * kPage);
                if (range) (void)pt.protect_region(*range, mm::Perm::Read | mm::Perm(in.byte() & 0xe));
                break;
            }
        }
    }
}

struct RealGuest {
    pv::memory::GuestMemory mem;
    pv::x86::TablePool pool;
    explicit RealGuest(pv::memory::GuestMemory m) : mem(std::move(m)), pool(mem) {}
};

RealGuest& real_guest() {
    static std::unique_ptr<RealGuest> guest = [] {
        auto mem = pv::memory::GuestMemory::create(pv::layout::kMinRamSize);
        PV_FUZZ_CHECK(mem.has_value(), "GuestMemory::create failed");
        return std::make_unique<RealGuest>(std::move(*mem));
    }();
    return *guest;
}

bool inside_ram(const pv::memory::GuestMemory& mem, std::span<std::byte> s) {
    for (const auto& r : mem.regions()) {
        if (s.data() >= r.host && s.size() <= r.gpa.size() &&
            s.data() - r.host <= std::ptrdiff_t(r.gpa.size() - s.size()))
            return true;
    }
    return false;
}

void fuzz_real(ByteReader& in) {
    RealGuest& g = real_guest();
    constexpr uint64_t kPoolFirst = pv::layout::kPageTablePoolAddr / kPage;
    const uint64_t n = 1 + in.byte() % 16;  // tables the input uses: the pool's first n frames
    std::vector<uint64_t*> tables;
    for (uint64_t i = 0; i < n; ++i) {
        auto t = g.pool.table(mm::GuestFrame(kPoolFirst + i));
        PV_FUZZ_CHECK(t.has_value(), "pool frame not reachable");
        std::memset(*t, 0, kPage);
        tables.push_back(*t);
    }
    for (unsigned writes = in.byte(); writes > 0; --writes) {
        uint64_t* t = tables[in.byte() % n];
        t[in.take<uint16_t>() % 512] = take_entry(in, kPoolFirst, n);
    }
    auto pt = pv::x86::GuestPageTable::adopt(&g.pool, mm::GuestFrame(kPoolFirst + in.byte() % (n + 1)));
    pv::run::PageTableGuestAccess access(g.mem, pt);
    for (unsigned step = 0; !in.empty() && step < 32; ++step) {
        const uint64_t va = take_address(in);
        const uint64_t len = in.take<uint32_t>() & 0xff'ffff;  // up to 16 MiB
        const bool write = (in.byte() & 1) != 0;
        auto spans = access.resolve(mm::GuestVirtAddr(va), len, write);
        if (!spans) {
            PV_FUZZ_CHECK(spans.error().kind == pv::ErrorKind::GuestFault, spans.error().message);
            continue;
        }
        uint64_t total = 0;
        for (auto s : *spans) {
            PV_FUZZ_CHECK(inside_ram(g.mem, s), "resolve returned a span outside guest RAM");
            total += s.size();
        }
        PV_FUZZ_CHECK(total == len, "resolve spans do not cover the range");
        auto m = pt.query(mm::GuestVirtAddr(va));
        if (m) check_mapping(*m, va);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    ByteReader in(data, size);
    if (in.byte() & 1)
        fuzz_real(in);
    else
        fuzz_fake(in);
    return 0;
}
