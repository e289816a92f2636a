// SwapStore: a swap file of fixed-size page slots, read and written with io_uring.
//
// What it is: slot s holds one page at file offset s * page_size. Slots are
// handed out by an mm::BitmapIdAllocator over max_pages IDs whose IDs at or
// past the file's current length are kept allocated ("reserved"), so every
// allocated slot is inside the file; when none is free the file grows by
// grow_pages (fallocate) up to max_pages, beyond which allocate() fails with
// "swap file ... is full". I/O is asynchronous: write_async/read_async queue
// a request with a caller tag, submit() sends the batch, reap() returns
// finished requests (SwapCompletion). write()/read() are the synchronous forms.
// Statistics count pages and bytes and keep latency histograms (queue to
// completion) for reads and writes.
//
// Invariants (check_invariants): the allocator's own invariants; allocated
// slots + reserved slots + free slots == max_pages with reserved ==
// max_pages - file_pages; file_pages <= max_pages.
// Ownership: the store owns its file (created with O_EXCL, removed on
// destruction unless keep_file) and the allocator metadata. Callers keep the
// buffers of queued requests alive until reaped. Single-threaded.
//
// Errors: Resource (swap full, fallocate out of space), Invalid (slot not
// allocated, wrong buffer size or (direct_io) alignment, double free, free
// with I/O in flight),
// Io / Timeout from UringFile.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "mm/alloc/id_allocator.h"
#include "vmm/base/error.h"
#include "vmm/memory/fault_stats.h"
#include "vmm/store/uring_file.h"

namespace pv::store {

using SwapSlot = uint64_t;

struct SwapCompletion {
    uint64_t tag = 0;
    IoKind kind = IoKind::Read;
    SwapSlot slot = 0;
    Status status;
};

struct SwapStats {
    uint64_t pages_written = 0;
    uint64_t pages_read = 0;
    uint64_t bytes_written = 0;
    uint64_t bytes_read = 0;
    uint64_t write_errors = 0;
    uint64_t read_errors = 0;
    uint64_t slots_in_use = 0;
    uint64_t file_pages = 0;
    memory::LatencyHistogram::Snapshot write_latency;
    memory::LatencyHistogram::Snapshot read_latency;
};

class SwapStore {
public:
    struct Options {
        uint32_t page_size = 4096;
        uint64_t max_pages = 1u << 18;  // 1 GiB of 4 KiB pages
        uint64_t grow_pages = 1024;     // file growth step
        bool keep_file = false;
        // O_DIRECT: swapped pages bypass the host page cache (otherwise the
        // pages a memory limit pushed out stay in host memory as cache).
        // Buffers must then be aligned to 4096 bytes.
        bool direct_io = false;
        UringFile::Options io;
    };

    static constexpr uint64_t kMaxSlots = uint64_t{1} << 32;

    // Creates path (must not exist).
    static Expected<std::unique_ptr<SwapStore>> create(std::string path, Options options);
    ~SwapStore();
    SwapStore(const SwapStore&) = delete;
    SwapStore& operator=(const SwapStore&) = delete;

    Expected<SwapSlot> allocate();
    Status free(SwapSlot slot);

    // Registers memory (e.g. the guest RAM mapping) for fixed-buffer I/O.
    Status register_memory(std::span<const std::span<std::byte>> regions) { return m_io->register_buffers(regions); }

    Status write_async(SwapSlot slot, std::span<const std::byte> page, uint64_t tag);
    Status read_async(SwapSlot slot, std::span<std::byte> page, uint64_t tag);
    Status submit() { return m_io->submit(); }
    // Appends finished requests to out (at least min_wait unless fewer are pending).
    Expected<size_t> reap(std::vector<SwapCompletion>& out, size_t min_wait);

    Status write(SwapSlot slot, std::span<const std::byte> page);
    Status read(SwapSlot slot, std::span<std::byte> page);

    [[nodiscard]] SwapStats stats() const;
    [[nodiscard]] uint64_t file_pages() const { return m_file_pages; }
    [[nodiscard]] uint64_t slots_in_use() const { return m_allocator.used() - (m_options.max_pages - m_file_pages); }
    [[nodiscard]] uint64_t in_flight() const { return m_io->in_flight(); }
    [[nodiscard]] bool is_allocated(SwapSlot slot) const {
        return slot < m_file_pages && m_allocator.is_allocated(slot);
    }
    [[nodiscard]] const std::string& path() const { return m_path; }
    [[nodiscard]] bool check_invariants() const;

private:
    SwapStore(std::string path, Options options) : m_path(std::move(path)), m_options(options) {}
    Status init();
    Status grow();
    Status check_request(SwapSlot slot, const std::byte* data, size_t size, const char* what) const;

    std::string m_path;
    Options m_options;
    int m_fd = -1;
    std::unique_ptr<UringFile> m_io;
    std::vector<std::byte> m_allocator_metadata;
    mm::BitmapIdAllocator m_allocator;
    uint64_t m_file_pages = 0;
    std::vector<IoCompletion> m_reaped;
    std::unordered_map<SwapSlot, uint32_t> m_busy;  // slot -> requests in flight
    uint64_t m_pages_written = 0;
    uint64_t m_pages_read = 0;
    uint64_t m_write_errors = 0;
    uint64_t m_read_errors = 0;
    memory::LatencyHistogram m_write_latency;
    memory::LatencyHistogram m_read_latency;
};

}  // namespace pv::store
