// FrameAllocator: the guest-physical frame allocator of a guest's NUMA nodes,
// with per-vCPU caches in front of per-node locked pools.
//
// What it is: for each guest node, a pool (a PageAlloc, by default
// BitmapPageAllocator<GuestPhysAddr>) over the node's frame ranges (add_range),
// a configuration (quota, fallback order: configure) and, for each (cpu, node),
// a cache of up to kCacheFrames free frames. alloc(cpu, node) takes a frame
// from cpu's cache for node without a lock, refills the cache in batches of
// kBatch under the node lock, then tries the fallback nodes in order (if the
// node may fall back), else fails with NoMemory. The caller chooses the node;
// this class only applies the fallback order. Frames are NOT zeroed here: the
// caller zeroes through its own access to guest memory.
//
// Frame states, per node: in guest use ("used": handed out by alloc or
// alloc_contiguous, not yet freed), cached (free, in some cpu's cache) or free
// (in the pool). A per-node bitmap holds one "in use" bit per frame, set on
// every hand-out and cleared on every free (cached frames are free), so a double
// free or a free of a frame never handed out is always NotAllocated, also when
// the two frees race on different CPUs: the bit is changed with one atomic
// read-modify-write, the only atomic RMW of the fast path.
//
// Quota: a node's quota bounds its used frames (frames handed to the guest,
// cached frames do not count). A node with a quota is served entirely under
// its lock, so the bound is exact; its cached frames (cached before the quota
// was set) return to the pool at the owning cpu's next call for that node.
// Nodes without a quota (quota_frames == 0, the default) get the cache fast path.
//
// Threads (the caller's contract):
//   init, add_range             setup only: not concurrent with any other call.
//   alloc(cpu), free(cpu),      only from the thread that owns `cpu` (one thread
//   drain(cpu)                  per cpu id at a time): the cache of cpu is
//                               touched without a lock or atomic.
//   alloc_contiguous,           any thread (node locks).
//   free_contiguous, configure
//   stats                       any thread, any time: relaxed reads, so under
//                               concurrent use a snapshot may be off by the
//                               operations in flight (exact when quiescent).
//   check_invariants            quiescent only.
// A quota set while other cpus are mid-operation on the node may be exceeded by
// the operations already in flight (at most one frame per cpu).
//
// Caches hold frames other cpus cannot see: NoMemory (or a fallback) can occur
// while other cpus' caches hold up to kCacheFrames frames each of the node;
// stats report them as cached and drain(cpu) returns them.
//
// Invariants (check_invariants), per node: total = used + cached + free; the
// pool's allocated pages are exactly the used and cached frames; a cached frame
// is in its node's ranges, not in use, and in one cache once; the in-use bits
// outside the node's ranges are 0; ranges of all nodes are disjoint and sorted.
//
// Errors:
//   AlreadyInitialized  init twice
//   BadState            any call before init
//   InvalidParam        nodes/cpus 0 or above kMaxNodes/kMaxCpus; a node or cpu
//                       id out of range; an empty or wrapping frame range; a bad
//                       configuration (fallback to itself, twice, or to no node);
//                       frames 0 or align not a power of two
//   NoMemory            metadata too small (init), a node's range table or frame
//                       capacity full (add_range), no frame on the node nor on
//                       its fallbacks, or the quota reached (alloc*)
//   MemoryOverlap       add_range overlapping a range of any node
//   NotAllocated        free of a frame that is not in use (double free, never
//                       handed out, or outside every range); free_contiguous
//                       of a run not wholly in use or not in one node's ranges
#pragma once

#include "mm/addr.h"
#include "mm/alloc/allocator.h"
#include "mm/alloc/bitmap.h"
#include "mm/frames_detail.h"
#include "mm/result.h"
#include "mm/std.h"

namespace mm {

inline constexpr uint32_t kMaxFrameNodes = 64;

// Frames [first, first + count) of the guest-physical space.
struct GuestFrameRange {
    GuestFrame first;
    uint64_t count = 0;

    // InvalidParam unless r is page aligned and not empty.
    static constexpr Result<GuestFrameRange> from_phys(GuestPhysRange r) {
        if (r.is_empty() || !r.is_aligned(kPageSize)) return err(Error::InvalidParam);
        return GuestFrameRange{GuestFrame::containing(r.start()), r.size() >> kPageShift};
    }
    [[nodiscard]] constexpr bool contains(GuestFrame f) const { return f.number() - first.number() < count; }
};

// Configuration of one node: fallback order (used only when may_fall_back),
// and a quota of used frames (0 = no limit beyond the node's frames).
struct FrameNodeConfig {
    uint32_t fallback[kMaxFrameNodes] = {};
    uint32_t fallback_count = 0;
    uint64_t quota_frames = 0;
    bool may_fall_back = false;
};

// A frame, and the node whose pool paid for it.
struct FrameGrant {
    GuestFrame frame;
    uint32_t node = 0;
};

struct FrameNodeStats {
    uint64_t total_frames = 0;     // in the node's ranges
    uint64_t used_frames = 0;      // handed out, not freed
    uint64_t cached_frames = 0;    // free, in per-cpu caches
    uint64_t free_frames = 0;      // free, in the pool
    uint64_t quota_frames = 0;     // 0 = none
    uint64_t fallback_allocs = 0;  // frames this node paid for requests preferring another node
    uint64_t refusals = 0;         // alloc calls preferring this node that failed with NoMemory
    uint64_t quota_refusals = 0;   // times the quota stopped this node from paying
};

// A BasicLockable lock, constructed in the metadata (so default constructible).
template <class L>
concept FrameLock = std::default_initializable<L> && requires(L& l) {
    l.lock();
    l.unlock();
};

// A page allocator over guest-physical 4 KiB pages with metadata handed in.
template <class P>
concept FramePool = PageAllocator<P> && std::default_initializable<P> &&
                    std::same_as<typename P::Address, GuestPhysAddr> &&
                    P::kPageSize == kPageSize&& requires(P p, std::span<std::byte> meta, size_t n) {
    { P::metadata_bytes(n, n) } -> std::convertible_to<size_t>;
    { p.init(meta, n) } -> std::same_as<Status>;
};

template <FrameLock Lock, FramePool PageAlloc = BitmapPageAllocator<GuestPhysAddr>>
class FrameAllocator {
public:
    static constexpr uint32_t kMaxNodes = kMaxFrameNodes;
    static constexpr uint32_t kMaxCpus = 64;
    static constexpr uint32_t kCacheFrames = 32;
    static constexpr uint32_t kBatch = kCacheFrames / 2;  // frames moved per refill/spill
    static constexpr uint32_t kDefaultRangesPerNode = 4;

    // Metadata for `nodes` nodes of up to `frames_per_node` frames in up to
    // `ranges_per_node` ranges each, and `cpus` cpus (any span alignment).
    static constexpr size_t metadata_bytes(uint32_t nodes, uint32_t cpus, uint64_t frames_per_node,
                                           uint32_t ranges_per_node = kDefaultRangesPerNode) {
        using frames_detail::piece_bytes;
        size_t per_node = piece_bytes(PageAlloc::metadata_bytes(frames_per_node, ranges_per_node), 8) +
                          piece_bytes(frames_detail::words_for_bits(frames_per_node) * 8, 8);
        return piece_bytes(sizeof(Node) * nodes, alignof(Node)) +
               piece_bytes(sizeof(CpuCache) * nodes * cpus, alignof(CpuCache)) +
               piece_bytes(sizeof(frames_detail::RangeEntry) * nodes * ranges_per_node, 8) + nodes * per_node;
    }

    FrameAllocator() = default;
    FrameAllocator(const FrameAllocator&) = delete;
    FrameAllocator& operator=(const FrameAllocator&) = delete;
    // Trivial when the lock and pool are, so a global needs no atexit (the guest has none).
    ~FrameAllocator() requires(std::is_trivially_destructible_v<Lock>&& std::is_trivially_destructible_v<PageAlloc>) =
        default;
    ~FrameAllocator() { destroy_nodes(); }

    // Each node's frame capacity is the largest that `metadata` holds.
    Status init(std::span<std::byte> metadata, uint32_t nodes, uint32_t cpus,
                uint32_t ranges_per_node = kDefaultRangesPerNode) {
        if (m_node != nullptr) return err(Error::AlreadyInitialized);
        if (nodes == 0 || nodes > kMaxNodes || cpus == 0 || cpus > kMaxCpus || ranges_per_node == 0 ||
            ranges_per_node > 1024)
            return err(Error::InvalidParam);
        uint64_t capacity = capacity_for(metadata.size(), nodes, cpus, ranges_per_node);
        if (capacity == 0) return err(Error::NoMemory);
        frames_detail::Carver carver(metadata);
        auto* node_mem = carver.take(sizeof(Node) * nodes, alignof(Node));
        auto* cache_mem = carver.take(sizeof(CpuCache) * nodes * cpus, alignof(CpuCache));
        auto* range_mem = carver.take(sizeof(frames_detail::RangeEntry) * nodes * ranges_per_node, 8);
        MM_ASSERT(node_mem != nullptr && cache_mem != nullptr && range_mem != nullptr);
        auto* node = reinterpret_cast<Node*>(node_mem);
        for (uint32_t i = 0; i < nodes; ++i) ::new (static_cast<void*>(node + i)) Node{};
        m_node = node;
        m_nodes = nodes;  // from here the destructor destroys the nodes
        m_cache = reinterpret_cast<CpuCache*>(cache_mem);
        for (uint32_t i = 0; i < nodes * cpus; ++i) ::new (static_cast<void*>(m_cache + i)) CpuCache{};
        m_ranges.bind(reinterpret_cast<frames_detail::RangeEntry*>(range_mem), size_t(nodes) * ranges_per_node);
        for (uint32_t i = 0; i < nodes; ++i) {
            if (auto s = init_node(carver, node[i], capacity, ranges_per_node); !s) {
                destroy_nodes();  // cannot happen with PageAlloc's own metadata_bytes; stay uninitialised
                return s;
            }
        }
        m_cpus = cpus;
        m_capacity = capacity;
        m_ranges_per_node = ranges_per_node;
        return ok();
    }

    Status add_range(uint32_t node, GuestFrameRange frames) {
        if (m_node == nullptr) return err(Error::BadState);
        if (node >= m_nodes || frames.count == 0 || frames.count - 1 > GuestFrame::kMaxNumber - frames.first.number())
            return err(Error::InvalidParam);
        Node& n = m_node[node];
        frames_detail::RangeEntry e{frames.first.number(), frames.count, n.next_bit, node};
        for (size_t i = 0; i < m_ranges.size(); ++i)
            if (m_ranges[i].first <= e.last() && e.first <= m_ranges[i].last()) return err(Error::MemoryOverlap);
        if (n.range_count == m_ranges_per_node || frames.count > m_capacity - n.next_bit) return err(Error::NoMemory);
        MM_TRY(n.pool.add_memory(frames.first.start_address(), size_t(frames.count) << kPageShift));
        MM_ASSERT(m_ranges.insert(e).has_value());
        ++n.range_count;
        n.next_bit += frames.count;
        frames_detail::store_relaxed(n.total, n.total + frames.count);
        frames_detail::store_relaxed(n.free, uint64_t(n.pool.available_pages()));
        return ok();
    }

    Status configure(uint32_t node, const FrameNodeConfig& config) {
        if (m_node == nullptr) return err(Error::BadState);
        if (node >= m_nodes || config.fallback_count > kMaxNodes) return err(Error::InvalidParam);
        for (uint32_t i = 0; i < config.fallback_count; ++i) {
            uint32_t f = config.fallback[i];
            if (f >= m_nodes || f == node) return err(Error::InvalidParam);
            for (uint32_t j = 0; j < i; ++j)
                if (config.fallback[j] == f) return err(Error::InvalidParam);
        }
        Node& n = m_node[node];
        frames_detail::Guard guard(n.lock);
        n.config = config;
        frames_detail::store_relaxed(n.quota, config.quota_frames);
        return ok();
    }

    // One frame for `cpu` (the calling thread owns it) preferring `node`.
    Result<FrameGrant> alloc(uint32_t cpu, uint32_t node) {
        if (cpu >= m_cpus || node >= m_nodes) [[unlikely]]
            return err(m_node == nullptr ? Error::BadState : Error::InvalidParam);
        CpuCache& c = cache(cpu, node);
        if (c.count != 0 && frames_detail::load_relaxed(m_node[node].quota) == 0) [[likely]]
            return FrameGrant{pop(c), node};
        if (auto f = alloc_slow(cpu, node)) return FrameGrant{*f, node};
        return alloc_fallback(node, 1, 1);
    }

    // `frames` contiguous frames, the first a multiple of align_frames, from
    // the node's pool (no cache), then its fallbacks.
    Result<FrameGrant> alloc_contiguous(uint32_t node, size_t frames, size_t align_frames) {
        if (m_node == nullptr) return err(Error::BadState);
        if (node >= m_nodes || frames == 0 || !is_power_of_two(align_frames) || align_frames > (SIZE_MAX >> kPageShift))
            return err(Error::InvalidParam);
        {
            frames_detail::Guard guard(m_node[node].lock);
            if (auto f = take_run_locked(node, frames, align_frames)) return FrameGrant{*f, node};
        }
        return alloc_fallback(node, frames, align_frames);
    }

    // Returns a frame in use (from alloc or part of an alloc_contiguous run).
    Status free(uint32_t cpu, GuestFrame frame) {
        if (cpu >= m_cpus) [[unlikely]]
            return err(m_node == nullptr ? Error::BadState : Error::InvalidParam);
        const frames_detail::RangeEntry* r = m_ranges.find(frame.number());
        if (r == nullptr || !m_node[r->node].clear_in_use(*r, frame.number())) [[unlikely]]
            return err(Error::NotAllocated);
        CpuCache& c = cache(cpu, r->node);
        if (c.count < kCacheFrames && frames_detail::load_relaxed(m_node[r->node].quota) == 0) [[likely]] {
            push(c, frame.number());
            return ok();
        }
        free_slow(cpu, r->node, frame.number());
        return ok();
    }

    // Returns frames [first, first + frames), all in use and in one node's
    // ranges; all or nothing.
    Status free_contiguous(GuestFrame first, size_t frames) {
        if (m_node == nullptr) return err(Error::BadState);
        if (frames == 0 || frames - 1 > GuestFrame::kMaxNumber - first.number()) return err(Error::InvalidParam);
        const frames_detail::RangeEntry* r = m_ranges.find(first.number());
        if (r == nullptr || !m_ranges.covers(first.number(), frames)) return err(Error::NotAllocated);
        Node& n = m_node[r->node];
        if (!n.update_in_use(m_ranges, *r, first.number(), frames, false)) return err(Error::NotAllocated);
        frames_detail::Guard guard(n.lock);
        if (frames <= r->last() - first.number() + 1) {  // the common case: inside one range
            MM_ASSERT(n.pool.dealloc_pages(first.start_address(), frames).has_value());
        } else {
            (void)m_ranges.for_each_piece(first.number(), frames, [&](const auto&, uint64_t f, uint64_t count) {
                MM_ASSERT(n.pool.dealloc_pages(GuestFrame(f).start_address(), size_t(count)).has_value());
                return true;
            });
        }
        n.add_used_locked(uint64_t(0) - frames);
        n.sync_free_locked();
        return ok();
    }

    // Takes exactly frames [first, first + frames) out of their node's pool and
    // marks them in use, as if alloc_contiguous had handed them out: rebuilding
    // the allocation state of a restored guest from its page tables. Returns
    // the node. All or nothing. Errors: BadState before init; InvalidParam for
    // 0 frames or a wrapping run; OutOfRange unless the run lies in one node's
    // ranges; AlreadyExists if a frame is in use or cached; NoMemory if the
    // node's quota would be exceeded.
    Result<uint32_t> claim(GuestFrame first, size_t frames) {
        if (m_node == nullptr) return err(Error::BadState);
        if (frames == 0 || frames - 1 > GuestFrame::kMaxNumber - first.number()) return err(Error::InvalidParam);
        const frames_detail::RangeEntry* r = m_ranges.find(first.number());
        if (r == nullptr || !m_ranges.covers(first.number(), frames)) return err(Error::OutOfRange);
        const uint32_t node = r->node;
        Node& n = m_node[node];
        frames_detail::Guard guard(n.lock);
        if (n.quota != 0 && (frames > n.quota || used_total(node) > n.quota - frames)) return err(Error::NoMemory);
        if (!n.pool.alloc_pages_at(first.start_address(), frames).has_value()) return err(Error::AlreadyExists);
        MM_ASSERT(n.update_in_use(m_ranges, *r, first.number(), frames, true));
        n.add_used_locked(frames);
        n.sync_free_locked();
        return node;
    }

    // Returns cpu's cached frames (of every node) to their pools. Owner thread only.
    void drain(uint32_t cpu) {
        if (cpu >= m_cpus) return;
        for (uint32_t i = 0; i < m_nodes; ++i) {
            CpuCache& c = cache(cpu, i);
            if (c.count == 0) continue;
            frames_detail::Guard guard(m_node[i].lock);
            flush_locked(m_node[i], c);
        }
    }

    // All zero for a node that does not exist.
    [[nodiscard]] FrameNodeStats stats(uint32_t node) const {
        using frames_detail::load_relaxed;
        FrameNodeStats s;
        if (node >= m_nodes) return s;
        const Node& n = m_node[node];
        s.total_frames = load_relaxed(n.total);
        s.used_frames = used_total(node);
        for (uint32_t cpu = 0; cpu < m_cpus; ++cpu) s.cached_frames += load_relaxed(cache(cpu, node).count);
        s.free_frames = load_relaxed(n.free);
        s.quota_frames = load_relaxed(n.quota);
        s.fallback_allocs = load_relaxed(n.fallback_allocs);
        s.refusals = load_relaxed(n.refusals);
        s.quota_refusals = load_relaxed(n.quota_refusals);
        return s;
    }

    [[nodiscard]] uint32_t nodes() const { return m_nodes; }
    [[nodiscard]] uint32_t cpus() const { return m_cpus; }
    [[nodiscard]] uint64_t frames_per_node_capacity() const { return m_capacity; }

    // Quiescent only. Costs O(frames in ranges + (cached frames per node)^2).
    [[nodiscard]] bool check_invariants() const {
        if (m_node == nullptr) return m_nodes == 0 && m_cpus == 0;
        if (!ranges_ok()) return false;
        for (uint32_t i = 0; i < m_nodes; ++i)
            if (!node_ok(i)) return false;
        return true;
    }

private:
    // One cpu's cache for one node. Only the owning cpu's thread changes it;
    // count and used_delta are also read by stats (relaxed).
    struct alignas(64) CpuCache {
        uint32_t count = 0;
        uint64_t used_delta = 0;  // frames handed out minus frames freed through this cache (mod 2^64)
        uint64_t frames[kCacheFrames] = {};
    };

    // The fields every fast path reads get a cache line of their own, away
    // from the lock and the counters that each locked operation writes.
    struct alignas(64) Node {
        alignas(64) uint64_t quota = 0;  // config.quota_frames; written under lock, read relaxed
        uint64_t* in_use = nullptr;      // one bit per frame of the node's ranges
        uint64_t next_bit = 0;           // setup only: in-use bits given to ranges
        uint64_t total = 0;              // setup only; read relaxed
        uint32_t range_count = 0;        // setup only
        alignas(64) Lock lock;
        PageAlloc pool;            // guarded by lock
        FrameNodeConfig config;    // guarded by lock
        uint64_t free = 0;         // pool.available_pages(); written under lock, read relaxed
        uint64_t used_locked = 0;  // used changes made under the lock (mod 2^64); read relaxed
        uint64_t fallback_allocs = 0, refusals = 0, quota_refusals = 0;  // atomic adds

        bool clear_in_use(const frames_detail::RangeEntry& r, uint64_t frame) {
            return frames_detail::clear_bit(in_use, r.bit + (frame - r.first));
        }
        // Sets or clears the bits of frames [first, first + n), in `r` and the
        // ranges of the node that follow it without a gap: all or nothing.
        bool update_in_use(const frames_detail::RangeTable& ranges, const frames_detail::RangeEntry& r, uint64_t first,
                           uint64_t n, bool set) {
            uint64_t b = r.bit + (first - r.first);
            if (n == 1) return set ? frames_detail::set_bit(in_use, b) : frames_detail::clear_bit(in_use, b);
            if (n <= r.last() - first + 1) return frames_detail::update_run(in_use, b, n, set);
            uint64_t done = 0;
            bool all = ranges.for_each_piece(first, n, [&](const auto& e, uint64_t f, uint64_t count) {
                if (!frames_detail::update_run(in_use, e.bit + (f - e.first), count, set)) return false;
                done += count;
                return true;
            });
            if (!all && done != 0) MM_ASSERT(update_in_use(ranges, r, first, done, !set));
            return all;
        }
        void add_used_locked(uint64_t delta) { frames_detail::store_relaxed(used_locked, used_locked + delta); }
        void sync_free_locked() { frames_detail::store_relaxed(free, uint64_t(pool.available_pages())); }
    };

    void destroy_nodes() {
        for (uint32_t i = 0; i < m_nodes; ++i) m_node[i].~Node();
        m_node = nullptr;
        m_nodes = 0;
    }

    // The largest per-node frame capacity whose metadata fits in `bytes`.
    static uint64_t capacity_for(size_t bytes, uint32_t nodes, uint32_t cpus, uint32_t rpn) {
        uint64_t lo = 0;
        uint64_t hi = uint64_t(1) << 40;
        while (lo < hi) {
            uint64_t mid = lo + (hi - lo + 1) / 2;
            if (metadata_bytes(nodes, cpus, mid, rpn) <= bytes)
                lo = mid;
            else
                hi = mid - 1;
        }
        return lo;
    }

    static Status init_node(frames_detail::Carver& carver, Node& n, uint64_t capacity, uint32_t rpn) {
        size_t pool_bytes = PageAlloc::metadata_bytes(capacity, rpn);
        std::byte* pool_mem = carver.take(pool_bytes, 8);
        auto* bits = reinterpret_cast<uint64_t*>(carver.take(frames_detail::words_for_bits(capacity) * 8, 8));
        MM_ASSERT(pool_mem != nullptr && bits != nullptr);
        for (size_t i = 0; i < frames_detail::words_for_bits(capacity); ++i) bits[i] = 0;
        n.in_use = bits;
        return n.pool.init(std::span<std::byte>(pool_mem, pool_bytes), rpn);
    }

    CpuCache& cache(uint32_t cpu, uint32_t node) { return m_cache[size_t(cpu) * m_nodes + node]; }
    const CpuCache& cache(uint32_t cpu, uint32_t node) const { return m_cache[size_t(cpu) * m_nodes + node]; }

    uint64_t used_total(uint32_t node) const {
        uint64_t used = frames_detail::load_relaxed(m_node[node].used_locked);
        for (uint32_t cpu = 0; cpu < m_cpus; ++cpu) used += frames_detail::load_relaxed(cache(cpu, node).used_delta);
        return used;
    }

    // Hands out the top cached frame.
    GuestFrame pop(CpuCache& c) {
        uint64_t f = c.frames[c.count - 1];
        frames_detail::store_relaxed(c.count, c.count - 1);
        const frames_detail::RangeEntry* r = m_ranges.find(f);
        MM_ASSERT(r != nullptr && frames_detail::set_bit(m_node[r->node].in_use, r->bit + (f - r->first)));
        frames_detail::store_relaxed(c.used_delta, c.used_delta + 1);
        return GuestFrame(f);
    }
    // Takes back a frame whose in-use bit was just cleared.
    static void push(CpuCache& c, uint64_t frame) {
        c.frames[c.count] = frame;
        frames_detail::store_relaxed(c.count, c.count + 1);
        frames_detail::store_relaxed(c.used_delta, c.used_delta - 1);
    }

    // Moves the k oldest cached frames of c back to n's pool.
    static void spill_locked(Node& n, CpuCache& c, uint32_t k) {
        for (uint32_t i = 0; i < k; ++i)
            MM_ASSERT(n.pool.dealloc_pages(GuestFrame(c.frames[i]).start_address(), 1).has_value());
        for (uint32_t i = k; i < c.count; ++i) c.frames[i - k] = c.frames[i];
        frames_detail::store_relaxed(c.count, c.count - k);
        n.sync_free_locked();
    }
    static void flush_locked(Node& n, CpuCache& c) { spill_locked(n, c, c.count); }

    static void refill_locked(Node& n, CpuCache& c) {
        uint32_t want = kBatch < kCacheFrames - c.count ? kBatch : kCacheFrames - c.count;
        for (uint32_t i = 0; i < want; ++i) {
            auto a = n.pool.alloc_pages(1, kPageSize);
            if (!a) break;
            c.frames[c.count] = GuestFrame::containing(*a).number();
            frames_detail::store_relaxed(c.count, c.count + 1);
        }
        n.sync_free_locked();
    }

    // The cache missed (or the node has a quota): one frame of the node itself.
    Result<GuestFrame> alloc_slow(uint32_t cpu, uint32_t node) {
        Node& n = m_node[node];
        CpuCache& c = cache(cpu, node);
        {
            frames_detail::Guard guard(n.lock);
            if (n.quota != 0) {
                flush_locked(n, c);
                return take_run_locked(node, 1, 1);
            }
            if (c.count == 0) refill_locked(n, c);
        }
        if (c.count == 0) return err(Error::NoMemory);
        return pop(c);
    }

    void free_slow(uint32_t cpu, uint32_t node, uint64_t frame) {
        Node& n = m_node[node];
        CpuCache& c = cache(cpu, node);
        frames_detail::Guard guard(n.lock);
        if (n.quota != 0) {
            flush_locked(n, c);
            MM_ASSERT(n.pool.dealloc_pages(GuestFrame(frame).start_address(), 1).has_value());
            n.add_used_locked(~uint64_t(0));
            n.sync_free_locked();
            return;
        }
        if (c.count == kCacheFrames) spill_locked(n, c, kBatch);
        push(c, frame);
    }

    // `count` frames aligned to align_frames from node's pool, under its lock.
    Result<GuestFrame> take_run_locked(uint32_t node, size_t count, size_t align_frames) {
        Node& n = m_node[node];
        if (n.quota != 0 && (count > n.quota || used_total(node) > n.quota - count)) {
            frames_detail::add_relaxed(n.quota_refusals, uint64_t(1));
            return err(Error::NoMemory);
        }
        if (count > n.pool.available_pages()) return err(Error::NoMemory);
        MM_TRY_ASSIGN(GuestPhysAddr a, n.pool.alloc_pages(count, align_frames << kPageShift));
        GuestFrame f = GuestFrame::containing(a);
        const frames_detail::RangeEntry* r = m_ranges.find(f.number());
        MM_ASSERT(r != nullptr && n.update_in_use(m_ranges, *r, f.number(), count, true));
        n.add_used_locked(count);
        n.sync_free_locked();
        return f;
    }

    // The preferred node could not pay: its fallback nodes in order.
    Result<FrameGrant> alloc_fallback(uint32_t preferred, size_t count, size_t align_frames) {
        FrameNodeConfig config;
        {
            frames_detail::Guard guard(m_node[preferred].lock);
            config = m_node[preferred].config;
        }
        for (uint32_t i = 0; config.may_fall_back && i < config.fallback_count; ++i) {
            uint32_t f = config.fallback[i];
            frames_detail::Guard guard(m_node[f].lock);
            if (auto r = take_run_locked(f, count, align_frames)) {
                frames_detail::add_relaxed(m_node[f].fallback_allocs, uint64_t(count));
                return FrameGrant{*r, f};
            }
        }
        frames_detail::add_relaxed(m_node[preferred].refusals, uint64_t(1));
        return err(Error::NoMemory);
    }

    // ---- check_invariants helpers ----

    bool ranges_ok() const {
        uint64_t total[kMaxNodes] = {};
        for (size_t i = 0; i < m_ranges.size(); ++i) {
            const auto& r = m_ranges[i];
            if (r.node >= m_nodes || r.count == 0 || r.count - 1 > GuestFrame::kMaxNumber - r.first) return false;
            if (i > 0 && m_ranges[i - 1].last() >= r.first) return false;
            if (r.bit > m_node[r.node].next_bit || r.count > m_node[r.node].next_bit - r.bit) return false;
            total[r.node] += r.count;
        }
        for (uint32_t i = 0; i < m_nodes; ++i)
            if (total[i] != m_node[i].next_bit || total[i] != m_node[i].total) return false;
        return true;
    }

    // Cached frames of node: in its ranges, not in use, allocated in the pool, in one cache once.
    bool caches_ok(uint32_t node, uint64_t* cached) const {
        const Node& n = m_node[node];
        *cached = 0;
        for (uint32_t cpu = 0; cpu < m_cpus; ++cpu) {
            const CpuCache& c = cache(cpu, node);
            if (c.count > kCacheFrames) return false;
            for (uint32_t k = 0; k < c.count; ++k) {
                uint64_t f = c.frames[k];
                const auto* r = m_ranges.find(f);
                if (r == nullptr || r->node != node || frames_detail::test_bit(n.in_use, r->bit + (f - r->first)))
                    return false;
                if (!n.pool.is_allocated(GuestFrame(f).start_address()) || seen_before(node, cpu, k)) return false;
            }
            *cached += c.count;
        }
        return true;
    }
    bool seen_before(uint32_t node, uint32_t cpu, uint32_t k) const {
        uint64_t f = cache(cpu, node).frames[k];
        for (uint32_t c = 0; c <= cpu; ++c) {
            const CpuCache& cc = cache(c, node);
            for (uint32_t j = 0; j < (c == cpu ? k : cc.count); ++j)
                if (cc.frames[j] == f) return true;
        }
        return false;
    }

    // In-use bits: only inside the node's bit range, each on a frame the pool has allocated.
    bool in_use_ok(uint32_t node, uint64_t* used) const {
        const Node& n = m_node[node];
        *used = 0;
        for (size_t w = 0; w < frames_detail::words_for_bits(m_capacity); ++w) {
            uint64_t bits = n.in_use[w];
            if (bits != 0 && w * 64 + 64 - std::countl_zero(bits) > n.next_bit) return false;
            *used += uint64_t(std::popcount(bits));
        }
        for (size_t i = 0; i < m_ranges.size(); ++i) {
            const auto& r = m_ranges[i];
            if (r.node != node) continue;
            for (uint64_t k = 0; k < r.count; ++k)
                if (frames_detail::test_bit(n.in_use, r.bit + k) &&
                    !n.pool.is_allocated(GuestFrame(r.first + k).start_address()))
                    return false;
        }
        return true;
    }

    bool node_ok(uint32_t node) const {
        const Node& n = m_node[node];
        uint64_t cached = 0;
        uint64_t used = 0;
        if (!n.pool.check_invariants() || n.pool.total_pages() != n.total || n.pool.available_pages() != n.free)
            return false;
        if (!caches_ok(node, &cached) || !in_use_ok(node, &used)) return false;
        return used == used_total(node) && n.pool.used_pages() == used + cached && n.total == used + cached + n.free;
    }

    Node* m_node = nullptr;
    CpuCache* m_cache = nullptr;
    frames_detail::RangeTable m_ranges;
    uint32_t m_nodes = 0;
    uint32_t m_cpus = 0;
    uint32_t m_ranges_per_node = 0;
    uint64_t m_capacity = 0;
};

}  // namespace mm
