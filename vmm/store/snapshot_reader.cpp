#include "vmm/store/snapshot_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>

namespace pv::store {

namespace {

struct Section {
    const char* name;
    uint64_t offset;
    uint64_t size;
};

// a * b, or nullopt on overflow.
std::optional<uint64_t> mul(uint64_t a, uint64_t b) {
    uint64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
    return r;
}

std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

}  // namespace

Error SnapshotReader::corrupt(const std::string& what) const { return Error{ErrorKind::Io, 0, m_name + ": " + what}; }

Expected<std::unique_ptr<SnapshotReader>> SnapshotReader::open(const std::string& path, Options options) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_error(ErrorKind::Io, path + ": cannot open the snapshot");
    std::unique_ptr<SnapshotReader> r(new SnapshotReader(kvm::UniqueFd(fd), path));
    PV_TRY(r->load(options));
    return r;
}

Expected<std::unique_ptr<SnapshotReader>> SnapshotReader::open_fd(int fd, std::string name, Options options) {
    int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) return errno_error(ErrorKind::Io, name + ": cannot duplicate the snapshot descriptor");
    std::unique_ptr<SnapshotReader> r(new SnapshotReader(kvm::UniqueFd(copy), std::move(name)));
    PV_TRY(r->load(options));
    return r;
}

Status SnapshotReader::load(Options options) {
    m_options = options;
    if (m_options.max_blocks_per_batch == 0) m_options.max_blocks_per_batch = 1;
    struct stat st {};
    if (::fstat(m_fd.get(), &st) != 0) return errno_error(ErrorKind::Io, m_name + ": cannot stat the snapshot");
    if (!S_ISREG(st.st_mode)) return mm::Unexpected<Error>{corrupt("not a regular file")};
    PV_TRY_ASSIGN(m_io, UringFile::create(m_fd.get(), m_name, m_options.io));
    PV_TRY(validate_header(uint64_t(st.st_size)));
    PV_TRY(validate_sections());
    return load_metadata();
}

Status SnapshotReader::read_exact(uint64_t offset, std::span<std::byte> out) {
    if (out.empty()) return {};
    // One request per 1 GiB at most (UringFile's limit per operation).
    std::vector<ReadRequest> reqs;
    for (uint64_t done = 0; done < out.size(); done += uint64_t{1} << 30) {
        size_t n = std::min<uint64_t>(out.size() - done, uint64_t{1} << 30);
        reqs.push_back({offset + done, out.subspan(done, n)});
    }
    return m_io->read_batch(reqs);
}

Status SnapshotReader::validate_header(uint64_t actual_size) {
    if (actual_size < kSnapshotHeaderBlock)
        return mm::Unexpected<Error>{corrupt("too short for a snapshot header (" + std::to_string(actual_size) +
                                             " bytes, the header block is 4096)")};
    std::vector<std::byte> block(kSnapshotHeaderBlock);
    PV_TRY(read_exact(0, block));
    std::memcpy(&m_header, block.data(), sizeof m_header);
    const FileHeader& h = m_header;
    if (h.magic != kSnapshotMagic)
        return mm::Unexpected<Error>{corrupt("not a pagevisor snapshot (magic " + hex(h.magic) + ")")};
    if (h.version != kSnapshotVersion)
        return mm::Unexpected<Error>{corrupt("snapshot format version " + std::to_string(h.version) +
                                             ", this pagevisor reads " + std::to_string(kSnapshotVersion))};
    if (h.header_size != sizeof(FileHeader))
        return mm::Unexpected<Error>{corrupt("header size " + std::to_string(h.header_size) + ", expected " +
                                             std::to_string(sizeof(FileHeader)))};
    FileHeader copy = h;
    copy.header_hash = 0;
    uint64_t hash = checksum(std::as_bytes(std::span(&copy, 1)));
    if (hash != h.header_hash)
        return mm::Unexpected<Error>{
            corrupt("header checksum mismatch (stored " + hex(h.header_hash) + ", computed " + hex(hash) + ")")};
    for (size_t i = sizeof(FileHeader); i < block.size(); ++i)
        if (block[i] != std::byte{0})
            return mm::Unexpected<Error>{corrupt("header block byte " + std::to_string(i) + " is not zero")};
    if ((h.flags & ~kSnapshotKnownFlags) != 0)
        return mm::Unexpected<Error>{corrupt("unknown header flags " + hex(h.flags))};
    if (!std::has_single_bit(h.page_size) || h.page_size < kMinPageSize || h.page_size > kMaxPageSize)
        return mm::Unexpected<Error>{corrupt("page size " + std::to_string(h.page_size) + " not supported")};
    if (h.pages_per_block == 0 || h.pages_per_block > kMaxPagesPerBlock ||
        uint64_t(h.pages_per_block) * h.page_size > kMaxBlockBytes)
        return mm::Unexpected<Error>{corrupt("pages per block " + std::to_string(h.pages_per_block) +
                                             " out of range (1..1024 and at most 64 MiB per block)")};
    if (h.file_size != actual_size)
        return mm::Unexpected<Error>{corrupt("file is " + std::to_string(actual_size) + " bytes, the header says " +
                                             std::to_string(h.file_size) + " (truncated or appended to)")};
    return {};
}

Status SnapshotReader::validate_sections() const {
    const FileHeader& h = m_header;
    auto data_size = mul(h.page_count, h.page_size);
    if (!data_size || *data_size != h.data_size)
        return mm::Unexpected<Error>{
            corrupt("data size " + std::to_string(h.data_size) + " is not " + std::to_string(h.page_count) + " pages")};
    uint64_t blocks = h.page_count / h.pages_per_block + (h.page_count % h.pages_per_block != 0);
    if (h.block_count != blocks)
        return mm::Unexpected<Error>{corrupt("block count " + std::to_string(h.block_count) + ", expected " +
                                             std::to_string(blocks) + " for " + std::to_string(h.page_count) +
                                             " pages")};
    if (h.data_offset % h.page_size != 0)
        return mm::Unexpected<Error>{
            corrupt("page data offset " + std::to_string(h.data_offset) + " not page aligned")};
    if (h.record_count > kMaxRecords || h.records_size > kMaxRecordBytes)
        return mm::Unexpected<Error>{corrupt("records section too large")};
    auto index_size = mul(h.page_count, sizeof(uint64_t));
    auto blocks_size = mul(h.block_count, sizeof(BlockEntry));
    if (!index_size || !blocks_size) return mm::Unexpected<Error>{corrupt("page count out of range")};
    std::array<Section, 4> sections{
        Section{"page data", h.data_offset, h.data_size}, Section{"records", h.records_offset, h.records_size},
        Section{"index", h.index_offset, *index_size}, Section{"block table", h.blocks_offset, *blocks_size}};
    for (const auto& s : sections) {
        if (s.size == 0) continue;
        if (s.offset < kSnapshotHeaderBlock || s.offset > h.file_size || s.size > h.file_size - s.offset)
            return mm::Unexpected<Error>{corrupt(std::string(s.name) + " section [" + std::to_string(s.offset) + ", +" +
                                                 std::to_string(s.size) + ") outside the file (" +
                                                 std::to_string(h.file_size) + " bytes)")};
    }
    for (size_t i = 0; i < sections.size(); ++i)
        for (size_t j = i + 1; j < sections.size(); ++j) {
            const Section& a = sections[i];
            const Section& b = sections[j];
            if (a.size == 0 || b.size == 0) continue;
            if (a.offset < b.offset + b.size && b.offset < a.offset + a.size)
                return mm::Unexpected<Error>{corrupt(std::string(a.name) + " and " + b.name + " sections overlap")};
        }
    return {};
}

Status SnapshotReader::load_metadata() {
    const FileHeader& h = m_header;
    m_record_bytes.resize(h.records_size);
    m_gpns.resize(h.page_count);
    m_blocks.resize(h.block_count);
    PV_TRY(read_exact(h.records_offset, m_record_bytes));
    PV_TRY(read_exact(h.index_offset, std::as_writable_bytes(std::span(m_gpns))));
    PV_TRY(read_exact(h.blocks_offset, std::as_writable_bytes(std::span(m_blocks))));
    if (checksum(m_record_bytes) != h.records_hash)
        return mm::Unexpected<Error>{corrupt("records section checksum mismatch")};
    Hasher index_hash;
    index_hash.update(std::as_bytes(std::span(m_gpns)));
    index_hash.update(std::as_bytes(std::span(m_blocks)));
    if (index_hash.digest() != h.index_hash) return mm::Unexpected<Error>{corrupt("page index checksum mismatch")};
    PV_TRY(parse_records());
    return parse_index();
}

Status SnapshotReader::parse_records() {
    std::span<const std::byte> rest(m_record_bytes);
    for (uint64_t i = 0; i < m_header.record_count; ++i) {
        RecordHeader rh{};
        if (rest.size() < sizeof rh)
            return mm::Unexpected<Error>{corrupt("record " + std::to_string(i) + " past the records section")};
        std::memcpy(&rh, rest.data(), sizeof rh);
        rest = rest.subspan(sizeof rh);
        uint64_t padded = rh.length > rest.size() ? UINT64_MAX : (rh.length + 7) / 8 * 8;
        if (rh.flags != 0 || padded > rest.size())
            return mm::Unexpected<Error>{corrupt("record " + std::to_string(i) + " (kind " + std::to_string(rh.kind) +
                                                 ", " + std::to_string(rh.length) + " bytes) is malformed")};
        auto payload = rest.first(rh.length);
        for (auto b : rest.subspan(rh.length, padded - rh.length))
            if (b != std::byte{0})
                return mm::Unexpected<Error>{corrupt("record " + std::to_string(i) + " has non-zero padding")};
        m_records.push_back(SnapshotRecord{rh.kind, payload});
        rest = rest.subspan(padded);
    }
    if (!rest.empty())
        return mm::Unexpected<Error>{corrupt(std::to_string(rest.size()) + " bytes after the last record")};
    return {};
}

Status SnapshotReader::parse_index() {
    uint64_t max_gpn = UINT64_MAX / m_header.page_size;
    for (uint64_t i = 0; i < m_gpns.size(); ++i) {
        if (m_gpns[i] > max_gpn)
            return mm::Unexpected<Error>{
                corrupt("index entry " + std::to_string(i) + ": page number " + hex(m_gpns[i]) + " out of range")};
        if (i > 0 && m_gpns[i] <= m_gpns[i - 1])
            return mm::Unexpected<Error>{corrupt("index entry " + std::to_string(i) + ": page " + hex(m_gpns[i]) +
                                                 (m_gpns[i] == m_gpns[i - 1] ? " duplicated" : " out of order"))};
    }
    return {};
}

std::optional<uint64_t> SnapshotReader::find(uint64_t gpn) const {
    auto it = std::lower_bound(m_gpns.begin(), m_gpns.end(), gpn);
    if (it == m_gpns.end() || *it != gpn) return std::nullopt;
    return uint64_t(it - m_gpns.begin());
}

std::optional<uint64_t> SnapshotReader::page_offset(uint64_t gpn) const {
    auto i = find(gpn);
    if (!i) return std::nullopt;
    return m_header.data_offset + *i * m_header.page_size;
}

uint64_t SnapshotReader::pages_in_block(uint64_t block) const {
    if (block >= m_header.block_count) return 0;
    uint64_t first = block * m_header.pages_per_block;
    return std::min<uint64_t>(m_header.pages_per_block, m_header.page_count - first);
}

Status SnapshotReader::check_block(uint64_t block, std::span<const std::byte> data) const {
    if (checksum(data) == m_blocks[block].hash) return {};
    uint64_t first = block * m_header.pages_per_block;
    uint64_t last = first + pages_in_block(block) - 1;
    return mm::Unexpected<Error>{corrupt("page data block " + std::to_string(block) + " (guest pages " +
                                         hex(m_gpns[first]) + ".." + hex(m_gpns[last]) + ") fails its checksum")};
}

Status SnapshotReader::read_block(uint64_t block, std::span<std::byte> out) {
    if (block >= m_header.block_count)
        return make_error(ErrorKind::Invalid, m_name + ": block " + std::to_string(block) + " does not exist");
    uint64_t bytes = pages_in_block(block) * m_header.page_size;
    if (out.size() < bytes)
        return make_error(ErrorKind::Invalid, m_name + ": buffer too small for block " + std::to_string(block));
    uint64_t offset = m_header.data_offset + block * m_header.pages_per_block * m_header.page_size;
    PV_TRY(read_exact(offset, out.first(bytes)));
    return check_block(block, out.first(bytes));
}

// Reads and verifies blocks (sorted, distinct) into scratch: block i at i * block bytes.
Status SnapshotReader::read_blocks(std::span<const uint64_t> blocks, std::span<std::byte> scratch) {
    const uint64_t block_bytes = uint64_t(m_header.pages_per_block) * m_header.page_size;
    std::vector<ReadRequest> reqs;
    for (size_t i = 0; i < blocks.size(); ++i) {
        uint64_t offset = m_header.data_offset + blocks[i] * block_bytes;
        reqs.push_back({offset, scratch.subspan(i * block_bytes, pages_in_block(blocks[i]) * m_header.page_size)});
    }
    PV_TRY(m_io->read_batch(reqs));
    for (size_t i = 0; i < blocks.size(); ++i) PV_TRY(check_block(blocks[i], reqs[i].buffer));
    return {};
}

Status SnapshotReader::read_pages(std::span<const uint64_t> gpns, std::span<std::byte> out) {
    const uint64_t ps = m_header.page_size;
    if (out.size() != gpns.size() * ps)
        return make_error(ErrorKind::Invalid, m_name + ": read_pages buffer is not one page per page number");
    std::vector<std::pair<uint64_t, size_t>> wanted;  // (index position, request number)
    for (size_t i = 0; i < gpns.size(); ++i) {
        auto pos = find(gpns[i]);
        if (!pos) return make_error(ErrorKind::Invalid, m_name + ": page " + hex(gpns[i]) + " is not in the snapshot");
        wanted.emplace_back(*pos, i);
    }
    std::sort(wanted.begin(), wanted.end());
    const uint64_t ppb = m_header.pages_per_block;
    const size_t batch = m_options.max_blocks_per_batch;
    m_scratch.resize(std::min<uint64_t>(batch * ppb, m_header.page_count) * ps);
    size_t w = 0;
    while (w < wanted.size()) {
        std::vector<uint64_t> blocks;
        size_t end = w;
        while (end < wanted.size()) {
            uint64_t b = wanted[end].first / ppb;
            if (blocks.empty() || blocks.back() != b) {
                if (blocks.size() == batch) break;
                blocks.push_back(b);
            }
            ++end;
        }
        PV_TRY(read_blocks(blocks, m_scratch));
        size_t bi = 0;
        for (; w < end; ++w) {
            auto [pos, req] = wanted[w];
            while (blocks[bi] != pos / ppb) ++bi;
            std::memcpy(out.data() + req * ps, m_scratch.data() + (bi * ppb + pos % ppb) * ps, ps);
        }
    }
    return {};
}

Status SnapshotReader::verify_all() {
    const uint64_t batch = m_options.max_blocks_per_batch;
    m_scratch.resize(std::min<uint64_t>(batch * m_header.pages_per_block, m_header.page_count) * m_header.page_size);
    std::vector<uint64_t> blocks;
    for (uint64_t b = 0; b < m_header.block_count; b += batch) {
        blocks.clear();
        for (uint64_t i = b; i < std::min(b + batch, m_header.block_count); ++i) blocks.push_back(i);
        PV_TRY(read_blocks(blocks, m_scratch));
    }
    return {};
}

bool SnapshotReader::check_invariants() const {
    const FileHeader& h = m_header;
    if (m_gpns.size() != h.page_count || m_blocks.size() != h.block_count) return false;
    if (h.block_count != (h.page_count + h.pages_per_block - 1) / h.pages_per_block) return false;
    for (size_t i = 1; i < m_gpns.size(); ++i)
        if (m_gpns[i] <= m_gpns[i - 1]) return false;
    if (m_records.size() != h.record_count) return false;
    return validate_sections().has_value();
}

}  // namespace pv::store
