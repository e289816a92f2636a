// SnapshotReader: opens a snapshot file and reads its pages with io_uring.
//
// What it is: open() validates everything except the page data before it
// returns (magic; format version, "snapshot format version N, this pagevisor
// reads 1"; header checksum; flags; page and block sizes; the file length;
// every section inside the file, aligned where required and not overlapping
// another; section checksums; every record; the index strictly increasing).
// It keeps the records, the index and the block table in memory. Page data is
// checked when it is read: read_block() and read_pages() read whole blocks and
// compare their checksum with the block table; a mismatch names the block and
// its pages. verify_all() reads every block (an eager check).
//
// Invariants (check_invariants): the index is strictly increasing, its size
// is the header's page_count; block_count == ceil(page_count / pages_per_block);
// every section lies in [header block, file_size) without overlap.
//
// Errors: Io for everything about the file's content or reading it (the
// message names the file and what is wrong), Timeout from UringFile, Invalid
// for a caller's mistake (unknown page, wrong buffer size).
// Ownership: the reader owns its fd (open_fd dups the one given).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/base/error.h"
#include "vmm/kvm/fd.h"
#include "vmm/store/snapshot_format.h"
#include "vmm/store/uring_file.h"

namespace pv::store {

struct SnapshotRecord {
    uint32_t kind = 0;
    std::span<const std::byte> payload;  // into the reader's copy of the records section
};

class SnapshotReader {
public:
    struct Options {
        UringFile::Options io;
        uint32_t max_blocks_per_batch = 16;  // read_pages: blocks read per submission
    };

    static Expected<std::unique_ptr<SnapshotReader>> open(const std::string& path, Options options);
    static Expected<std::unique_ptr<SnapshotReader>> open(const std::string& path) { return open(path, Options{}); }
    // Reads the snapshot through a duplicate of fd (e.g. a memfd); name is for messages.
    static Expected<std::unique_ptr<SnapshotReader>> open_fd(int fd, std::string name, Options options);

    [[nodiscard]] const FileHeader& header() const { return m_header; }
    [[nodiscard]] uint32_t page_size() const { return m_header.page_size; }
    [[nodiscard]] uint64_t page_count() const { return m_header.page_count; }
    [[nodiscard]] uint64_t block_count() const { return m_header.block_count; }
    [[nodiscard]] std::span<const uint64_t> page_numbers() const { return m_gpns; }
    [[nodiscard]] const std::vector<SnapshotRecord>& records() const { return m_records; }
    [[nodiscard]] const std::string& name() const { return m_name; }

    // Index position of a guest page number, if the snapshot holds it.
    [[nodiscard]] std::optional<uint64_t> find(uint64_t gpn) const;
    // File offset of that page's data.
    [[nodiscard]] std::optional<uint64_t> page_offset(uint64_t gpn) const;
    [[nodiscard]] uint64_t pages_in_block(uint64_t block) const;
    [[nodiscard]] uint64_t block_of_index(uint64_t index) const { return index / m_header.pages_per_block; }

    // out.size() >= pages_in_block(block) * page_size(); checksum verified.
    Status read_block(uint64_t block, std::span<std::byte> out);
    // out.size() == gpns.size() * page_size(); every gpn must be in the index.
    Status read_pages(std::span<const uint64_t> gpns, std::span<std::byte> out);
    Status verify_all();

    [[nodiscard]] bool check_invariants() const;

private:
    SnapshotReader(kvm::UniqueFd fd, std::string name) : m_fd(std::move(fd)), m_name(std::move(name)) {}
    Status load(Options options);
    Status validate_header(uint64_t actual_size);
    Status validate_sections() const;
    Status load_metadata();
    Status parse_records();
    Status parse_index();
    Status read_exact(uint64_t offset, std::span<std::byte> out);
    Status read_blocks(std::span<const uint64_t> blocks, std::span<std::byte> scratch);
    Status check_block(uint64_t block, std::span<const std::byte> data) const;
    [[nodiscard]] Error corrupt(const std::string& what) const;

    kvm::UniqueFd m_fd;
    std::string m_name;
    Options m_options;
    FileHeader m_header{};
    std::vector<std::byte> m_record_bytes;
    std::vector<SnapshotRecord> m_records;
    std::vector<uint64_t> m_gpns;
    std::vector<BlockEntry> m_blocks;
    std::vector<std::byte> m_scratch;
    std::unique_ptr<UringFile> m_io;  // last: destroyed (and drained) before the buffers it reads into
};

}  // namespace pv::store
