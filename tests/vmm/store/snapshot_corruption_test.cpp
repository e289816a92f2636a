// SnapshotReader: every kind of damage is rejected with a message that says what.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>

#include "tests/support/seed.h"
#include "tests/vmm/store/store_test_util.h"
#include "vmm/store/snapshot_reader.h"
#include "vmm/store/snapshot_writer.h"

namespace pv::store {
namespace {

using test::page_bytes;
using test::read_file;
using test::write_file;

// 200 pages in blocks of 64 (4 blocks, the last one short) and two records.
class SnapshotCorruption : public ::testing::Test {
protected:
    void SetUp() override {
        m_path = m_dir.file("snap");
        auto w = SnapshotWriter::create(m_path);
        ASSERT_TRUE(w);
        std::vector<std::byte> rec(40, std::byte{0x5a});
        ASSERT_TRUE((*w)->add_record(RecordKind::VcpuState, rec));
        ASSERT_TRUE((*w)->add_record(RecordKind::MemoryLayout, std::span(rec).first(13)));
        for (uint64_t i = 0; i < 200; ++i) ASSERT_TRUE((*w)->add_page(i * 3 + 100, page_bytes(i, 2)));
        ASSERT_TRUE((*w)->finish());
        m_good = read_file(m_path);
        std::memcpy(&m_header, m_good.data(), sizeof m_header);
        ASSERT_EQ(m_header.block_count, 4u);
    }

    // Writes bytes to a new file and opens it; returns the error text ("" if it opened).
    std::string open_error(const std::vector<std::byte>& bytes) {
        std::string path = m_dir.file("bad" + std::to_string(m_serial++));
        EXPECT_TRUE(write_file(path, bytes));
        auto r = SnapshotReader::open(path);
        if (r) {
            EXPECT_TRUE((*r)->check_invariants());
            return "";
        }
        EXPECT_EQ(r.error().kind, ErrorKind::Io);
        EXPECT_NE(r.error().message.find(path), std::string::npos) << r.error().message;
        return r.error().message;
    }

    // A copy with the header changed by edit and its checksums made valid again,
    // so that the check under test is the one that fires.
    std::vector<std::byte> forged(const std::function<void(FileHeader&, std::vector<std::byte>&)>& edit,
                                  bool fix_index_hash = false) {
        std::vector<std::byte> f = m_good;
        FileHeader h = m_header;
        edit(h, f);
        if (fix_index_hash) {
            auto idx = std::span(f).subspan(h.index_offset, h.page_count * 8 + h.block_count * 8);
            h.index_hash = checksum(idx);
        }
        h.header_hash = 0;
        h.header_hash = checksum(std::as_bytes(std::span(&h, 1)));
        std::memcpy(f.data(), &h, sizeof h);
        return f;
    }

    static bool has(const std::string& message, const std::string& what) {
        return message.find(what) != std::string::npos;
    }

    test::ScratchDir m_dir;
    std::string m_path;
    std::vector<std::byte> m_good;
    FileHeader m_header{};
    int m_serial = 0;
};

TEST_F(SnapshotCorruption, IntactFileOpens) { EXPECT_EQ(open_error(m_good), ""); }

TEST_F(SnapshotCorruption, EveryHeaderByteFlipIsRejected) {
    for (size_t i = 0; i < 4096; i += (i < sizeof(FileHeader) ? 1 : 97)) {
        auto f = m_good;
        f[i] ^= std::byte{0x20};
        std::string e = open_error(f);
        SCOPED_TRACE("byte " + std::to_string(i) + ": " + e);
        if (i < 8)
            EXPECT_TRUE(has(e, "not a pagevisor snapshot (magic 0x"));
        else if (i < 12)
            EXPECT_TRUE(has(e, "snapshot format version "));
        else if (i < sizeof(FileHeader))
            EXPECT_TRUE(has(e, "header size") || has(e, "header checksum mismatch"));
        else
            EXPECT_TRUE(has(e, "header block byte " + std::to_string(i) + " is not zero"));
    }
}

TEST_F(SnapshotCorruption, OtherVersionsAreNamed) {
    auto f = forged([](FileHeader& h, auto&) { h.version = 2; });
    std::string e = open_error(f);
    EXPECT_TRUE(has(e, ": snapshot format version 2, this pagevisor reads 1")) << e;
    f = forged([](FileHeader& h, auto&) { h.version = 0; });
    EXPECT_TRUE(has(open_error(f), "snapshot format version 0, this pagevisor reads 1"));
}

TEST_F(SnapshotCorruption, WrongMagic) {
    auto f = m_good;
    std::memcpy(f.data(),
                "\x7f"
                "ELF\2\1\1\0",
                8);
    EXPECT_TRUE(has(open_error(f), "not a pagevisor snapshot (magic 0x10102464c457f)"));
}

TEST_F(SnapshotCorruption, RecordAndIndexBytesAreCovered) {
    for (uint64_t off = m_header.records_offset; off < m_header.file_size; off += 7) {
        auto f = m_good;
        f[off] ^= std::byte{1};
        std::string e = open_error(f);
        SCOPED_TRACE("offset " + std::to_string(off) + ": " + e);
        if (off < m_header.index_offset)
            EXPECT_TRUE(has(e, "records section checksum mismatch"));
        else
            EXPECT_TRUE(has(e, "page index checksum mismatch"));
    }
}

TEST_F(SnapshotCorruption, EachDamagedBlockIsNamedOnRead) {
    auto seed = pv::test::test_seed(902);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (uint64_t b = 0; b < m_header.block_count; ++b) {
        auto f = m_good;
        uint64_t pages = b + 1 < m_header.block_count ? 64 : 200 - 64 * 3;
        uint64_t at = m_header.data_offset + b * 64 * 4096 + rng() % (pages * 4096);
        f[at] ^= std::byte{0x80};
        std::string path = m_dir.file("block" + std::to_string(b));
        ASSERT_TRUE(write_file(path, f));
        auto r = SnapshotReader::open(path);  // page data is checked lazily
        ASSERT_TRUE(r) << r.error().to_string();
        std::vector<std::byte> buf(64 * 4096);
        for (uint64_t other = 0; other < m_header.block_count; ++other) {
            auto s = (*r)->read_block(other, buf);
            if (other != b) {
                EXPECT_TRUE(s) << "block " << other;
                continue;
            }
            ASSERT_FALSE(s);
            std::string gpns = "(guest pages 0x" + [&] {
                char t[64];
                std::snprintf(t, sizeof t, "%llx..0x%llx", 100ULL + 3 * 64 * b, 100ULL + 3 * (64 * b + pages - 1));
                return std::string(t);
            }() + ")";
            EXPECT_EQ(s.error().message,
                      path + ": page data block " + std::to_string(b) + " " + gpns + " fails its checksum");
        }
        EXPECT_FALSE((*r)->verify_all());
        uint64_t victim = 100 + 3 * (64 * b);
        std::vector<std::byte> one(4096);
        EXPECT_FALSE((*r)->read_pages(std::span(&victim, 1), one));
    }
}

TEST_F(SnapshotCorruption, TruncationAtAnyOffsetIsRejected) {
    std::vector<uint64_t> cuts{0, 1, 127, 128, 4095, 4096, 4097, m_good.size() - 1, m_good.size() - 8};
    for (uint64_t c = 4096; c < m_good.size(); c += 4096 * 7 + 13) cuts.push_back(c);
    for (uint64_t cut : cuts) {
        std::vector<std::byte> f(m_good.begin(), m_good.begin() + long(cut));
        std::string e = open_error(f);
        SCOPED_TRACE("cut at " + std::to_string(cut) + ": " + e);
        if (cut < 4096)
            EXPECT_TRUE(has(e, "too short for a snapshot header (" + std::to_string(cut) + " bytes"));
        else
            EXPECT_TRUE(has(e, "file is " + std::to_string(cut) + " bytes, the header says " +
                                   std::to_string(m_good.size()) + " (truncated or appended to)"));
    }
    auto longer = m_good;
    longer.push_back(std::byte{0});
    EXPECT_TRUE(has(open_error(longer), "truncated or appended to"));
}

TEST_F(SnapshotCorruption, SectionsOutsideTheFileOrOverlapping) {
    auto e = open_error(forged([](FileHeader& h, auto&) { h.index_offset = h.file_size - 8; }));
    EXPECT_TRUE(has(e, "index section [")) << e;
    EXPECT_TRUE(has(e, "outside the file")) << e;
    e = open_error(forged([](FileHeader& h, auto&) { h.blocks_offset = UINT64_MAX - 4; }));
    EXPECT_TRUE(has(e, "block table section [")) << e;
    e = open_error(forged([](FileHeader& h, auto&) { h.records_offset = 0; }));
    EXPECT_TRUE(has(e, "records section [0, +")) << e;
    e = open_error(forged([](FileHeader& h, auto&) { h.records_offset = h.data_offset + 4096; }));
    EXPECT_TRUE(has(e, "page data and records sections overlap")) << e;
    e = open_error(forged([](FileHeader& h, auto&) { h.blocks_offset = h.index_offset + 8; }));
    EXPECT_TRUE(has(e, "index and block table sections overlap")) << e;
    e = open_error(forged([](FileHeader& h, auto&) { h.data_offset += 8; }));
    EXPECT_TRUE(has(e, "not page aligned")) << e;
}

TEST_F(SnapshotCorruption, InconsistentCountsAndSizes) {
    auto e = open_error(forged([](FileHeader& h, auto&) { h.page_count += 1; }));
    EXPECT_TRUE(has(e, "is not 201 pages")) << e;
    e = open_error(forged([](FileHeader& h, auto&) { h.block_count = 3; }));
    EXPECT_TRUE(has(e, "block count 3, expected 4 for 200 pages")) << e;
    e = open_error(forged([](FileHeader& h, auto&) { h.page_count = UINT64_MAX / 2; }));
    EXPECT_FALSE(e.empty());
    e = open_error(forged([](FileHeader& h, auto&) { h.page_size = 1000; }));
    EXPECT_TRUE(has(e, "page size 1000 not supported")) << e;
    e = open_error(forged([](FileHeader& h, auto&) { h.pages_per_block = 0; }));
    EXPECT_TRUE(has(e, "pages per block 0 out of range")) << e;
    e = open_error(forged([](FileHeader& h, auto&) { h.flags = 4; }));
    EXPECT_TRUE(has(e, "unknown header flags 0x4")) << e;
    e = open_error(forged([](FileHeader& h, auto&) { h.record_count = 3; }));
    EXPECT_TRUE(has(e, "record 2 past the records section")) << e;
    e = open_error(forged([](FileHeader& h, auto&) { h.record_count = 1; }));
    EXPECT_TRUE(has(e, "bytes after the last record")) << e;
}

TEST_F(SnapshotCorruption, IndexOrderAndDuplicatesWithValidChecksums) {
    auto swap = [](FileHeader& h, std::vector<std::byte>& f) {
        std::swap_ranges(f.begin() + long(h.index_offset + 8 * 10), f.begin() + long(h.index_offset + 8 * 11),
                         f.begin() + long(h.index_offset + 8 * 11));
    };
    auto e = open_error(forged(swap, true));
    EXPECT_TRUE(has(e, "index entry 11: page 0x")) << e;
    EXPECT_TRUE(has(e, " out of order")) << e;
    auto dup = [](FileHeader& h, std::vector<std::byte>& f) {
        std::copy_n(f.begin() + long(h.index_offset + 8 * 20), 8, f.begin() + long(h.index_offset + 8 * 21));
    };
    e = open_error(forged(dup, true));
    EXPECT_TRUE(has(e, "index entry 21: page 0x")) << e;
    EXPECT_TRUE(has(e, " duplicated")) << e;
    auto huge = [](FileHeader& h, std::vector<std::byte>& f) {
        uint64_t v = UINT64_MAX;
        std::memcpy(f.data() + h.index_offset + 8 * 199, &v, 8);
    };
    e = open_error(forged(huge, true));
    EXPECT_TRUE(has(e, "index entry 199: page number 0xffffffffffffffff out of range")) << e;
}

TEST_F(SnapshotCorruption, MalformedRecordWithValidChecksums) {
    auto edit = [](FileHeader& h, std::vector<std::byte>& f) {
        uint64_t len = 1000;  // past the section
        std::memcpy(f.data() + h.records_offset + 8, &len, 8);
        h.records_hash = checksum(std::span(f).subspan(h.records_offset, h.records_size));
    };
    auto e = open_error(forged(edit));
    EXPECT_TRUE(has(e, "record 0 (kind 1, 1000 bytes) is malformed")) << e;
    auto pad = [](FileHeader& h, std::vector<std::byte>& f) {
        f[h.records_offset + 16 + 40 + 16 + 13] = std::byte{1};  // padding of the second record
        h.records_hash = checksum(std::span(f).subspan(h.records_offset, h.records_size));
    };
    e = open_error(forged(pad));
    EXPECT_TRUE(has(e, "record 1 has non-zero padding")) << e;
}

}  // namespace
}  // namespace pv::store
