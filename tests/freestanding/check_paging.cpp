// Freestanding use of mm/paging: a PageTable over a static array of frames.
#include "mm/paging/page_table.h"
#include "mm/paging/pte.h"

int pv_freestanding_main();

namespace {

// 32 table frames at guest frame 0x200, bump allocation with a free stack.
class StaticTableMemory {
public:
    static constexpr mm::size_t kFrames = 32;
    static constexpr mm::uint64_t kBase = 0x200;

    mm::Result<mm::uint64_t*> table(mm::GuestFrame f) const {
        if (f.number() < kBase || f.number() - kBase >= kFrames) return mm::err(mm::Error::OutOfRange);
        return const_cast<mm::uint64_t*>(m_frames[f.number() - kBase]);
    }
    mm::Result<mm::GuestFrame> alloc_table() {
        if (m_free_count == 0 && m_next == kFrames) return mm::err(mm::Error::NoMemory);
        mm::size_t i = m_free_count > 0 ? m_free[--m_free_count] : m_next++;
        for (auto& w : m_frames[i]) w = 0;
        ++m_live;
        return mm::GuestFrame(kBase + i);
    }
    void free_table(mm::GuestFrame f) {
        m_free[m_free_count++] = f.number() - kBase;
        --m_live;
    }
    [[nodiscard]] mm::size_t live() const { return m_live; }

private:
    alignas(4096) mm::uint64_t m_frames[kFrames][mm::x86::kEntriesPerTable] = {};
    mm::size_t m_free[kFrames] = {};
    mm::size_t m_free_count = 0;
    mm::size_t m_next = 0;
    mm::size_t m_live = 0;
};

StaticTableMemory g_mem;

int run() {
    using namespace mm;
    using x86::PageTable;
    auto created = PageTable<StaticTableMemory>::try_create(&g_mem);
    if (!created) return 1;
    auto pt = *created;
    if (!pt.map(GuestVirtAddr(0x40'0000), GuestPhysAddr(0x1000), PageSize::Size4K, kPermRW)) return 2;
    if (!pt.map_region(GuestVirtRange::from_start_size(GuestVirtAddr(0x4000'0000), 0x4000'0000 + 0x40'0000),
                       GuestPhysAddr(0x8000'0000), kPermRX, true))
        return 3;
    auto t = pt.translate(GuestVirtAddr(0x4000'1234));
    if (!t || t->value() != 0x8000'1234) return 4;
    if (!pt.unmap_region(GuestVirtRange::from_start_size(GuestVirtAddr(0x4010'0000), 0x1000))) return 5;
    if (!pt.protect_region(GuestVirtRange::from_start_size(GuestVirtAddr(0x8000'0000), 0x20'0000), kPermRW)) return 6;
    auto q = pt.query(GuestVirtAddr(0x4010'0000));
    if (q || q.error() != Error::NotFound) return 7;
    if (!pt.clear_accessed(GuestVirtAddr(0x40'0000))) return 8;
    size_t n = 0;
    if (!pt.for_each_mapping(GuestVirtRange::from_start_size(GuestVirtAddr(0), UINT64_MAX), [&n](const x86::Mapping&) {
            ++n;
            return true;
        }))
        return 9;
    if (!pt.check_invariants()) return 10;
    auto adopted = PageTable<StaticTableMemory>::adopt(&g_mem, pt.root());
    if (!adopted.query(GuestVirtAddr(0x40'0000))) return 11;
    x86::PdEntry e = x86::PdEntry::make_leaf(GuestPhysAddr(0x20'0000), kPermRW);
    if (!e.is_leaf() || e.split_child(3).phys().value() != 0x20'3000) return 12;
    // install: only where nothing is mapped, never replacing a present entry.
    if (!pt.install(GuestVirtAddr(0x7f00'0000'0000), GuestPhysAddr(0x5000), PageSize::Size4K, kPermRW)) return 14;
    auto again = pt.install(GuestVirtAddr(0x7f00'0000'0000), GuestPhysAddr(0x6000), PageSize::Size4K, kPermRW);
    if (again || again.error() != Error::AlreadyExists) return 15;
    auto kept = pt.translate(GuestVirtAddr(0x7f00'0000'0000));
    if (!kept || kept->value() != 0x5000 || !pt.check_invariants()) return 16;
    pt.destroy();
    return g_mem.live() == 0 && n == 1 + 2 + 511 + 511 ? 0 : 13;
}

}  // namespace

// runtime.cpp's entry point is reached with the kernel's 16-byte aligned stack, not the
// ABI's (16n + 8 at a call), so SSE spills of the 16-byte-aligned locals used here would
// fault if the check is ever run; realign at this boundary.
__attribute__((force_align_arg_pointer)) int pv_freestanding_main() { return run(); }
