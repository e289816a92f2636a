// fuzz_snapshot: SnapshotReader's validation and page reads on arbitrary files
// (vmm/store/snapshot_reader.h, docs/snapshot-format.md).
//
// Input: [mode byte][first 136 bytes of the file = FileHeader][the file from
// offset 4096 on]. The harness rebuilds the file with the header block's
// padding zeroed (the reader rejects anything else there, so the fuzzer need
// not carry 3960 zero bytes) and writes it to a memfd. With mode bit 0 set it
// first recomputes the records and index checksums (when those sections lie
// in the file) and the header checksum, so mutations reach the checks behind
// them instead of stopping at a checksum mismatch.
// Properties: open either fails with a one-line ErrorKind::Io error naming the
// file, or yields a reader whose invariants hold, whose records lie inside the
// records section, and whose every indexed page (up to 512) reads back into a
// page-sized buffer or fails with a one-line Io error (a block checksum).
// Seeds (fuzz/corpus/fuzz_snapshot) are snapshots made by SnapshotWriter;
// tests/vmm/store/fuzz_seeds_test.cpp checks them and rewrites them with
// PAGEVISOR_WRITE_FUZZ_SEEDS=1.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "vmm/store/snapshot_reader.h"

namespace {

using namespace pv::store;

constexpr size_t kHeaderBytes = sizeof(FileHeader);

bool section_in(const std::vector<uint8_t>& f, uint64_t offset, uint64_t size) {
    return offset <= f.size() && size <= f.size() - offset;
}

void fix_checksums(std::vector<uint8_t>& f) {
    FileHeader h{};
    std::memcpy(&h, f.data(), sizeof h);
    auto bytes = [&](uint64_t off, uint64_t size) { return std::as_bytes(std::span(f.data() + off, size_t(size))); };
    if (section_in(f, h.records_offset, h.records_size))
        h.records_hash = checksum(bytes(h.records_offset, h.records_size));
    uint64_t index_size = 0;
    if (!__builtin_mul_overflow(h.page_count, 8, &index_size) && h.block_count <= (UINT64_MAX - index_size) / 8 &&
        section_in(f, h.index_offset, index_size + h.block_count * 8) && h.blocks_offset == h.index_offset + index_size)
        h.index_hash = checksum(bytes(h.index_offset, index_size + h.block_count * 8));
    h.header_hash = 0;
    h.header_hash = checksum(std::as_bytes(std::span(&h, 1)));
    std::memcpy(f.data(), &h, sizeof h);
}

void check_error(const pv::Error& e, const std::string& name) {
    PV_FUZZ_CHECK(e.kind == pv::ErrorKind::Io, e.to_string());
    PV_FUZZ_CHECK(pv::fuzz::is_one_line(e.to_string()), e.to_string());
    PV_FUZZ_CHECK(e.message.rfind(name, 0) == 0, e.message);
}

void check_reader(SnapshotReader& r, uint64_t file_size, const std::string& name) {
    PV_FUZZ_CHECK(r.check_invariants(), "invariants of an accepted snapshot");
    const FileHeader& h = r.header();
    PV_FUZZ_CHECK(h.file_size == file_size, "file size");
    for (const auto& rec : r.records()) PV_FUZZ_CHECK(rec.payload.size() <= h.records_size, "record size");
    std::vector<std::byte> page(r.page_size());
    uint64_t n = r.page_count() < 512 ? r.page_count() : 512;
    for (uint64_t i = 0; i < n; ++i) {
        uint64_t gpn = r.page_numbers()[i];
        auto off = r.page_offset(gpn);
        PV_FUZZ_CHECK(off && *off >= 4096 && *off + r.page_size() <= file_size, "page offset inside the file");
        auto s = r.read_pages(std::span(&gpn, 1), page);
        if (!s) check_error(s.error(), name);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0];
    std::vector<uint8_t> file(4096, 0);
    size_t head = size - 1 < kHeaderBytes ? size - 1 : kHeaderBytes;
    std::memcpy(file.data(), data + 1, head);
    if (size > 1 + kHeaderBytes)
        file.insert(file.end(), data + 1 + kHeaderBytes, data + size);
    else
        file.resize(head < kHeaderBytes ? head : 4096);  // a short input is a short file
    if ((mode & 1) != 0 && file.size() >= 4096) fix_checksums(file);

    int fd = ::memfd_create("fuzz_snapshot", MFD_CLOEXEC);
    PV_FUZZ_CHECK(fd >= 0, "memfd_create");
    size_t done = 0;
    while (done < file.size()) {
        ssize_t w = ::write(fd, file.data() + done, file.size() - done);
        PV_FUZZ_CHECK(w > 0, "write to the memfd");
        done += size_t(w);
    }
    const std::string name = "fuzz.snap";
    SnapshotReader::Options options;
    options.max_blocks_per_batch = 4;
    options.io.queue_depth = 8;  // enough for 4 block reads; a smaller ring is cheaper to set up per input
    auto r = SnapshotReader::open_fd(fd, name, options);
    if (r)
        check_reader(**r, file.size(), name);
    else
        check_error(r.error(), name);
    ::close(fd);
    return 0;
}
