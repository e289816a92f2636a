#include "vmm/store/uring_file.h"

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

namespace pv::store {

uint64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000ULL + uint64_t(ts.tv_nsec);
}

namespace {

// Single operations are limited to what one read/write can return (the kernel
// caps a transfer at 2 GiB - 4 KiB); pages are far smaller.
constexpr size_t kMaxOpBytes = size_t{1} << 30;

const char* kind_name(IoKind kind) { return kind == IoKind::Read ? "read" : "write"; }

}  // namespace

UringFile::UringFile(int fd, std::string name, Options options)
    : m_fd(fd), m_name(std::move(name)), m_options(options) {}

Expected<std::unique_ptr<UringFile>> UringFile::create(int fd, std::string name, Options options) {
    if (fd < 0) return make_error(ErrorKind::Invalid, name + ": invalid file descriptor");
    if (options.queue_depth == 0 || options.queue_depth > 4096)
        return make_error(ErrorKind::Invalid, name + ": io_uring queue depth must be 1..4096");
    if (options.timeout.count() <= 0) return make_error(ErrorKind::Invalid, name + ": I/O timeout must be positive");
    std::unique_ptr<UringFile> file(new UringFile(fd, std::move(name), options));
    int rc = io_uring_queue_init(options.queue_depth, &file->m_ring, 0);
    if (rc < 0)
        return make_error(
            ErrorKind::Resource,
            file->m_name + ": cannot create an io_uring (" + std::to_string(options.queue_depth) + " entries)", -rc);
    file->m_ring_ok = true;
    // The completion queue is twice the submission queue; keeping the number
    // in flight at the SQ size means it can never overflow.
    file->m_ops.resize(options.queue_depth);
    for (uint32_t i = options.queue_depth; i-- > 0;) file->m_free_slots.push_back(i);
    return file;
}

UringFile::~UringFile() {
    if (!m_ring_ok) return;
    if (m_in_flight > 0) cancel_all();
    io_uring_queue_exit(&m_ring);
}

Status UringFile::register_buffers(std::span<const std::span<std::byte>> regions) {
    if (m_in_flight > 0 || m_unsubmitted > 0)
        return make_error(ErrorKind::Invalid, m_name + ": register_buffers with I/O in flight");
    if (regions.size() > kMaxRegions) return make_error(ErrorKind::Invalid, m_name + ": at most 16 registered regions");
    if (!m_regions.empty()) {
        io_uring_unregister_buffers(&m_ring);
        m_regions.clear();
    }
    if (regions.empty()) return {};
    std::vector<iovec> iov;
    for (auto r : regions) {
        if (r.empty() || r.size() > kMaxOpBytes)
            return make_error(ErrorKind::Invalid, m_name + ": a registered region must be 1 byte..1 GiB");
        iov.push_back(iovec{r.data(), r.size()});
    }
    int rc = io_uring_register_buffers(&m_ring, iov.data(), unsigned(iov.size()));
    if (rc < 0) return make_error(ErrorKind::Resource, m_name + ": cannot register I/O buffers", -rc);
    m_regions.assign(regions.begin(), regions.end());
    return {};
}

int UringFile::find_region(const std::byte* data, size_t length) const {
    for (size_t i = 0; i < m_regions.size(); ++i) {
        const std::byte* lo = m_regions[i].data();
        if (data >= lo && length <= m_regions[i].size() && size_t(data - lo) <= m_regions[i].size() - length)
            return int(i);
    }
    return -1;
}

Error UringFile::op_error(const Op& op, int err_no, const std::string& what) const {
    return Error{ErrorKind::Io, err_no,
                 m_name + ": " + kind_name(op.kind) + " of " + std::to_string(op.length) + " bytes at offset " +
                     std::to_string(op.offset) + (what.empty() ? "" : " " + what)};
}

Status UringFile::queue_read(uint64_t offset, std::span<std::byte> buffer, uint64_t tag) {
    return queue_op(IoKind::Read, offset, buffer.data(), buffer.size(), tag);
}

Status UringFile::queue_write(uint64_t offset, std::span<const std::byte> buffer, uint64_t tag) {
    // The kernel only reads a write's buffer; Op stores one pointer type for both.
    return queue_op(IoKind::Write, offset, const_cast<std::byte*>(buffer.data()), buffer.size(), tag);
}

Status UringFile::queue_op(IoKind kind, uint64_t offset, std::byte* data, size_t length, uint64_t tag) {
    if (m_broken) return make_error(ErrorKind::Io, m_name + ": I/O disabled after an earlier timeout");
    if (length == 0 || length > kMaxOpBytes || data == nullptr)
        return make_error(ErrorKind::Invalid, m_name + ": I/O length must be 1 byte..1 GiB");
    if (offset > uint64_t(INT64_MAX) - length)
        return make_error(ErrorKind::Invalid, m_name + ": I/O offset past the largest file offset");
    if (m_free_slots.empty()) PV_TRY(wait_and_process(1));
    uint32_t slot = m_free_slots.back();
    m_free_slots.pop_back();
    Op& op = m_ops[slot];
    op = Op{};
    op.kind = kind;
    op.offset = offset;
    op.data = data;
    op.length = uint32_t(length);
    op.tag = tag;
    op.busy = true;
    op.start_ns = monotonic_ns();
    int region = find_region(data, length);
    op.fixed = region >= 0;
    op.buf_index = uint16_t(region < 0 ? 0 : region);
    ++m_in_flight;
    return prepare(slot);
}

// Puts the remaining part of an operation (or the sync) into an SQE.
Status UringFile::prepare(uint32_t slot) {
    io_uring_sqe* sqe = io_uring_get_sqe(&m_ring);
    if (sqe == nullptr) {
        PV_TRY(submit());
        sqe = io_uring_get_sqe(&m_ring);
        if (sqe == nullptr) return make_error(ErrorKind::Internal, m_name + ": io_uring submission queue full");
    }
    Op& op = m_ops[slot];
    std::byte* data = op.data + op.done;
    unsigned len = op.length - op.done;
    uint64_t off = op.offset + op.done;
    if (op.sync)
        io_uring_prep_fsync(sqe, m_fd, IORING_FSYNC_DATASYNC);
    else if (op.kind == IoKind::Read && op.fixed)
        io_uring_prep_read_fixed(sqe, m_fd, data, len, off, op.buf_index);
    else if (op.kind == IoKind::Read)
        io_uring_prep_read(sqe, m_fd, data, len, off);
    else if (op.fixed)
        io_uring_prep_write_fixed(sqe, m_fd, data, len, off, op.buf_index);
    else
        io_uring_prep_write(sqe, m_fd, data, len, off);
    io_uring_sqe_set_data64(sqe, slot);
    ++m_unsubmitted;
    return {};
}

Status UringFile::submit() {
    while (m_unsubmitted > 0) {
        int rc = io_uring_submit(&m_ring);
        if (rc == -EINTR || rc == -EAGAIN) continue;
        if (rc < 0) return make_error(ErrorKind::Io, m_name + ": io_uring submit failed", -rc);
        m_unsubmitted -= std::min<size_t>(m_unsubmitted, size_t(rc));
        if (rc == 0) break;
    }
    return {};
}

void UringFile::finish_op(uint32_t slot, Status status) {
    Op& op = m_ops[slot];
    if (!op.sync) {
        m_ready.push_back(IoCompletion{op.tag, op.kind, op.offset, monotonic_ns() - op.start_ns, std::move(status)});
    } else {
        m_ready.push_back(IoCompletion{op.tag, IoKind::Write, 0, monotonic_ns() - op.start_ns, std::move(status)});
    }
    op.busy = false;
    --m_in_flight;
    m_free_slots.push_back(slot);
}

Status UringFile::process_cqe(const io_uring_cqe& cqe) {
    uint64_t slot = io_uring_cqe_get_data64(&cqe);
    if (slot >= m_ops.size() || !m_ops[slot].busy)
        return make_error(ErrorKind::Internal, m_name + ": completion for an unknown io_uring request");
    Op& op = m_ops[slot];
    int res = cqe.res;
    if (res == -EINTR || res == -EAGAIN) return prepare(uint32_t(slot));
    if (res < 0) {
        finish_op(uint32_t(slot), mm::Unexpected<Error>{op_error(op, -res, op.sync ? "(fdatasync)" : "failed")});
        return {};
    }
    if (op.sync) {
        finish_op(uint32_t(slot), {});
        return {};
    }
    if (res == 0) {
        std::string what = "stopped after " + std::to_string(op.done) +
                           " bytes: " + (op.kind == IoKind::Read ? "end of file" : "no progress");
        finish_op(uint32_t(slot), mm::Unexpected<Error>{op_error(op, 0, what)});
        return {};
    }
    op.done += std::min<uint32_t>(uint32_t(res), op.length - op.done);
    if (op.done < op.length) return prepare(uint32_t(slot));  // short transfer: the rest
    finish_op(uint32_t(slot), {});
    return {};
}

// Submits what is queued and processes completions until at least
// min_completions operations have finished (or nothing is in flight).
Status UringFile::wait_and_process(size_t min_completions) {
    size_t finished_before = m_ready.size();
    while (m_in_flight > 0 && m_ready.size() - finished_before < min_completions) {
        PV_TRY(submit());
        io_uring_cqe* cqe = nullptr;
        auto ms = m_options.timeout.count();
        __kernel_timespec ts{ms / 1000, (ms % 1000) * 1'000'000};
        int rc = io_uring_wait_cqe_timeout(&m_ring, &cqe, &ts);
        if (rc == -EINTR) continue;
        if (rc == -ETIME) {
            size_t n = m_in_flight;
            cancel_all();
            m_broken = true;
            return make_error(ErrorKind::Timeout, m_name + ": no I/O completion within " + std::to_string(ms) +
                                                      " ms (" + std::to_string(n) + " requests in flight)");
        }
        if (rc < 0) return make_error(ErrorKind::Io, m_name + ": waiting for io_uring completions failed", -rc);
        unsigned head = 0;
        unsigned seen = 0;
        Status status;
        io_uring_for_each_cqe(&m_ring, head, cqe) {
            ++seen;
            if (status) status = process_cqe(*cqe);
        }
        io_uring_cq_advance(&m_ring, seen);
        PV_TRY(status);
    }
    return submit();  // resubmissions of short transfers
}

// Cancels everything in flight and waits (bounded) until the kernel has
// dropped it, so that no buffer is used after the caller sees the error.
void UringFile::cancel_all() {
    io_uring_sqe* sqe = io_uring_get_sqe(&m_ring);
    if (sqe != nullptr) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        io_uring_sqe_set_data64(sqe, UINT64_MAX);
        io_uring_submit(&m_ring);
    }
    uint64_t deadline = monotonic_ns() + 1'000'000'000ULL;
    while (m_in_flight > 0 && monotonic_ns() < deadline) {
        io_uring_cqe* cqe = nullptr;
        __kernel_timespec ts{0, 100'000'000};
        if (io_uring_wait_cqe_timeout(&m_ring, &cqe, &ts) < 0) continue;
        uint64_t slot = io_uring_cqe_get_data64(cqe);
        if (slot < m_ops.size() && m_ops[slot].busy)
            finish_op(uint32_t(slot), mm::Unexpected<Error>{op_error(m_ops[slot], ECANCELED, "cancelled")});
        io_uring_cqe_seen(&m_ring, cqe);
    }
    m_unsubmitted = 0;
}

Expected<size_t> UringFile::reap(std::vector<IoCompletion>& out, size_t min_wait) {
    if (m_ready.size() < min_wait) PV_TRY(wait_and_process(min_wait - m_ready.size()));
    if (m_ready.empty() && m_in_flight > 0) {  // non-blocking peek
        PV_TRY(submit());
        io_uring_cqe* cqe = nullptr;
        while (io_uring_peek_cqe(&m_ring, &cqe) == 0) {
            Status s = process_cqe(*cqe);
            io_uring_cqe_seen(&m_ring, cqe);
            PV_TRY(s);
        }
        PV_TRY(submit());
    }
    size_t n = m_ready.size();
    for (auto& c : m_ready) out.push_back(std::move(c));
    m_ready.clear();
    return n;
}

// Waits until the count operations tagged first_tag.. have completed; other
// completions stay in m_ready for reap(). Returns the first failure.
Status UringFile::wait_for_tags(uint64_t first_tag, size_t count) {
    Status first_error;
    size_t got = 0;
    while (true) {
        auto it = std::stable_partition(m_ready.begin(), m_ready.end(), [&](const IoCompletion& c) {
            return !(c.tag >= first_tag && c.tag - first_tag < count);
        });
        for (auto j = it; j != m_ready.end(); ++j, ++got)
            if (first_error && !j->status) first_error = j->status;
        m_ready.erase(it, m_ready.end());
        if (got >= count) return first_error;
        Status s = wait_and_process(1);
        if (!s) return s;  // timeout or a ring failure: nothing more will complete
    }
}

Status UringFile::read_batch(std::span<const ReadRequest> requests) {
    uint64_t first = m_next_batch_tag;
    m_next_batch_tag += requests.size();
    size_t queued = 0;
    Status status;
    for (const auto& r : requests) {
        status = queue_read(r.offset, r.buffer, first + queued);
        if (!status) break;
        ++queued;
    }
    Status waited = wait_for_tags(first, queued);
    return status ? waited : status;
}

Status UringFile::write_batch(std::span<const WriteRequest> requests) {
    uint64_t first = m_next_batch_tag;
    m_next_batch_tag += requests.size();
    size_t queued = 0;
    Status status;
    for (const auto& r : requests) {
        status = queue_write(r.offset, r.buffer, first + queued);
        if (!status) break;
        ++queued;
    }
    Status waited = wait_for_tags(first, queued);
    return status ? waited : status;
}

Status UringFile::sync() {
    if (m_broken) return make_error(ErrorKind::Io, m_name + ": I/O disabled after an earlier timeout");
    // Everything queued before has to be on the file first.
    PV_TRY(wait_and_process(m_in_flight));
    if (m_free_slots.empty()) return make_error(ErrorKind::Internal, m_name + ": no slot for fdatasync");
    uint32_t slot = m_free_slots.back();
    m_free_slots.pop_back();
    uint64_t tag = m_next_batch_tag++;
    m_ops[slot] = Op{};
    m_ops[slot].sync = true;
    m_ops[slot].busy = true;
    m_ops[slot].kind = IoKind::Write;
    m_ops[slot].tag = tag;
    m_ops[slot].start_ns = monotonic_ns();
    ++m_in_flight;
    PV_TRY(prepare(slot));
    return wait_for_tags(tag, 1);
}

}  // namespace pv::store
