// The on-disk layout of a pagevisor snapshot file (docs/snapshot-format.md is
// the specification; this header is its one C++ rendering).
//
// Layout, every integer little-endian (the structs below are read and written
// on little-endian hosts only; a static_assert keeps it that way):
//   [0, 4096)                  FileHeader, zero padded to one 4 KiB block
//   [data_offset, +data_size)  page data: page i of the index at data_offset + i * page_size
//   [records_offset, +size)    TLV records: RecordHeader + payload, each padded to 8 bytes
//   [index_offset, +size)      page_count u64 guest page numbers, strictly increasing
//   [blocks_offset, +size)     block_count BlockEntry: checksum of the pages of block b
//                              (index entries [b * pages_per_block, ...), in index order)
// The sections do not overlap and end at or before file_size (the file's length).
// Checksums are XXH3-64 (libxxhash, seed 0). The header's own checksum covers
// the header bytes with header_hash = 0; records_hash and index_hash cover the
// records section and the index followed by the block table.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace pv::store {

static_assert(std::endian::native == std::endian::little, "the snapshot format is little-endian");

inline constexpr uint64_t kSnapshotMagic = 0x50414E5356474150ULL;  // the bytes "PAGVSNAP"
inline constexpr uint32_t kSnapshotVersion = 1;
inline constexpr uint64_t kSnapshotHeaderBlock = 4096;
inline constexpr uint32_t kMaxPagesPerBlock = 1024;
inline constexpr uint32_t kMinPageSize = 4096;
inline constexpr uint32_t kMaxPageSize = 1u << 21;              // 2 MiB
inline constexpr uint64_t kMaxBlockBytes = uint64_t{64} << 20;  // pages_per_block * page_size
inline constexpr uint64_t kMaxRecordBytes = uint64_t{1} << 30;
inline constexpr uint32_t kMaxRecords = 1u << 20;

// Header flags. Version 1 defines none; a reader rejects unknown flags.
inline constexpr uint64_t kSnapshotKnownFlags = 0;

struct FileHeader {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;  // sizeof(FileHeader) in this version
    uint64_t flags;
    uint32_t page_size;
    uint32_t pages_per_block;
    uint64_t file_size;
    uint64_t data_offset;
    uint64_t data_size;
    uint64_t records_offset;
    uint64_t records_size;
    uint64_t record_count;
    uint64_t index_offset;
    uint64_t page_count;  // index entries (and pages of data)
    uint64_t blocks_offset;
    uint64_t block_count;
    uint64_t records_hash;
    uint64_t index_hash;  // index and block table, in file order
    uint64_t header_hash;
};
static_assert(sizeof(FileHeader) == 136);

// A typed record: the VMM's opaque state (vCPU registers, memory layout, ...).
struct RecordHeader {
    uint32_t kind;
    uint32_t flags;   // zero in version 1
    uint64_t length;  // payload bytes, followed by zero padding to a multiple of 8
};
static_assert(sizeof(RecordHeader) == 16);

struct BlockEntry {
    uint64_t hash;
};
static_assert(sizeof(BlockEntry) == 8);

// Record kinds in use. New kinds are added here; a reader hands unknown kinds
// to its caller, which decides whether they matter.
enum class RecordKind : uint32_t {
    VcpuState = 1,
    MemoryLayout = 2,
    MemorySetAreas = 3,
    PrefetchOrder = 4,
    User = 0x10000,  // first kind for tests and experiments
};

// XXH3-64 of bytes (seed 0).
uint64_t checksum(std::span<const std::byte> bytes);

// The same checksum over bytes given in pieces (equal to checksum() of their
// concatenation). Owns a heap-allocated XXH3 state.
class Hasher {
public:
    Hasher();
    ~Hasher();
    Hasher(const Hasher&) = delete;
    Hasher& operator=(const Hasher&) = delete;
    void reset();
    void update(std::span<const std::byte> bytes);
    [[nodiscard]] uint64_t digest() const;

private:
    void* m_state;
};

}  // namespace pv::store
