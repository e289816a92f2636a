// The seed corpus of fuzz/fuzz_snapshot.cpp is made by SnapshotWriter: this
// test rebuilds it and checks the files in fuzz/corpus/fuzz_snapshot match, so
// a format change cannot leave stale seeds behind. PAGEVISOR_WRITE_FUZZ_SEEDS=1
// rewrites them.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>

#include "tests/vmm/store/store_test_util.h"
#include "vmm/store/snapshot_reader.h"
#include "vmm/store/snapshot_writer.h"

namespace pv::store {
namespace {

using Bytes = std::vector<std::byte>;

std::string corpus_dir() {
    std::filesystem::path here(__FILE__);  // <root>/tests/vmm/store/fuzz_seeds_test.cpp
    return (here.parent_path().parent_path().parent_path().parent_path() / "fuzz/corpus/fuzz_snapshot").string();
}

Bytes snapshot(const test::ScratchDir& dir, const std::string& name, uint64_t pages, uint32_t per_block,
               size_t records) {
    SnapshotWriter::Options opt;
    opt.pages_per_block = per_block;
    opt.sync = false;
    auto w = SnapshotWriter::create(dir.file(name), opt);
    EXPECT_TRUE(w);
    for (size_t i = 0; i < records; ++i) {
        Bytes payload(5 + 8 * i, std::byte(0x40 + i));
        EXPECT_TRUE((*w)->add_record(uint32_t(RecordKind::VcpuState) + uint32_t(i), payload));
    }
    for (uint64_t g = 0; g < pages; ++g) EXPECT_TRUE((*w)->add_page(g * g + 7, test::page_bytes(g, 3)));
    EXPECT_TRUE((*w)->finish());
    return test::read_file(dir.file(name));
}

// The harness's input form: mode byte, the 128 header bytes, the file from 4096.
Bytes to_input(const Bytes& file, uint8_t mode) {
    size_t head = std::min<size_t>(file.size(), sizeof(FileHeader));
    size_t tail = file.size() > 4096 ? file.size() - 4096 : 0;
    Bytes in(1 + head + tail);
    in[0] = std::byte(mode);
    std::memcpy(in.data() + 1, file.data(), head);
    if (tail > 0) std::memcpy(in.data() + 1 + head, file.data() + 4096, tail);
    return in;
}

std::map<std::string, Bytes> seeds() {
    test::ScratchDir dir;
    std::map<std::string, Bytes> out;
    Bytes small = snapshot(dir, "small", 3, 64, 1);
    Bytes blocks = snapshot(dir, "blocks", 10, 4, 2);
    out["valid_small"] = to_input(small, 0);
    out["valid_small_fixup"] = to_input(small, 1);
    out["valid_blocks"] = to_input(blocks, 0);
    out["valid_blocks_fixup"] = to_input(blocks, 1);
    out["valid_empty"] = to_input(snapshot(dir, "empty", 0, 64, 0), 0);
    for (size_t cut : {64u, 4096u + 4096u, 4096u + 10u * 4096u + 20u}) {
        Bytes t(blocks.begin(), blocks.begin() + long(std::min(cut, blocks.size())));
        out["truncated_" + std::to_string(cut)] = to_input(t, 0);
    }
    Bytes v2 = blocks;
    uint32_t version = 2;
    std::memcpy(v2.data() + 8, &version, 4);
    out["version2_fixup"] = to_input(v2, 1);
    return out;
}

TEST(FuzzSnapshotSeeds, CorpusMatchesTheWriter) {
    const std::string dir = corpus_dir();
    const bool rewrite = std::getenv("PAGEVISOR_WRITE_FUZZ_SEEDS") != nullptr;
    if (!std::filesystem::is_directory(dir) && !rewrite) GTEST_SKIP() << dir << " is not in this tree";
    for (const auto& [name, bytes] : seeds()) {
        std::string path = dir + "/" + name;
        if (rewrite) {
            std::filesystem::create_directories(dir);
            ASSERT_TRUE(test::write_file(path, bytes)) << path;
        }
        EXPECT_EQ(test::read_file(path), bytes) << path << " is stale: rerun with PAGEVISOR_WRITE_FUZZ_SEEDS=1";
    }
}

TEST(FuzzSnapshotSeeds, ValidSeedsOpen) {
    test::ScratchDir dir;
    Bytes blocks = snapshot(dir, "blocks", 10, 4, 2);
    auto r = SnapshotReader::open(dir.file("blocks"));
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ((*r)->page_count(), 10u);
    EXPECT_EQ((*r)->block_count(), 3u);
    EXPECT_EQ((*r)->records().size(), 2u);
    EXPECT_TRUE((*r)->verify_all());
}

}  // namespace
}  // namespace pv::store
