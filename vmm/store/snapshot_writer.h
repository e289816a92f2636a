// SnapshotWriter: writes a snapshot file (snapshot_format.h) with batched
// io_uring writes.
//
// What it is: pages are appended in strictly increasing guest page number
// (add_page / add_pages); each is copied into one of a few staging chunks
// (registered with the ring), checksummed there block by block, and a full
// chunk is written with one request while the next one fills. Records
// (add_record) are kept in memory. finish() writes the records, the index, the
// block table and last the header, fdatasyncs, renames the temporary file
// "<path>.tmp.<pid>" to path and fsyncs the directory: a crash never leaves a
// partial file under the final name. A writer destroyed before finish()
// removes its temporary file.
//
// Errors: Invalid (page out of order, wrong size, bad options, record too
// large, use after finish or after a failure), Io (the file, with errno and
// offset), Timeout (UringFile). After any error the writer is failed and
// finish() returns the first error.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "vmm/base/error.h"
#include "vmm/store/snapshot_format.h"
#include "vmm/store/uring_file.h"

namespace pv::store {

struct SnapshotSummary {
    uint64_t pages = 0;
    uint64_t records = 0;
    uint64_t blocks = 0;
    uint64_t file_size = 0;
};

class SnapshotWriter {
public:
    // Called after each chunk of page data reaches the file, and once at the
    // end with done == total. total is expected_pages' bytes (or the bytes
    // queued so far when more pages than expected arrive).
    using Progress = std::function<void(uint64_t done_bytes, uint64_t total_bytes)>;

    struct Options {
        uint32_t page_size = 4096;
        uint32_t pages_per_block = 64;
        uint32_t batch_pages = 64;  // pages per write request
        uint32_t chunks = 4;        // staging chunks (write requests in flight + the one filling)
        uint64_t expected_pages = 0;
        Progress progress;
        bool sync = true;  // fdatasync + directory fsync in finish()
        UringFile::Options io;
    };

    static Expected<std::unique_ptr<SnapshotWriter>> create(std::string path, Options options);
    static Expected<std::unique_ptr<SnapshotWriter>> create(std::string path) {
        return create(std::move(path), Options{});
    }
    ~SnapshotWriter();
    SnapshotWriter(const SnapshotWriter&) = delete;
    SnapshotWriter& operator=(const SnapshotWriter&) = delete;

    Status add_record(uint32_t kind, std::span<const std::byte> payload);
    Status add_record(RecordKind kind, std::span<const std::byte> payload) {
        return add_record(uint32_t(kind), payload);
    }
    // page.size() == page_size; gpn greater than every earlier one.
    Status add_page(uint64_t gpn, std::span<const std::byte> page);
    // pages.size() a multiple of page_size: pages first_gpn, first_gpn + 1, ...
    Status add_pages(uint64_t first_gpn, std::span<const std::byte> pages);

    Expected<SnapshotSummary> finish();

    [[nodiscard]] const std::string& path() const { return m_path; }
    [[nodiscard]] const std::string& temp_path() const { return m_temp_path; }
    [[nodiscard]] uint64_t pages() const { return m_gpns.size(); }

private:
    struct Chunk {
        std::span<std::byte> memory;
        uint32_t filled = 0;       // pages
        uint64_t first_index = 0;  // index position of its first page
        bool in_flight = false;
    };

    SnapshotWriter(std::string path, Options options);
    Status fail(Status status);
    Status flush_current();
    Status wait_chunk(uint32_t chunk);
    Status handle_completions(std::vector<IoCompletion>& done);
    Status write_metadata(FileHeader& header);
    void report_progress();
    Status check_usable() const;

    std::string m_path;
    std::string m_temp_path;
    Options m_options;
    int m_fd = -1;
    std::unique_ptr<UringFile> m_io;
    std::vector<std::byte> m_staging;
    std::vector<Chunk> m_chunks;
    uint32_t m_current = 0;
    uint64_t m_data_offset = 0;
    std::vector<uint64_t> m_gpns;
    std::vector<BlockEntry> m_blocks;
    Hasher m_block_hash;
    uint32_t m_block_pages = 0;
    std::vector<std::byte> m_records;
    uint64_t m_record_count = 0;
    uint64_t m_bytes_done = 0;
    bool m_finished = false;
    Status m_failure;
};

}  // namespace pv::store
