#include "vmm/store/snapshot_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace pv::store {

namespace {

bool valid_options(const SnapshotWriter::Options& o) {
    return std::has_single_bit(o.page_size) && o.page_size >= kMinPageSize && o.page_size <= kMaxPageSize &&
           o.pages_per_block >= 1 && o.pages_per_block <= kMaxPagesPerBlock &&
           uint64_t(o.pages_per_block) * o.page_size <= kMaxBlockBytes && o.batch_pages >= 1 &&
           uint64_t(o.batch_pages) * o.page_size <= (uint64_t{1} << 30) && o.chunks >= 2 && o.chunks <= 64;
}

uint64_t round_up(uint64_t v, uint64_t align) { return (v + align - 1) / align * align; }

std::string directory_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

SnapshotWriter::SnapshotWriter(std::string path, Options options)
    : m_path(std::move(path)), m_options(std::move(options)) {}

Expected<std::unique_ptr<SnapshotWriter>> SnapshotWriter::create(std::string path, Options options) {
    if (!valid_options(options))
        return make_error(ErrorKind::Invalid, path + ": invalid snapshot writer options (page size, block, batch)");
    std::unique_ptr<SnapshotWriter> w(new SnapshotWriter(std::move(path), std::move(options)));
    w->m_temp_path = w->m_path + ".tmp." + std::to_string(::getpid());
    w->m_fd = ::open(w->m_temp_path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0644);
    if (w->m_fd < 0) return errno_error(ErrorKind::Io, w->m_temp_path + ": cannot create the snapshot file");
    PV_TRY_ASSIGN(w->m_io, UringFile::create(w->m_fd, w->m_temp_path, w->m_options.io));
    const auto& o = w->m_options;
    size_t chunk_bytes = size_t(o.batch_pages) * o.page_size;
    w->m_staging.resize(chunk_bytes * o.chunks);
    for (uint32_t i = 0; i < o.chunks; ++i)
        w->m_chunks.push_back(Chunk{std::span(w->m_staging).subspan(i * chunk_bytes, chunk_bytes)});
    // Registration is an optimisation: without it (e.g. RLIMIT_MEMLOCK) plain writes are used.
    std::span<std::byte> region(w->m_staging);
    if (region.size() <= (size_t{1} << 30)) (void)w->m_io->register_buffers(std::span(&region, 1));
    w->m_data_offset = std::max<uint64_t>(kSnapshotHeaderBlock, o.page_size);
    return w;
}

SnapshotWriter::~SnapshotWriter() {
    m_io.reset();  // waits for (or cancels) writes into m_staging
    if (m_fd >= 0) ::close(m_fd);
    if (!m_finished && !m_temp_path.empty()) ::unlink(m_temp_path.c_str());
}

Status SnapshotWriter::fail(Status status) {
    if (!status && m_failure) m_failure = status;
    return status;
}

Status SnapshotWriter::check_usable() const {
    if (!m_failure) return m_failure;
    if (m_finished) return make_error(ErrorKind::Invalid, m_path + ": snapshot already finished");
    return {};
}

Status SnapshotWriter::add_record(uint32_t kind, std::span<const std::byte> payload) {
    PV_TRY(check_usable());
    uint64_t padded = round_up(payload.size(), 8);
    if (m_record_count + 1 > kMaxRecords || m_records.size() + sizeof(RecordHeader) + padded > kMaxRecordBytes)
        return make_error(ErrorKind::Invalid, m_path + ": snapshot records exceed 1 GiB or 2^20 records");
    RecordHeader h{kind, 0, payload.size()};
    size_t at = m_records.size();
    m_records.resize(at + sizeof h + padded);
    std::memcpy(m_records.data() + at, &h, sizeof h);
    if (!payload.empty()) std::memcpy(m_records.data() + at + sizeof h, payload.data(), payload.size());
    ++m_record_count;
    return {};
}

Status SnapshotWriter::add_page(uint64_t gpn, std::span<const std::byte> page) {
    PV_TRY(check_usable());
    const uint32_t ps = m_options.page_size;
    if (page.size() != ps)
        return make_error(ErrorKind::Invalid, m_path + ": page " + std::to_string(gpn) + " is " +
                                                  std::to_string(page.size()) + " bytes, not " + std::to_string(ps));
    if (!m_gpns.empty() && gpn <= m_gpns.back())
        return make_error(ErrorKind::Invalid, m_path + ": page " + std::to_string(gpn) + " added after page " +
                                                  std::to_string(m_gpns.back()) + " (pages go in increasing order)");
    if (gpn > UINT64_MAX / ps)
        return make_error(ErrorKind::Invalid, m_path + ": page number " + std::to_string(gpn) + " out of range");
    Chunk* chunk = &m_chunks[m_current];
    if (chunk->filled == m_options.batch_pages) {
        PV_TRY(fail(flush_current()));
        chunk = &m_chunks[m_current];
    }
    if (chunk->filled == 0) chunk->first_index = m_gpns.size();
    auto slot = chunk->memory.subspan(size_t(chunk->filled) * ps, ps);
    std::memcpy(slot.data(), page.data(), ps);
    ++chunk->filled;
    m_gpns.push_back(gpn);
    m_block_hash.update(slot);
    if (++m_block_pages == m_options.pages_per_block) {
        m_blocks.push_back(BlockEntry{m_block_hash.digest()});
        m_block_hash.reset();
        m_block_pages = 0;
    }
    return {};
}

Status SnapshotWriter::add_pages(uint64_t first_gpn, std::span<const std::byte> pages) {
    const uint32_t ps = m_options.page_size;
    if (pages.size() % ps != 0)
        return make_error(ErrorKind::Invalid, m_path + ": add_pages of " + std::to_string(pages.size()) +
                                                  " bytes, not a multiple of the page size");
    for (size_t i = 0; i < pages.size() / ps; ++i) PV_TRY(add_page(first_gpn + i, pages.subspan(i * ps, ps)));
    return {};
}

// Queues the current chunk's write and makes the next chunk current (waiting
// for its earlier write first).
Status SnapshotWriter::flush_current() {
    Chunk& c = m_chunks[m_current];
    if (c.filled > 0) {
        uint64_t offset = m_data_offset + c.first_index * m_options.page_size;
        PV_TRY(m_io->queue_write(offset, c.memory.first(size_t(c.filled) * m_options.page_size), m_current));
        PV_TRY(m_io->submit());
        c.in_flight = true;
    }
    m_current = (m_current + 1) % uint32_t(m_chunks.size());
    PV_TRY(wait_chunk(m_current));
    m_chunks[m_current].filled = 0;
    return {};
}

Status SnapshotWriter::wait_chunk(uint32_t chunk) {
    std::vector<IoCompletion> done;
    while (m_chunks[chunk].in_flight) {
        PV_TRY(m_io->reap(done, 1));
        PV_TRY(handle_completions(done));
    }
    return {};
}

Status SnapshotWriter::handle_completions(std::vector<IoCompletion>& done) {
    Status first;
    for (auto& c : done) {
        if (c.tag >= m_chunks.size()) continue;
        Chunk& chunk = m_chunks[c.tag];
        chunk.in_flight = false;
        if (!c.status && first) first = c.status;
        if (c.status) m_bytes_done += uint64_t(chunk.filled) * m_options.page_size;
    }
    done.clear();
    report_progress();
    return first;
}

void SnapshotWriter::report_progress() {
    if (!m_options.progress) return;
    uint64_t total = std::max(m_options.expected_pages, uint64_t(m_gpns.size())) * m_options.page_size;
    m_options.progress(m_bytes_done, std::max(total, m_bytes_done));
}

Status SnapshotWriter::write_metadata(FileHeader& h) {
    const uint32_t ps = m_options.page_size;
    h = FileHeader{};
    h.magic = kSnapshotMagic;
    h.version = kSnapshotVersion;
    h.header_size = sizeof(FileHeader);
    h.page_size = ps;
    h.pages_per_block = m_options.pages_per_block;
    h.data_offset = m_data_offset;
    h.page_count = m_gpns.size();
    h.data_size = h.page_count * ps;
    h.records_offset = h.data_offset + h.data_size;
    h.records_size = m_records.size();
    h.record_count = m_record_count;
    h.index_offset = h.records_offset + h.records_size;
    h.blocks_offset = h.index_offset + h.page_count * sizeof(uint64_t);
    h.block_count = m_blocks.size();
    h.file_size = h.blocks_offset + h.block_count * sizeof(BlockEntry);
    auto index_bytes = std::as_bytes(std::span(m_gpns));
    auto block_bytes = std::as_bytes(std::span(m_blocks));
    h.records_hash = checksum(m_records);
    Hasher index_hash;
    index_hash.update(index_bytes);
    index_hash.update(block_bytes);
    h.index_hash = index_hash.digest();
    h.header_hash = checksum(std::as_bytes(std::span(&h, 1)));
    std::vector<WriteRequest> reqs;
    if (!m_records.empty()) reqs.push_back({h.records_offset, m_records});
    if (!index_bytes.empty()) reqs.push_back({h.index_offset, index_bytes});
    if (!block_bytes.empty()) reqs.push_back({h.blocks_offset, block_bytes});
    PV_TRY(m_io->write_batch(reqs));
    // A file with no metadata after the header still needs its full length.
    if (::ftruncate(m_fd, off_t(h.file_size)) != 0)
        return errno_error(ErrorKind::Io, m_temp_path + ": cannot set the snapshot length");
    if (m_options.sync) PV_TRY(m_io->sync());  // everything else before the header
    std::vector<std::byte> header_block(kSnapshotHeaderBlock);
    std::memcpy(header_block.data(), &h, sizeof h);
    WriteRequest header_req{0, header_block};
    PV_TRY(m_io->write_batch(std::span(&header_req, 1)));
    if (m_options.sync) PV_TRY(m_io->sync());
    return {};
}

Expected<SnapshotSummary> SnapshotWriter::finish() {
    PV_TRY(check_usable());
    if (m_block_pages > 0) {
        m_blocks.push_back(BlockEntry{m_block_hash.digest()});
        m_block_pages = 0;
    }
    PV_TRY(fail(flush_current()));
    for (uint32_t i = 0; i < m_chunks.size(); ++i) PV_TRY(fail(wait_chunk(i)));
    FileHeader h{};
    PV_TRY(fail(write_metadata(h)));
    if (::rename(m_temp_path.c_str(), m_path.c_str()) != 0) {
        auto e = errno_error(ErrorKind::Io, m_temp_path + ": cannot rename to " + m_path);
        (void)fail(e);
        return e;
    }
    m_finished = true;
    if (m_options.sync) {
        int dir = ::open(directory_of(m_path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir >= 0) {
            ::fsync(dir);
            ::close(dir);
        }
    }
    m_bytes_done = h.data_size;
    if (m_options.progress) m_options.progress(h.data_size, h.data_size);
    return SnapshotSummary{h.page_count, h.record_count, h.block_count, h.file_size};
}

}  // namespace pv::store
