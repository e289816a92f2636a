// UringFile: an io_uring over one file descriptor, for page-sized I/O.
//
// What it is: a submission/completion queue pair (liburing) bound to one fd
// plus a table of the operations in flight. Callers queue reads and writes
// (queue_read/queue_write, each tagged with a caller-chosen 64-bit tag),
// submit them with one system call, and reap completions (reap) or run a whole
// batch to completion (read_batch/write_batch). Short transfers are finished
// by resubmitting the remainder; EINTR/EAGAIN are retried; end of file on a
// read is an error. Buffers inside a region given to register_buffers() go
// through the fixed-buffer opcodes (no per-I/O page pinning in the kernel).
//
// Waiting is always bounded (Options::timeout): a wait that sees no
// completion for that long is an ErrorKind::Timeout error naming the file and
// the number of requests in flight. After a timeout the UringFile cancels what
// is in flight and refuses further I/O ("broken"); its buffers must stay alive
// until it is destroyed.
//
// Errors: every failure is a pv::Error of kind Io (or Timeout) whose message
// names the file, the operation, the offset and the length, with the errno.
// Ownership: the fd is borrowed unless an owned fd is passed (adopt()); the
// caller keeps every queued buffer alive until its completion is reaped.
// Single-threaded: one thread uses a UringFile at a time.
#pragma once

#include <liburing.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "vmm/base/error.h"

namespace pv::store {

enum class IoKind : uint8_t { Read, Write };

// One finished operation: its tag, and ok or the error that ended it.
struct IoCompletion {
    uint64_t tag = 0;
    IoKind kind = IoKind::Read;
    uint64_t offset = 0;
    uint64_t latency_ns = 0;  // queue_*() to completion
    Status status;
};

// A request of a batch: buffer <-> file bytes at offset.
struct ReadRequest {
    uint64_t offset = 0;
    std::span<std::byte> buffer;
};
struct WriteRequest {
    uint64_t offset = 0;
    std::span<const std::byte> buffer;
};

class UringFile {
public:
    struct Options {
        unsigned queue_depth = 64;  // submission queue entries (and the in-flight limit)
        std::chrono::milliseconds timeout{10000};
    };

    // Borrows fd (the caller keeps it open). name is used in error messages.
    static Expected<std::unique_ptr<UringFile>> create(int fd, std::string name, Options options);
    static Expected<std::unique_ptr<UringFile>> create(int fd, std::string name) {
        return create(fd, std::move(name), Options{});
    }
    ~UringFile();
    UringFile(const UringFile&) = delete;
    UringFile& operator=(const UringFile&) = delete;

    // Registers memory regions (at most kMaxRegions, each at most 1 GiB, the
    // kernel's limit) for fixed-buffer I/O. Replaces earlier registrations;
    // nothing may be in flight. Failure (e.g. RLIMIT_MEMLOCK) leaves plain I/O.
    static constexpr size_t kMaxRegions = 16;
    Status register_buffers(std::span<const std::span<std::byte>> regions);

    // Queue one operation (not yet submitted unless the queue was full). A
    // full in-flight table first waits for completions (kept for reap()).
    Status queue_read(uint64_t offset, std::span<std::byte> buffer, uint64_t tag);
    Status queue_write(uint64_t offset, std::span<const std::byte> buffer, uint64_t tag);
    Status submit();

    // Appends finished operations to out: at least min_wait of them (waiting,
    // bounded by the timeout) unless fewer are pending. Returns how many.
    Expected<size_t> reap(std::vector<IoCompletion>& out, size_t min_wait);

    // Queue, submit and wait for every request; the first failure is returned
    // after all have finished.
    Status read_batch(std::span<const ReadRequest> requests);
    Status write_batch(std::span<const WriteRequest> requests);
    // fdatasync through the ring (bounded like every other wait).
    Status sync();

    [[nodiscard]] size_t in_flight() const { return m_in_flight; }
    [[nodiscard]] size_t ready() const { return m_ready.size(); }
    [[nodiscard]] bool broken() const { return m_broken; }
    [[nodiscard]] const std::string& name() const { return m_name; }
    [[nodiscard]] bool uses_fixed_buffers() const { return !m_regions.empty(); }

private:
    struct Op {
        IoKind kind = IoKind::Read;
        bool fixed = false;
        bool sync = false;
        bool busy = false;
        uint16_t buf_index = 0;
        uint64_t offset = 0;  // of the whole operation
        std::byte* data = nullptr;
        uint32_t length = 0;
        uint32_t done = 0;  // bytes transferred so far
        uint64_t tag = 0;
        uint64_t start_ns = 0;
    };

    UringFile(int fd, std::string name, Options options);
    Status queue_op(IoKind kind, uint64_t offset, std::byte* data, size_t length, uint64_t tag);
    Status prepare(uint32_t slot);
    Status wait_and_process(size_t min_completions);
    Status process_cqe(const io_uring_cqe& cqe);
    void finish_op(uint32_t slot, Status status);
    Status wait_for_tags(uint64_t first_tag, size_t count);
    void cancel_all();
    int find_region(const std::byte* data, size_t length) const;
    [[nodiscard]] Error op_error(const Op& op, int err_no, const std::string& what) const;

    int m_fd;
    std::string m_name;
    Options m_options;
    io_uring m_ring{};
    bool m_ring_ok = false;
    bool m_broken = false;
    std::vector<Op> m_ops;
    std::vector<uint32_t> m_free_slots;
    size_t m_in_flight = 0;
    size_t m_unsubmitted = 0;
    std::vector<IoCompletion> m_ready;
    std::vector<std::span<std::byte>> m_regions;
    uint64_t m_next_batch_tag = uint64_t{1} << 63;  // batch tags never collide with small caller tags
};

// Monotonic nanoseconds (latency measurement).
uint64_t monotonic_ns();

}  // namespace pv::store
