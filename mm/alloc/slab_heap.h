// SlabHeap: size-class slabs in front of a buddy heap (a "hybrid" heap).
//
// What it is: requests are classed by need = max(size, align). need <= 4096
// goes to the smallest class of 64, 128, ..., 4096 bytes that holds it (so a
// 64-byte request aligned to 256 is a 256-byte block); anything larger, or
// aligned above 4096, goes straight to the internal Buddy.
// Each class takes "chunks" from the buddy: chunk_size(c) = max(64 KiB,
// 32 * class size) bytes, aligned to its size, and cut entirely into blocks
// (block i at chunk + i * class size).
//
// Metadata is out of band, never in the blocks: every region handed in starts
// with a table of one 64-byte descriptor (ChunkDesc, one cache line) per 64 KiB
// "granule" of the region, followed by 96 bytes of extra bitmap words per
// granule (0.24% in all); the rest goes to the buddy. A chunk's first granule
// holds its descriptor (tag = class, counters, and a bitmap with one bit per
// block: set <=> the block is free; words 4..15, needed by the 64- and
// 128-byte classes only, are the extra words); the other granule of a 128 KiB
// chunk is tagged as its tail; granules not in a chunk are untagged. So a
// dealloc finds its descriptor by arithmetic (p's chunk granule in the last
// region used) and touches neither the block nor anything near it: the
// descriptors of a 200 MB heap are 0.2 MB, which stays in cache where the
// blocks do not. A chunk is whole granules inside one region's buddy area, so
// the granule of a chunk is covered by exactly one region's table (a granule
// shared by two adjacent regions is never a chunk, and stays untagged in both).
// Regions above ~22 TiB are InvalidParam (32-bit offset to the extra words).
//
// Fast path: alloc takes the head chunk of the class's "has free blocks" list
// and clears the lowest set bit of the word its hint names; dealloc checks the
// descriptor and sets the bit back. Both are forced inline with every slow path
// (validation errors, large requests, another region, growing, releasing a
// chunk) out of line.
// Hysteresis: a chunk that becomes empty is kept while its class has at most
// kMaxEmptyChunks empty chunks, else returned to the buddy at once; so alloc/free
// at a chunk boundary does not thrash. When the buddy runs out, every empty chunk
// of every class is returned to it and the request retried.
//
// Invariants (check_invariants): a chunk's used == capacity - its free bits;
// bits past the capacity are clear; while used < capacity the chunk is on its
// class's partial list and word `hint` is the first non-zero bitmap word
// (always 0 for one-word bitmaps).
// Statistics (used + available == total at all times):
//   total      = the buddy's total (the regions minus the descriptor tables)
//   used       = class size of every live small block + buddy block size of every
//                live large block
//   available  = everything else: the buddy's free blocks, free blocks parked in
//                chunks (usable only by their class), whole empty chunks (handed
//                back on demand). After everything is freed, used == 0.
//
// Errors: as Buddy (InvalidParam, BadState, MemoryOverlap, NoMemory; a region too
// small for its descriptors plus one buddy block is InvalidParam), and
// NotAllocated on dealloc of something not live; a rejected dealloc changes
// nothing. Detected in both modes for
// small blocks, without dereferencing anything outside the descriptor tables:
// a pointer outside every region, not in a chunk of the class (wrong size or
// foreign), not on a block boundary, or whose block is free (double free, never
// handed out); for large blocks, a pointer inside a chunk, then Buddy's checks.
// kChecked selects Buddy's full checks for large blocks (see buddy.h).
// Ownership: owns no memory; regions must outlive the heap and are never given
// back. Single-threaded.
#pragma once

#include "mm/alloc/allocator.h"
#include "mm/alloc/buddy.h"
#include "mm/alloc/intrusive_list.h"
#include "mm/alloc/region.h"
#include "mm/std.h"

// The fast paths are forced inline and the slow paths kept out of line, so a
// caller's alloc/dealloc compiles to the bit operations and their checks (GCC
// and Clang; both accept these attributes in freestanding code).
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
    static constexpr unsigned kGranuleShift = 16;
    static constexpr size_t kMinChunk = size_t(1) << kGranuleShift;  // 64 KiB
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

    Status init(std::span<std::byte> region) {
        if (m_initialized) return err(Error::BadState);
        MM_TRY(add_memory(region));
        m_initialized = true;
        return ok();
    }

    // Lays out the region's descriptor table at its start and hands the rest to
    // the buddy. Nothing is written unless the region is accepted.
    Status add_memory(std::span<std::byte> region) {
        RawRegion raw;
        MM_TRY(check_new_region(region, m_regions.data(), m_region_count, kMaxRegions, raw));
        Region r{};
        MM_TRY(layout_region(raw, r));
        // The buddy validates the rest (writing nothing if it is too small) before
        // the table is written.
        auto* rest = reinterpret_cast<std::byte*>(raw.start + r.meta_bytes);
        MM_TRY(m_buddy.add_memory({rest, raw.end - raw.start - r.meta_bytes}));
        // r.granules descriptors, then r.granules arrays of extra words.
        const uintptr_t extra = reinterpret_cast<uintptr_t>(r.desc + r.granules);
        for (size_t g = 0; g < r.granules; ++g) {
            auto* d = ::new (static_cast<void*>(r.desc + g)) ChunkDesc;
            d->tag = kUntagged;
            d->extra_off = static_cast<uint32_t>((extra + g * kExtraBytes - reinterpret_cast<uintptr_t>(d)) / 8);
        }
        m_regions[m_region_count++] = r;
        return ok();
    }

    // alloc and dealloc are the inlined fast paths (a small class with a chunk
    // ready, a pointer in the last region used); everything else is out of line.
    MM_SLAB_INLINE Result<void*> alloc(size_t size, size_t align) {
        const size_t m = small_key(size, align);
        if (m >= kMaxClassSize) [[unlikely]]
            return alloc_slow(size, align);
        const size_t c = small_class(m);
        ListNode* head = m_classes[c].partial.front();
        if (head == nullptr) [[unlikely]]
            return alloc_refill(c);
        return static_cast<void*>(take_block(desc_of_node(head), c));
    }

    MM_SLAB_INLINE Status dealloc(void* ptr, size_t size, size_t align) {
        const size_t m = small_key(size, align);
        if (m >= kMaxClassSize) [[unlikely]]
            return dealloc_slow(ptr, size, align);
        const size_t c = small_class(m);
        const auto a = reinterpret_cast<uintptr_t>(ptr);
        const uintptr_t g = ((a & ~uintptr_t(chunk_size(c) - 1)) - m_hot.gbase) >> kGranuleShift;
        if (g >= m_hot.granules) [[unlikely]]
            return dealloc_other_region(a, c);
        return put_block(m_hot.desc + g, a, c);
    }

    [[nodiscard]] size_t total_bytes() const { return m_buddy.total_bytes(); }
    [[nodiscard]] size_t used_bytes() const { return m_small_used + m_large_used; }
    [[nodiscard]] size_t available_bytes() const { return total_bytes() - used_bytes(); }

    // Chunks currently held by class c, and how many of them are empty.
    [[nodiscard]] size_t chunk_count(size_t c) const { return m_classes[c].chunks; }
    [[nodiscard]] size_t empty_chunk_count(size_t c) const { return m_classes[c].empty; }
    [[nodiscard]] const Backing& backing() const { return m_buddy; }

    // Returns every empty chunk to the buddy (also done automatically when the
    // buddy runs out). Empty chunks are on the partial lists.
    void trim() {
        for (size_t c = 0; c < kClassCount; ++c) {
            ListNode* n = m_classes[c].partial.front();
            while (n != nullptr) {
                ListNode* next = n->next;
                ChunkDesc* d = desc_of_node(n);
                if (d->used == 0) release_chunk(d, c);
                n = next;
            }
        }
    }

    [[nodiscard]] bool check_invariants() const {
        if (!m_buddy.check_invariants()) return false;
        Tally t{};
        for (size_t i = 0; i < m_region_count; ++i)
            if (!check_region(m_regions[i], t)) return false;
        for (size_t c = 0; c < kClassCount; ++c) {
            const Class& cls = m_classes[c];
            size_t partial = 0;
            bool good = cls.partial.walk(SIZE_MAX, [&](const ListNode* n) {
                const ChunkDesc* d = desc_of_node(const_cast<ListNode*>(n));
                ++partial;
                return d->tag == base_tag(c) && d->used < capacity(c);
            });
            if (!good || partial != t.not_full[c] || t.chunks[c] != cls.chunks || t.empty[c] != cls.empty) return false;
            if (cls.empty > kMaxEmptyChunks) return false;
        }
        if (t.small_used != m_small_used || m_buddy.used_bytes() != t.chunk_bytes + m_large_used) return false;
        return used_bytes() <= total_bytes();
    }

private:
    static constexpr size_t kMaxBlocksPerChunk = kMinChunk >> kMinClassShift;  // 1024
    static constexpr size_t kBitmapWords = kMaxBlocksPerChunk / 64;
    static constexpr uint8_t kUntagged = 0;
    static constexpr uint8_t kTailFlag = 0x80;
    static constexpr size_t kHotWords = 4;  // bitmap words in the descriptor's cache line
    static constexpr size_t kExtraWords = kBitmapWords - kHotWords;
    static constexpr uint8_t kNoHint = 0xff;

    // The descriptor of one granule. Meaningful fields beyond `tag` only in a
    // chunk's first granule. One cache line: the counters and the first four
    // bitmap words (all blocks of a 256..4096-byte chunk).
    struct alignas(64) ChunkDesc {
        ListNode partial_link;         // in Class::partial while used < capacity
        std::byte* base;               // the chunk (its first block)
        uint64_t hot_bits[kHotWords];  // bitmap words 0..3: all of a 256..4096-byte chunk's
        uint16_t used;                 // live blocks
        uint8_t tag;                   // kUntagged, base_tag(c) or tail_tag(c)
        uint8_t hint;                  // first non-zero bitmap word, kNoHint when full (0 for one-word bitmaps)
        uint32_t extra_off;            // words 4..15 (64- and 128-byte classes): 8-byte units from here
    };
    static_assert(sizeof(ChunkDesc) == 64 && kMaxBlocksPerChunk <= 0xffff && kBitmapWords < kNoHint);
    static constexpr size_t kExtraBytes = kExtraWords * 8;
    static constexpr size_t kGranuleMeta = sizeof(ChunkDesc) + kExtraBytes;  // 160 bytes per 64 KiB

    struct Region {
        uintptr_t raw_start;  // the span handed in
        uintptr_t raw_end;
        uintptr_t gbase;  // the 64 KiB-aligned address of desc[0]'s granule
        size_t granules;
        size_t meta_bytes;  // raw_start .. end of the descriptor table
        ChunkDesc* desc;
    };
    struct Class {
        IntrusiveList partial;  // chunks with a free block, most recently freed into first
        size_t chunks = 0;
        size_t empty = 0;
    };
    struct Tally {
        size_t chunks[kClassCount];
        size_t empty[kClassCount];
        size_t not_full[kClassCount];
        size_t small_used;
        size_t chunk_bytes;
    };

    static constexpr uint8_t base_tag(size_t c) { return static_cast<uint8_t>(c + 1); }
    static constexpr uint8_t tail_tag(size_t c) { return static_cast<uint8_t>(kTailFlag | (c + 1)); }
    static constexpr uint32_t capacity(size_t c) { return static_cast<uint32_t>(chunk_size(c) / class_size(c)); }
    static constexpr size_t bitmap_words(size_t c) { return (capacity(c) + 63) / 64; }
    // Word w of a new chunk's bitmap: blocks [64w, 64w + 64) below the capacity free.
    static constexpr uint64_t initial_word(size_t c, size_t w) {
        const size_t first = w * 64;
        if (first >= capacity(c)) return 0;
        return capacity(c) - first >= 64 ? ~uint64_t(0) : (uint64_t(1) << (capacity(c) - first)) - 1;
    }
    static ChunkDesc* desc_of_node(ListNode* n) { return reinterpret_cast<ChunkDesc*>(n); }
    // Word w of a chunk's bitmap: in the descriptor's line, or in its extra words.
    MM_SLAB_INLINE static uint64_t* bitmap_word(ChunkDesc* d, size_t w) {
        if (w < kHotWords) return d->hot_bits + w;
        return reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(d) + size_t(d->extra_off) * 8) + (w - kHotWords);
    }
    static uint64_t word_of(const ChunkDesc* d, size_t w) { return *bitmap_word(const_cast<ChunkDesc*>(d), w); }

    // (size - 1) | (align - 1): below kMaxClassSize iff size is 1..4096 and align
    // 1..4096 and a power of two, i.e. a valid small request; its bit width
    // (at least 6) is the class's shift. Anything else takes the slow path,
    // which validates it (InvalidParam) or serves it from the buddy.
    static constexpr size_t small_key(size_t size, size_t align) {
        const size_t m = (size - 1) | (align - 1);
        return (align & (align - 1)) == 0 ? m : kMaxClassSize;
    }
    static constexpr size_t small_class(size_t key) { return detail::floor_log2(key | (kMinBlock - 1)) - 5; }
    static constexpr size_t kMinBlock = size_t(1) << kMinClassShift;

    static Status layout_region(const RawRegion& raw, Region& r) {
        r.raw_start = raw.start;
        r.raw_end = raw.end;
        r.gbase = raw.start & ~uintptr_t(kMinChunk - 1);
        const uintptr_t span = raw.end - r.gbase;  // no wrap: check_new_region ruled it out
        r.granules = (span >> kGranuleShift) + ((span & (kMinChunk - 1)) != 0 ? 1 : 0);
        const uintptr_t table = (raw.start + alignof(ChunkDesc) - 1) & ~uintptr_t(alignof(ChunkDesc) - 1);
        if (table < raw.start || raw.end - raw.start < table - raw.start) return err(Error::InvalidParam);
        // extra_off is 32 bits of 8-byte units: regions up to ~22 TiB.
        if (r.granules * kGranuleMeta / 8 > UINT32_MAX) return err(Error::InvalidParam);
        if (raw.end - table <= r.granules * kGranuleMeta) return err(Error::InvalidParam);
        r.meta_bytes = table - raw.start + r.granules * kGranuleMeta;
        r.desc = reinterpret_cast<ChunkDesc*>(table);
        return ok();
    }

    // Pops the lowest free block of a chunk with a free block.
    MM_SLAB_INLINE std::byte* take_block(ChunkDesc* d, size_t c) {
        // Classes with a one-word bitmap (1024..4096 bytes) keep hint at 0.
        const size_t wi = bitmap_words(c) == 1 ? 0 : d->hint;
        uint64_t w = *bitmap_word(d, wi);
        const auto bit = static_cast<size_t>(std::countr_zero(w));
        w &= w - 1;
        *bitmap_word(d, wi) = w;
        if (bitmap_words(c) > 1 && w == 0) [[unlikely]]
            advance_hint(d, c);
        if (d->used++ == 0) --m_classes[c].empty;
        if (d->used == capacity(c)) [[unlikely]]
            m_classes[c].partial.remove(&d->partial_link);
        m_small_used += class_size(c);
        return d->base + ((wi * 64 + bit) << (kMinClassShift + c));
    }

    // Checks a small dealloc against the descriptor of p's chunk granule (see the
    // contract) and returns the block to its chunk.
    MM_SLAB_INLINE Status put_block(ChunkDesc* d, uintptr_t a, size_t c) {
        const uintptr_t off = a & (chunk_size(c) - 1);
        const size_t idx = off >> (kMinClassShift + c);
        const uint64_t bit = uint64_t(1) << (idx % 64);
        uint64_t& word = *bitmap_word(d, idx / 64);
        // The tag folds in the class: one compare checks both.
        if (d->tag != base_tag(c) || (off & (class_size(c) - 1)) != 0 || (word & bit) != 0) [[unlikely]]
            return err(Error::NotAllocated);
        word |= bit;
        if (bitmap_words(c) > 1 && idx / 64 < d->hint) d->hint = static_cast<uint8_t>(idx / 64);
        m_small_used -= class_size(c);
        if (d->used-- == capacity(c)) [[unlikely]]
            m_classes[c].partial.push_front(&d->partial_link);
        if (d->used == 0) note_empty(d, c);
        return ok();
    }

    MM_SLAB_NOINLINE void advance_hint(ChunkDesc* d, size_t c) {
        for (size_t w = size_t(d->hint) + 1; w < bitmap_words(c); ++w) {
            if (*bitmap_word(d, w) != 0) {
                d->hint = static_cast<uint8_t>(w);
                return;
            }
        }
        d->hint = kNoHint;  // full: the next dealloc sets it
    }

    MM_SLAB_NOINLINE Result<void*> alloc_refill(size_t c) {
        auto d = grow(c);
        if (!d) return err(d.error());
        return static_cast<void*>(take_block(*d, c));
    }
    MM_SLAB_NOINLINE Result<void*> alloc_slow(size_t size, size_t align) {
        MM_TRY(validate_layout(size, align));
        return alloc_large(size, align);
    }
    MM_SLAB_NOINLINE Status dealloc_slow(void* ptr, size_t size, size_t align) {
        MM_TRY(validate_layout(size, align));
        return dealloc_large(ptr, size, align);
    }
    MM_SLAB_NOINLINE Status dealloc_other_region(uintptr_t a, size_t c) {
        const uintptr_t chunk = a & ~uintptr_t(chunk_size(c) - 1);
        const int ri = find_region(chunk);
        if (ri < 0) return err(Error::NotAllocated);
        const Region& r = m_regions[static_cast<size_t>(ri)];
        m_hot = {r.gbase, r.granules, r.desc};
        return put_block(r.desc + ((chunk - r.gbase) >> kGranuleShift), a, c);
    }

    // The region whose descriptor table covers the granule at a, or -1.
    int find_region(uintptr_t a) const {
        for (size_t i = 0; i < m_region_count; ++i) {
            if (((a - m_regions[i].gbase) >> kGranuleShift) < m_regions[i].granules) return static_cast<int>(i);
        }
        return -1;
    }
    ChunkDesc* granule_desc(uintptr_t a) const {
        const int ri = find_region(a);
        if (ri < 0) return nullptr;
        const Region& r = m_regions[static_cast<size_t>(ri)];
        return r.desc + ((a - r.gbase) >> kGranuleShift);
    }

    void note_empty(ChunkDesc* d, size_t c) {
        if (++m_classes[c].empty > kMaxEmptyChunks) [[unlikely]]
            release_chunk(d, c);
    }

    Result<ChunkDesc*> grow(size_t c) {
        auto mem = m_buddy.alloc(chunk_size(c), chunk_size(c));
        if (!mem && mem.error() == Error::NoMemory) {
            trim();
            mem = m_buddy.alloc(chunk_size(c), chunk_size(c));
        }
        if (!mem) return err(mem.error());
        ChunkDesc* d = granule_desc(reinterpret_cast<uintptr_t>(*mem));
        MM_ASSERT(d != nullptr);  // buddy blocks lie inside the regions
        d->base = static_cast<std::byte*>(*mem);
        d->used = 0;
        d->hint = 0;
        d->tag = base_tag(c);
        for (size_t w = 0; w < kBitmapWords; ++w) *bitmap_word(d, w) = initial_word(c, w);
        for (size_t g = 1; g < chunk_size(c) / kMinChunk; ++g) d[g].tag = tail_tag(c);
        Class& cls = m_classes[c];
        cls.partial.push_front(&d->partial_link);
        ++cls.chunks;
        ++cls.empty;
        return d;
    }

    MM_SLAB_NOINLINE void release_chunk(ChunkDesc* d, size_t c) {
        Class& cls = m_classes[c];
        cls.partial.remove(&d->partial_link);
        --cls.chunks;
        --cls.empty;
        for (size_t g = 0; g < chunk_size(c) / kMinChunk; ++g) d[g].tag = kUntagged;
        MM_ASSERT(m_buddy.dealloc(d->base, chunk_size(c), chunk_size(c)).has_value());
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
        // Anything inside a chunk is not a large block (unchecked Buddy would
        // accept a chunk's granule as a live block of its size).
        const ChunkDesc* d = granule_desc(reinterpret_cast<uintptr_t>(p));
        if (d != nullptr && d->tag != kUntagged) return err(Error::NotAllocated);
        MM_TRY(m_buddy.dealloc(p, size, align));
        m_large_used -= Backing::block_size(size, align);
        return ok();
    }

    bool check_region(const Region& r, Tally& t) const {
        const uintptr_t extra = reinterpret_cast<uintptr_t>(r.desc + r.granules);
        for (size_t g = 0; g < r.granules; ++g) {
            if (reinterpret_cast<uintptr_t>(r.desc + g) + size_t(r.desc[g].extra_off) * 8 != extra + g * kExtraBytes)
                return false;
        }
        for (size_t g = 0; g < r.granules;) {
            const ChunkDesc* d = r.desc + g;
            if (d->tag == kUntagged) {
                ++g;
                continue;
            }
            const size_t c = size_t(d->tag - 1);
            if (c >= kClassCount || !check_chunk(d, c, r.gbase + (uintptr_t(g) << kGranuleShift))) return false;
            for (size_t k = 1; k < chunk_size(c) / kMinChunk; ++k)
                if (g + k >= r.granules || d[k].tag != tail_tag(c)) return false;
            ++t.chunks[c];
            t.empty[c] += d->used == 0 ? 1 : 0;
            t.not_full[c] += d->used < capacity(c) ? 1 : 0;
            t.small_used += size_t(d->used) * class_size(c);
            t.chunk_bytes += chunk_size(c);
            g += chunk_size(c) / kMinChunk;
        }
        return true;
    }

    static bool check_chunk(const ChunkDesc* d, size_t c, uintptr_t granule) {
        if (reinterpret_cast<uintptr_t>(d->base) != granule || granule % chunk_size(c) != 0) return false;
        if (d->used > capacity(c)) return false;
        size_t free = 0;
        size_t first_nonzero = kNoHint;
        for (size_t w = 0; w < kBitmapWords; ++w) {
            free += static_cast<size_t>(std::popcount(word_of(d, w)));
            if (word_of(d, w) != 0 && first_nonzero == kNoHint) first_nonzero = w;
        }
        const size_t tail = capacity(c) % 64;
        if (tail != 0 && (word_of(d, capacity(c) / 64) >> tail) != 0) return false;
        for (size_t w = bitmap_words(c); w < kBitmapWords; ++w)
            if (word_of(d, w) != 0) return false;
        if (bitmap_words(c) == 1) return free + d->used == capacity(c) && d->hint == 0;
        return free + d->used == capacity(c) && (d->used == capacity(c) || d->hint == first_nonzero);
    }

    Backing m_buddy;
    std::array<Class, kClassCount> m_classes{};
    size_t m_small_used = 0;
    size_t m_large_used = 0;
    std::array<Region, kMaxRegions> m_regions{};  // unused entries cover no granule
    size_t m_region_count = 0;
    // The region of the last dealloc outside the fast path (none at first).
    struct HotRegion {
        uintptr_t gbase = 0;
        size_t granules = 0;
        ChunkDesc* desc = nullptr;
    } m_hot;
    bool m_initialized = false;
};

}  // namespace mm
