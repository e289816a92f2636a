#include "vmm/store/swap_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>

namespace pv::store {

namespace {
constexpr uintptr_t kDirectIoAlign = 4096;
}  // namespace

Expected<std::unique_ptr<SwapStore>> SwapStore::create(std::string path, Options options) {
    if (!std::has_single_bit(options.page_size) || options.page_size < 512 || options.page_size > (1u << 21) ||
        (options.direct_io && options.page_size < kDirectIoAlign))
        return make_error(ErrorKind::Invalid, path +
                                                  ": swap page size must be a power of two, 512 B (4 KiB with "
                                                  "O_DIRECT)..2 MiB");
    if (options.max_pages == 0 || options.max_pages > kMaxSlots || options.grow_pages == 0)
        return make_error(ErrorKind::Invalid, path + ": swap size limit must be 1..2^32 pages, growth step positive");
    std::unique_ptr<SwapStore> s(new SwapStore(std::move(path), options));
    PV_TRY(s->init());
    return s;
}

Status SwapStore::init() {
    int flags = O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | (m_options.direct_io ? O_DIRECT : 0);
    m_fd = ::open(m_path.c_str(), flags, 0600);
    if (m_fd < 0)
        return errno_error(ErrorKind::Io, m_path + (m_options.direct_io && errno == EINVAL
                                                        ? ": cannot create the swap file with O_DIRECT"
                                                        : ": cannot create the swap file"));
    PV_TRY_ASSIGN(m_io, UringFile::create(m_fd, m_path, m_options.io));
    m_allocator_metadata.resize(mm::BitmapIdAllocator::metadata_bytes(m_options.max_pages));
    if (!m_allocator.init(m_allocator_metadata, m_options.max_pages))
        return make_error(ErrorKind::Internal, m_path + ": swap slot allocator init failed");
    // Every slot starts reserved: the file is empty.
    auto all = m_allocator.alloc_id(m_options.max_pages);
    if (!all || *all != 0) return make_error(ErrorKind::Internal, m_path + ": swap slot reservation failed");
    return {};
}

SwapStore::~SwapStore() {
    m_io.reset();  // waits for (or cancels) requests using callers' buffers
    if (m_fd >= 0) ::close(m_fd);
    if (!m_options.keep_file && !m_path.empty()) ::unlink(m_path.c_str());
}

Status SwapStore::grow() {
    if (m_file_pages == m_options.max_pages)
        return make_error(ErrorKind::Resource, m_path + ": swap file is full (" + std::to_string(m_options.max_pages) +
                                                   " pages of " + std::to_string(m_options.page_size) + " bytes)");
    uint64_t add = std::min(m_options.grow_pages, m_options.max_pages - m_file_pages);
    off_t offset = off_t(m_file_pages * m_options.page_size);
    off_t length = off_t(add * m_options.page_size);
    int rc = ::fallocate(m_fd, 0, offset, length);
    if (rc != 0)
        return errno_error(errno == ENOSPC || errno == EFBIG || errno == EDQUOT ? ErrorKind::Resource : ErrorKind::Io,
                           m_path + ": cannot grow the swap file to " +
                               std::to_string((m_file_pages + add) * m_options.page_size) + " bytes");
    if (!m_allocator.dealloc_id(m_file_pages, add))
        return make_error(ErrorKind::Internal, m_path + ": swap slot release after growth failed");
    m_file_pages += add;
    return {};
}

Expected<SwapSlot> SwapStore::allocate() {
    auto slot = m_allocator.alloc_id();
    if (!slot) {
        PV_TRY(grow());
        slot = m_allocator.alloc_id();
        if (!slot) return make_error(ErrorKind::Internal, m_path + ": no swap slot after growing the file");
    }
    return *slot;
}

Status SwapStore::free(SwapSlot slot) {
    if (!is_allocated(slot))
        return make_error(ErrorKind::Invalid,
                          m_path + ": free of swap slot " + std::to_string(slot) + " that is not allocated");
    if (m_busy.contains(slot))
        return make_error(ErrorKind::Invalid,
                          m_path + ": free of swap slot " + std::to_string(slot) + " with I/O in flight");
    if (!m_allocator.dealloc_id(slot)) return make_error(ErrorKind::Internal, m_path + ": swap slot free failed");
    return {};
}

Status SwapStore::check_request(SwapSlot slot, const std::byte* data, size_t size, const char* what) const {
    if (!is_allocated(slot))
        return make_error(ErrorKind::Invalid,
                          m_path + ": " + what + " of swap slot " + std::to_string(slot) + " that is not allocated");
    if (size != m_options.page_size)
        return make_error(ErrorKind::Invalid, m_path + ": " + what + " of " + std::to_string(size) +
                                                  " bytes, the swap page size is " +
                                                  std::to_string(m_options.page_size));
    if (m_options.direct_io && reinterpret_cast<uintptr_t>(data) % kDirectIoAlign != 0)
        return make_error(ErrorKind::Invalid, m_path + ": " + what + " buffer not aligned to 4096 bytes (O_DIRECT)");
    return {};
}

Status SwapStore::write_async(SwapSlot slot, std::span<const std::byte> page, uint64_t tag) {
    PV_TRY(check_request(slot, page.data(), page.size(), "write"));
    PV_TRY(m_io->queue_write(slot * m_options.page_size, page, tag));
    ++m_busy[slot];
    return {};
}

Status SwapStore::read_async(SwapSlot slot, std::span<std::byte> page, uint64_t tag) {
    PV_TRY(check_request(slot, page.data(), page.size(), "read"));
    PV_TRY(m_io->queue_read(slot * m_options.page_size, page, tag));
    ++m_busy[slot];
    return {};
}

Expected<size_t> SwapStore::reap(std::vector<SwapCompletion>& out, size_t min_wait) {
    m_reaped.clear();
    PV_TRY_ASSIGN(size_t n, m_io->reap(m_reaped, min_wait));
    for (auto& c : m_reaped) {
        SwapSlot slot = c.offset / m_options.page_size;
        if (auto it = m_busy.find(slot); it != m_busy.end() && --it->second == 0) m_busy.erase(it);
        bool write = c.kind == IoKind::Write;
        (write ? m_write_latency : m_read_latency).record(c.latency_ns);
        if (c.status)
            ++(write ? m_pages_written : m_pages_read);
        else
            ++(write ? m_write_errors : m_read_errors);
        out.push_back(SwapCompletion{c.tag, c.kind, slot, std::move(c.status)});
    }
    m_reaped.clear();
    return n;
}

// reap() hands out every completion, so the synchronous forms require a
// store with nothing pending (they would otherwise swallow others' results).
Status SwapStore::write(SwapSlot slot, std::span<const std::byte> page) {
    if (m_io->in_flight() > 0 || m_io->ready() > 0)
        return make_error(ErrorKind::Invalid, m_path + ": synchronous write with asynchronous I/O pending");
    PV_TRY(write_async(slot, page, 0));
    std::vector<SwapCompletion> done;
    PV_TRY(reap(done, 1));
    return done.front().status;
}

Status SwapStore::read(SwapSlot slot, std::span<std::byte> page) {
    if (m_io->in_flight() > 0 || m_io->ready() > 0)
        return make_error(ErrorKind::Invalid, m_path + ": synchronous read with asynchronous I/O pending");
    PV_TRY(read_async(slot, page, 0));
    std::vector<SwapCompletion> done;
    PV_TRY(reap(done, 1));
    return done.front().status;
}

SwapStats SwapStore::stats() const {
    SwapStats s;
    s.pages_written = m_pages_written;
    s.pages_read = m_pages_read;
    s.bytes_written = m_pages_written * m_options.page_size;
    s.bytes_read = m_pages_read * m_options.page_size;
    s.write_errors = m_write_errors;
    s.read_errors = m_read_errors;
    s.slots_in_use = slots_in_use();
    s.file_pages = m_file_pages;
    s.write_latency = m_write_latency.snapshot();
    s.read_latency = m_read_latency.snapshot();
    return s;
}

bool SwapStore::check_invariants() const {
    if (!m_allocator.check_invariants() || m_file_pages > m_options.max_pages) return false;
    if (m_allocator.size() != m_options.max_pages) return false;
    // Every slot at or past the file's end is reserved (allocated).
    uint64_t reserved = m_options.max_pages - m_file_pages;
    if (m_allocator.used() < reserved) return false;
    for (uint64_t s = m_file_pages; s < m_options.max_pages; s += std::max<uint64_t>(1, reserved / 64))
        if (!m_allocator.is_allocated(s)) return false;
    for (const auto& [slot, count] : m_busy)
        if (count == 0 || !is_allocated(slot)) return false;
    return true;
}

}  // namespace pv::store
