// Freestanding use of the frame allocator with a trivial spinlock (as the guest would).
#include "mm/frames.h"

int pv_freestanding_main();

namespace {

class SpinLock {
public:
    void lock() {
        while (__atomic_exchange_n(&m_held, true, __ATOMIC_ACQUIRE)) {
        }
    }
    void unlock() { __atomic_store_n(&m_held, false, __ATOMIC_RELEASE); }

private:
    bool m_held = false;
};

using Frames = mm::FrameAllocator<SpinLock>;
constexpr uint32_t kNodes = 2;
constexpr uint32_t kCpus = 2;
constexpr uint64_t kFramesPerNode = 1024;
alignas(64) std::byte g_meta[Frames::metadata_bytes(kNodes, kCpus, kFramesPerNode)];
Frames g_frames;

bool setup() {
    if (!g_frames.init(std::span(g_meta), kNodes, kCpus)) return false;
    if (g_frames.frames_per_node_capacity() < kFramesPerNode) return false;
    if (!g_frames.add_range(0, mm::GuestFrameRange{mm::GuestFrame(0x100), 512})) return false;
    if (!g_frames.add_range(1, mm::GuestFrameRange{mm::GuestFrame(0x1000), 512})) return false;
    if (g_frames.add_range(1, mm::GuestFrameRange{mm::GuestFrame(0x2ff), 2}).error() != mm::Error::MemoryOverlap)
        return false;
    mm::FrameNodeConfig config;
    config.fallback[0] = 1;
    config.fallback_count = 1;
    config.may_fall_back = true;
    return g_frames.configure(0, config).has_value();
}

bool exercise() {
    mm::GuestFrame got[600];
    for (auto& f : got) {  // more than node 0 has: the rest falls back to node 1
        auto r = g_frames.alloc(0, 0);
        if (!r) return false;
        f = r->frame;
    }
    if (g_frames.stats(1).fallback_allocs != 600 - 512) return false;
    auto huge = g_frames.alloc_contiguous(1, 256, 256);
    if (!huge || huge->frame.number() % 256 != 0 || huge->node != 1) return false;
    for (auto f : got)
        if (!g_frames.free(1, f)) return false;
    if (g_frames.free(1, got[0]).error() != mm::Error::NotAllocated) return false;
    if (!g_frames.free_contiguous(huge->frame, 256)) return false;
    g_frames.drain(1);
    auto s0 = g_frames.stats(0);
    auto s1 = g_frames.stats(1);
    return s0.used_frames == 0 && s0.free_frames == 512 && s1.used_frames == 0 && s1.cached_frames == 0 &&
           g_frames.check_invariants();
}

}  // namespace

int pv_freestanding_main() { return setup() && exercise() ? 0 : 1; }
