// hello: every vCPU prints a line and takes a shared spinlock kLockRounds
// times; vCPU 0 waits for all of them, checks the lock lost no increment,
// reports what it saw (computed with mm/ address types) and exits 0.
#include "guest/programs/programs.h"
#include "guest/rt/console.h"
#include "guest/rt/report.h"
#include "guest/rt/runtime.h"
#include "guest/rt/sync.h"
#include "mm/addr.h"

namespace pv::guest {

namespace {

Atomic<uint32_t> g_said_hello{0};
Atomic<uint32_t> g_at_start_line{0};

// A plain counter that only the lock protects: a broken SpinLock loses increments.
constexpr uint64_t kLockRounds = 10000;
SpinLock g_lock;
uint64_t g_locked_count = 0;

// All vCPUs start together (the hypercalls before this desynchronise them), so
// that they really contend.
void contend_for_lock(uint32_t vcpus) {
    g_at_start_line.fetch_add(1);
    while (g_at_start_line.load(MemoryOrder::Acquire) < vcpus) cpu_relax();
    for (uint64_t i = 0; i < kLockRounds; ++i) {
        LockGuard<SpinLock> guard(g_lock);
        ++g_locked_count;
    }
}

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

// FNV-1a 64 over a guest-virtual range, walked page by page: each step hashes
// the part of one page that lies inside the range (Range::intersect).
uint64_t checksum(mm::GuestVirtRange r) {
    uint64_t h = kFnvOffset;
    if (r.is_empty()) return h;
    const mm::GuestVirtAddr last_page = r.last().page_base();
    for (mm::GuestVirtAddr page = r.start().page_base();; page += mm::kPageSize) {
        auto part = mm::GuestVirtRange::from_start_size(page, mm::kPageSize).intersect(r);
        const auto* p = reinterpret_cast<const unsigned char*>(part.start().value());
        for (uint64_t i = 0; i < part.size(); ++i) h = (h ^ p[i]) * kFnvPrime;
        if (page == last_page) break;
    }
    return h;
}

// Whole 4 KiB frames inside [start, end): what a frame allocator could use.
uint64_t whole_frames(uint64_t start, uint64_t end) {
    auto r = mm::GuestPhysRange::from_bounds(mm::GuestPhysAddr(start), mm::GuestPhysAddr(end));
    if (!r || r->is_empty()) return 0;
    auto first = r->start().align_up(mm::kPageSize);
    auto limit = mm::GuestPhysAddr(end).align_down(mm::kPageSize);
    if (!first || *first >= limit) return 0;
    return mm::GuestFrame::containing(limit) - mm::GuestFrame::containing(*first);
}

mm::GuestVirtRange symbol_range(const char* start, const char* end) {
    auto r = mm::GuestVirtRange::from_bounds(mm::GuestVirtAddr(reinterpret_cast<uint64_t>(start)),
                                             mm::GuestVirtAddr(reinterpret_cast<uint64_t>(end)));
    return r ? *r : mm::GuestVirtRange();
}

int64_t report_hello(const abi::BootInfo& boot) {
    mm::GuestVirtRange user_image = symbol_range(pv_user_start, pv_image_end);
    Report<8> report;
    report.add_u64("hello.lock_count", g_locked_count);
    report.add_u64("hello.vcpus", boot.vcpu_count);
    report.add_u64("hello.abi_version", boot.abi_version);
    report.add_u64("hello.ram_mib", boot.ram_size >> 20);
    report.add_u64("hello.free_pages", whole_frames(boot.free_ram_start, boot.free_ram_end));
    report.add_u64("hello.image_pages", user_image.size() / mm::kPageSize);
    report.add_u64("hello.checksum", checksum(symbol_range(pv_rodata_start, pv_rodata_end)));
    return report.send();
}

}  // namespace

int64_t run_hello(uint32_t vcpu, const abi::BootInfo& boot) {
    printf("hello from vCPU %u of %u\n", vcpu, boot.vcpu_count);
    contend_for_lock(boot.vcpu_count);
    g_said_hello.fetch_add(1, MemoryOrder::Release);
    if (vcpu != 0) vcpu_stop();

    while (g_said_hello.load(MemoryOrder::Acquire) < boot.vcpu_count) cpu_relax();
    if (g_locked_count != kLockRounds * boot.vcpu_count) {
        printf("hello: the spinlock lost increments: %lu of %lu\n", g_locked_count, kLockRounds * boot.vcpu_count);
        return 1;
    }
    int64_t sent = report_hello(boot);
    if (sent < 0) {
        printf("hello: the report was rejected (%s)\n", hc_error_name(sent));
        return 1;
    }
    printf("hello: all %u vCPUs said hello; report of %ld fields sent\n", boot.vcpu_count, sent);
    return 0;
}

}  // namespace pv::guest
