// SlabHeap: size-class slabs in front of a buddy heap (a "hybrid" heap).
//
// What it is: requests are classed by need = max(size, align). need <= 4096
// goes to the smallest class of 64, 128, ..., 4096 bytes that holds it (so a
// 64-byte request aligned to 256 is a 256-byte block); anything larger, or
// aligned above 4096, goes straight to the internal Buddy.
// Each class takes "chunks" from the buddy: chunk_size(c) = max(64 KiB,
// 32 * class size) bytes, aligned to its size, so the chunk of any block is
// `p & ~(chunk_size - 1)` (O(1)). A chunk begins with its header (ChunkHeader,
// rounded up to whole blocks); the rest are blocks of the class. Blocks are
// handed out first from the chunk's singly linked free list, then by bumping
// through never-used blocks (a new chunk is not touched up front).
//
// Fast path: alloc pops the head chunk of the class's "has free blocks" list
// and pops a block from that chunk's free list; dealloc pushes it back. No loops.
// Both are forced inline with every slow path (validation errors, large
// requests, growing, releasing a chunk) out of line: class selection is one OR
// and a bit scan, the dealloc checks read only the chunk header's cache line.
// Hysteresis: a chunk that becomes empty is kept while its class has at most
// kMaxEmptyChunks empty chunks, else returned to the buddy at once; so alloc/free
// at a chunk boundary does not thrash. When the buddy runs out, every empty chunk
// of every class is returned to it and the request retried.
//
// Statistics (used + available == total at all times):
//   total      = the buddy's total (bytes of its areas)
//   used       = class size of every live small block + buddy block size of every
//                live large block + the header blocks of chunks holding >= 1
//                live block (metadata that cannot be reclaimed right now)
//   available  = everything else: the buddy's free blocks, free blocks parked in
//                chunks (usable only by their class), whole empty chunks (handed
//                back on demand). After everything is freed, used == 0.
//
// Errors: as Buddy (InvalidParam, BadState, MemoryOverlap, NoMemory), and
// NotAllocated on dealloc of something not live. Detected always (cheap): the
// chunk header's magic (derived from this heap and the chunk address) and class
// do not match, the offset is not a block boundary of the class, the block was
// never handed out (beyond the bump mark); for large blocks, Buddy's checks.
// kChecked adds: the pointer and its chunk lie in the heap's memory (so a foreign
// pointer is never dereferenced; without it the caller guarantees p came from
// some heap), a per-chunk bitmap of live blocks (double free, size in the wrong
// class), and Buddy's full checks for large blocks. Detection targets bugs, not
// an adversary who forges chunk headers.
// Ownership: owns no memory; regions are handed to the internal buddy.
#pragma once

#include "mm/alloc/allocator.h"
#include "mm/alloc/buddy.h"
#include "mm/alloc/intrusive_list.h"
#include "mm/std.h"

// The fast paths are forced inline and the slow paths kept out of line, so a
// caller's alloc/dealloc compiles to the pop/push and its checks (GCC and
// Clang; both accept these attributes in freestanding code).
#define MM_SLAB_INLINE [[gnu::always_inline]] inline
#define MM_SLAB_NOINLINE [[gnu::noinline]]

namespace mm {

template <bool kChecked = true, size_t kMaxEmptyChunks = 2, size_t kMaxRegions = 16>
class SlabHeap {
public:
    using Backing = Buddy<5, 47, kChecked, kMaxRegions>;
    static constexpr bool kIsChecked = kChecked;
    static constexpr size_t kClassCount = 7;
    static constexpr unsigned kMinClassShift = 6;                                             // 64 bytes
    static constexpr size_t kMaxClassSize = size_t(1) << (kMinClassShift + kClassCount - 1);  // 4096
    static constexpr size_t kMinChunk = size_t(64) * 1024;
    static constexpr size_t kBlocksPerChunkMin = 32;

    static constexpr size_t class_size(size_t c) { return size_t(1) << (kMinClassShift + c); }
    static constexpr size_t chunk_size(size_t c) {
        return class_size(c) * kBlocksPerChunkMin > kMinChunk ? class_size(c) * kBlocksPerChunkMin : kMinChunk;
    }
    // The class for a request, or kClassCount for the buddy.
    static constexpr size_t class_of(size_t size, size_t align) {
        size_t need = size > align ? size : align;
        if (need > kMaxClassSize) return kClassCount;
        unsigned o = detail::ceil_log2(need);
        return o <= kMinClassShift ? 0 : o - kMinClassShift;
    }

    Status init(std::span<std::byte> region) { return m_buddy.init(region); }
    Status add_memory(std::span<std::byte> region) { return m_buddy.add_memory(region); }

    // alloc and dealloc are the inlined fast paths (a small class with a chunk
    // ready); everything else is out of line so callers inline only this.
    MM_SLAB_INLINE Result<void*> alloc(size_t size, size_t align) {
        const size_t m = small_key(size, align);
        if (m >= kMaxClassSize) [[unlikely]]
            return alloc_slow(size, align);
        const size_t c = small_class(m);
        ListNode* head = m_classes[c].partial.front();
        if (head == nullptr) [[unlikely]]
            return alloc_refill(c);
        return static_cast<void*>(take_block(chunk_of_node(head), c));
    }

    MM_SLAB_INLINE Status dealloc(void* ptr, size_t size, size_t align) {
        const size_t m = small_key(size, align);
        if (m >= kMaxClassSize) [[unlikely]]
            return dealloc_slow(ptr, size, align);
        const size_t c = small_class(m);
        auto* p = static_cast<std::byte*>(ptr);
        Chunk* ch = chunk_of_ptr(p, c);
        if (!small_block_ok(ch, p, c)) [[unlikely]]
            return err(Error::NotAllocated);
        if constexpr (kChecked) detail::bit_clear(ch->live.data(), block_index(ch, p, c));
        // Hide p's provenance from the optimizer: inlined into a caller that
        // frees a foreign object (a test), GCC would warn about this store on
        // the path the checks above already rule out. Emits no instruction.
        __asm__("" : "+r"(p));
        *reinterpret_cast<std::byte**>(p) = ch->free_head;
        ch->free_head = p;
        m_small_used -= class_size(c);
        if (ch->used-- == ch->capacity) [[unlikely]]
            m_classes[c].partial.push_front(&ch->partial_link);
        if (ch->used == 0) note_empty(ch, c);
        return ok();
    }

    [[nodiscard]] size_t total_bytes() const { return m_buddy.total_bytes(); }
    [[nodiscard]] size_t used_bytes() const {
        size_t used = m_small_used + m_large_used;
        for (size_t c = 0; c < kClassCount; ++c)
            used += (m_classes[c].chunks - m_classes[c].empty) * header_blocks(c) * class_size(c);
        return used;
    }
    [[nodiscard]] size_t available_bytes() const { return total_bytes() - used_bytes(); }

    // Chunks currently held by class c, and how many of them are empty.
    [[nodiscard]] size_t chunk_count(size_t c) const { return m_classes[c].chunks; }
    [[nodiscard]] size_t empty_chunk_count(size_t c) const { return m_classes[c].empty; }
    [[nodiscard]] const Backing& backing() const { return m_buddy; }

    // Returns every empty chunk to the buddy (also done automatically when the
    // buddy runs out).
    void trim() {
        for (size_t c = 0; c < kClassCount; ++c) {
            ListNode* n = m_classes[c].partial.front();
            while (n != nullptr) {
                ListNode* next = n->next;
                Chunk* ch = chunk_of_node(n);
                if (ch->used == 0) release_chunk(ch, c);
                n = next;
            }
        }
    }

    [[nodiscard]] bool check_invariants() const {
        if (!m_buddy.check_invariants()) return false;
        size_t small_used = 0;
        size_t chunk_bytes = 0;
        for (size_t c = 0; c < kClassCount; ++c) {
            const Class& cls = m_classes[c];
            size_t chunks = 0;
            size_t empty = 0;
            bool good = cls.all.walk(SIZE_MAX, [&](const ListNode* n) {
                const Chunk* ch = chunk_of_node(const_cast<ListNode*>(n));
                ++chunks;
                empty += ch->used == 0 ? 1 : 0;
                small_used += size_t(ch->used) * class_size(c);
                chunk_bytes += chunk_size(c);
                return check_chunk(ch, c);
            });
            size_t partial = 0;
            good = good && cls.partial.walk(SIZE_MAX, [&](const ListNode* n) {
                const Chunk* ch = chunk_of_node(const_cast<ListNode*>(n));
                ++partial;
                return ch->used < ch->capacity;
            });
            size_t not_full = 0;
            (void)cls.all.walk(SIZE_MAX, [&](const ListNode* n) {
                not_full += chunk_of_node(const_cast<ListNode*>(n))->used < capacity(c) ? 1 : 0;
                return true;
            });
            if (!good || chunks != cls.chunks || empty != cls.empty || partial != not_full) return false;
            if (empty > kMaxEmptyChunks) return false;
        }
        if (small_used != m_small_used) return false;
        if (m_buddy.used_bytes() != chunk_bytes + m_large_used) return false;
        return used_bytes() + available_bytes() == total_bytes() && used_bytes() <= total_bytes();
    }

private:
    static constexpr size_t kMaxBlocksPerChunk = kMinChunk >> kMinClassShift;  // 1024
    static constexpr uint64_t kMagic = 0x51ab'c4e4'0b5e'55edULL;

    struct Chunk {
        ListNode partial_link;  // in Class::partial while used < capacity
        ListNode all_link;      // in Class::all always
        uint64_t magic;
        std::byte* free_head;  // singly linked through the first word of free blocks
        // 16-bit counters keep the header at 56 bytes, so the first live-bitmap
        // word (blocks 0..63: all of a 1024..4096-byte chunk) shares the
        // header's cache line and a checked dealloc touches one line, not two.
        uint16_t used;
        uint16_t capacity;
        uint16_t bump;  // index of the first never-used block
        uint16_t cls;
        std::array<uint64_t, kChecked ? kMaxBlocksPerChunk / 64 : 0> live;
    };
    static_assert(kMaxBlocksPerChunk <= 0xffff);
    struct Class {
        IntrusiveList partial;  // chunks with a free block, fullest-recently first
        IntrusiveList all;
        size_t chunks = 0;
        size_t empty = 0;
    };

    static constexpr size_t header_blocks(size_t c) { return (sizeof(Chunk) + class_size(c) - 1) / class_size(c); }
    static constexpr uint32_t capacity(size_t c) {
        return static_cast<uint32_t>(chunk_size(c) / class_size(c) - header_blocks(c));
    }
    static Chunk* chunk_of_node(ListNode* n) {
        // Both links live in the header, within the first 64 KiB of the chunk.
        return reinterpret_cast<Chunk*>(reinterpret_cast<uintptr_t>(n) & ~uintptr_t(kMinChunk - 1));
    }
    static Chunk* chunk_of_ptr(std::byte* p, size_t c) {
        return reinterpret_cast<Chunk*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t(chunk_size(c) - 1));
    }
    static size_t block_index(const Chunk* ch, const std::byte* p, size_t c) {
        return static_cast<size_t>(p - reinterpret_cast<const std::byte*>(ch)) >> (kMinClassShift + c);
    }
    uint64_t magic_for(const Chunk* ch, size_t c) const {
        return kMagic ^ reinterpret_cast<uintptr_t>(ch) ^ reinterpret_cast<uintptr_t>(this) ^ c;
    }

    // (size - 1) | (align - 1): below kMaxClassSize iff size is 1..4096 and align
    // 1..4096 and a power of two, i.e. a valid small request; its bit width
    // (at least 6) is the class's shift. Anything else takes the slow path,
    // which validates it (InvalidParam) or serves it from the buddy.
    static constexpr size_t small_key(size_t size, size_t align) {
        const size_t m = (size - 1) | (align - 1);
        return (align & (align - 1)) == 0 ? m : kMaxClassSize;
    }
    static constexpr size_t small_class(size_t key) { return detail::floor_log2(key | (kMinChunkBlock - 1)) - 5; }
    static constexpr size_t kMinChunkBlock = size_t(1) << kMinClassShift;

    // Pops a block from a chunk with a free block (free list first, then bump).
    MM_SLAB_INLINE std::byte* take_block(Chunk* ch, size_t c) {
        std::byte* p = ch->free_head;
        if (p != nullptr) [[likely]] {
            ch->free_head = *reinterpret_cast<std::byte**>(p);
        } else {
            p = reinterpret_cast<std::byte*>(ch) + (size_t(ch->bump) << (kMinClassShift + c));
            ++ch->bump;
        }
        if (ch->used++ == 0) --m_classes[c].empty;
        if (ch->used == ch->capacity) [[unlikely]]
            m_classes[c].partial.remove(&ch->partial_link);
        if constexpr (kChecked) detail::bit_set(ch->live.data(), block_index(ch, p, c));
        m_small_used += class_size(c);
        return p;
    }

    MM_SLAB_NOINLINE Result<void*> alloc_refill(size_t c) {
        auto head = grow(c);
        if (!head) return err(head.error());
        return static_cast<void*>(take_block(chunk_of_node(*head), c));
    }
    MM_SLAB_NOINLINE Result<void*> alloc_slow(size_t size, size_t align) {
        MM_TRY(validate_layout(size, align));
        return alloc_large(size, align);
    }
    MM_SLAB_NOINLINE Status dealloc_slow(void* ptr, size_t size, size_t align) {
        MM_TRY(validate_layout(size, align));
        return dealloc_large(ptr, size, align);
    }
    void note_empty(Chunk* ch, size_t c) {
        if (++m_classes[c].empty > kMaxEmptyChunks) [[unlikely]]
            release_chunk(ch, c);
    }

    Result<ListNode*> grow(size_t c) {
        auto mem = m_buddy.alloc(chunk_size(c), chunk_size(c));
        if (!mem && mem.error() == Error::NoMemory) {
            trim();
            mem = m_buddy.alloc(chunk_size(c), chunk_size(c));
        }
        if (!mem) return err(mem.error());
        auto* ch = ::new (*mem) Chunk{};
        ch->magic = magic_for(ch, c);
        ch->capacity = static_cast<uint16_t>(capacity(c));
        ch->bump = static_cast<uint16_t>(header_blocks(c));
        ch->cls = static_cast<uint16_t>(c);
        Class& cls = m_classes[c];
        cls.all.push_front(&ch->all_link);
        cls.partial.push_front(&ch->partial_link);
        ++cls.chunks;
        ++cls.empty;
        return &ch->partial_link;
    }

    MM_SLAB_NOINLINE void release_chunk(Chunk* ch, size_t c) {
        Class& cls = m_classes[c];
        cls.partial.remove(&ch->partial_link);
        cls.all.remove(&ch->all_link);
        --cls.chunks;
        --cls.empty;
        ch->magic = 0;
        MM_ASSERT(m_buddy.dealloc(ch, chunk_size(c), chunk_size(c)).has_value());
    }

    // The cheap checks always made on a small dealloc (see the contract).
    MM_SLAB_INLINE bool small_block_ok(const Chunk* ch, const std::byte* p, size_t c) {
        if constexpr (kChecked) {
            // p is inside the chunk. The last chunk found inside the heap is
            // remembered (regions are never removed, so it stays inside).
            if ((reinterpret_cast<uintptr_t>(ch) | c) != m_inside_key && !chunk_inside(ch, c)) return false;
        }
        // The magic folds in the class, so one compare checks both.
        if (ch->magic != magic_for(ch, c)) return false;
        auto off = static_cast<size_t>(p - reinterpret_cast<const std::byte*>(ch));
        size_t idx = off >> (kMinClassShift + c);
        // idx in [header_blocks, bump) as one unsigned compare (bump >= header_blocks).
        if ((off & (class_size(c) - 1)) != 0 || idx - header_blocks(c) >= ch->bump - header_blocks(c)) return false;
        if constexpr (kChecked) {
            if (!detail::bit_test(ch->live.data(), idx)) return false;
        }
        return true;
    }

    MM_SLAB_NOINLINE bool chunk_inside(const Chunk* ch, size_t c) {
        if (!m_buddy.contains(ch, chunk_size(c))) return false;
        m_inside_key = reinterpret_cast<uintptr_t>(ch) | c;  // chunks are 64 KiB-aligned: c fits below
        return true;
    }

    Result<void*> alloc_large(size_t size, size_t align) {
        auto r = m_buddy.alloc(size, align);
        if (!r && r.error() == Error::NoMemory) {
            trim();
            r = m_buddy.alloc(size, align);
        }
        if (r) m_large_used += Backing::block_size(size, align);
        return r;
    }
    Status dealloc_large(void* p, size_t size, size_t align) {
        // A chunk base is never a pointer we handed out.
        if (is_chunk_base(p)) return err(Error::NotAllocated);
        MM_TRY(m_buddy.dealloc(p, size, align));
        m_large_used -= Backing::block_size(size, align);
        return ok();
    }
    bool is_chunk_base(const void* p) const {
        auto a = reinterpret_cast<uintptr_t>(p);
        if ((a & (kMinChunk - 1)) != 0 || !m_buddy.contains(p)) return false;
        const auto* ch = static_cast<const Chunk*>(p);
        return ch->cls < kClassCount && ch->magic == magic_for(ch, ch->cls);
    }

    bool check_chunk(const Chunk* ch, size_t c) const {
        if (ch->magic != magic_for(ch, c) || ch->cls != c || ch->capacity != capacity(c)) return false;
        if (reinterpret_cast<uintptr_t>(ch) % chunk_size(c) != 0 || ch->used > ch->capacity) return false;
        if (ch->bump < header_blocks(c) || ch->bump > header_blocks(c) + ch->capacity) return false;
        size_t touched = ch->bump - header_blocks(c);
        size_t free_listed = 0;
        for (const std::byte* b = ch->free_head; b != nullptr; b = *reinterpret_cast<std::byte* const*>(b)) {
            if (chunk_of_ptr(const_cast<std::byte*>(b), c) != ch || ++free_listed > touched) return false;
            size_t idx = block_index(ch, b, c);
            if (idx < header_blocks(c) || idx >= ch->bump) return false;
            if ((static_cast<size_t>(b - reinterpret_cast<const std::byte*>(ch)) & (class_size(c) - 1)) != 0)
                return false;
            if constexpr (kChecked) {
                if (detail::bit_test(ch->live.data(), idx)) return false;
            }
        }
        if (free_listed + ch->used != touched) return false;
        if constexpr (kChecked) {
            if (detail::bit_count(ch->live.data(), ch->live.size()) != ch->used) return false;
        }
        return true;
    }

    Backing m_buddy;
    std::array<Class, kClassCount> m_classes{};
    size_t m_small_used = 0;
    size_t m_large_used = 0;
    // (chunk address | class) of the last chunk that passed the kChecked
    // containment test; never a valid key initially (low bits all ones).
    uintptr_t m_inside_key = UINTPTR_MAX;
};

}  // namespace mm
