// The real guest image obeys the ABI the VMM relies on: segment layout and
// permissions, entry point, and the exact bytes of the CPL0 exception stubs
// (stub v at kExceptionStubsAddr + 16 v; vmm/abi/hypercall.h).
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

#include "vmm/abi/hypercall.h"
#include "vmm/abi/layout.h"
#include "vmm/loader/elf_loader.h"

#ifndef PAGEVISOR_GUEST_IMAGE
#error "the guest image must be built before its tests (target pvguest)"
#endif

namespace {

using pv::loader::Image;
using pv::loader::Segment;

Image load_guest() {
    auto image = pv::loader::load_elf_file(PAGEVISOR_GUEST_IMAGE);
    if (!image) ADD_FAILURE() << image.error().to_string();
    return image ? std::move(image).value() : Image{};
}

// Bytes of guest memory at `gva` (inside a segment's file data), or empty.
std::vector<uint8_t> read_image(const Image& image, uint64_t gva, size_t n) {
    const Segment* seg = image.find_segment(mm::GuestVirtAddr(gva));
    if (seg == nullptr) return {};
    uint64_t off = gva - seg->vaddr.value();
    if (off + n > seg->data.size()) return {};
    std::vector<uint8_t> out(n);
    std::memcpy(out.data(), seg->data.data() + off, n);
    return out;
}

bool has_error_code(unsigned v) { return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30; }

TEST(GuestImage, SegmentsFollowTheLayout) {
    Image image = load_guest();
    ASSERT_FALSE(image.segments.empty());
    bool kernel_text = false;
    for (const Segment& s : image.segments) {
        EXPECT_TRUE(s.vaddr.is_page_aligned());
        EXPECT_GE(s.vaddr.value(), pv::layout::kImageBase);
        EXPECT_LE(s.vaddr.value() + s.mem_size, pv::layout::kImageLimit);
        EXPECT_FALSE(mm::has(s.perm, mm::Perm::Write) && mm::has(s.perm, mm::Perm::Exec)) << "W^X";
        bool user = mm::has(s.perm, mm::Perm::User);
        EXPECT_EQ(user, s.vaddr.value() >= pv::layout::kKernelWindowEnd);
        if (!user) {
            EXPECT_TRUE(mm::has(s.perm, mm::Perm::Exec));
            EXPECT_LE(s.vaddr.value() + s.mem_size, pv::layout::kKernelWindowEnd);
            kernel_text = s.vaddr.value() == pv::layout::kExceptionStubsAddr;
        }
    }
    EXPECT_TRUE(kernel_text) << "the kernel text segment must start with the exception stubs";
    const Segment* entry = image.find_segment(image.entry);
    ASSERT_NE(entry, nullptr);
    EXPECT_TRUE(mm::has(entry->perm, mm::Perm::User | mm::Perm::Exec));
}

TEST(GuestImage, ExceptionStubsAreExactlyTheProtocol) {
    Image image = load_guest();
    const uint64_t base = pv::layout::kExceptionStubsAddr;
    uint64_t common = 0;
    uint64_t page_fault = 0;
    for (unsigned v = 0; v < pv::layout::kExceptionVectors; ++v) {
        SCOPED_TRACE("vector " + std::to_string(v));
        uint64_t at = base + v * pv::layout::kExceptionStubStride;
        auto bytes = read_image(image, at, 16);
        ASSERT_EQ(bytes.size(), 16U);
        size_t i = 0;
        if (!has_error_code(v)) {
            ASSERT_EQ(bytes[i++], 0x6a);  // push $0
            ASSERT_EQ(bytes[i++], 0x00);
        }
        ASSERT_EQ(bytes[i++], 0x6a);  // push $v
        ASSERT_EQ(bytes[i++], v);
        uint64_t target = 0;
        if (bytes[i] == 0xe9) {  // jmp rel32
            int32_t rel = 0;
            std::memcpy(&rel, &bytes[i + 1], 4);
            target = at + i + 5 + static_cast<int64_t>(rel);
        } else {
            ASSERT_EQ(bytes[i], 0xeb);  // jmp rel8
            target = at + i + 2 + static_cast<int8_t>(bytes[i + 1]);
        }
        // #PF has its own tail (the no-work window check); every other vector shares one.
        uint64_t& tail = v == 14 ? page_fault : common;
        if (tail == 0) tail = target;
        EXPECT_EQ(target, tail) << "every stub jumps to its common code";
    }
    ASSERT_NE(common, page_fault);
    const auto port = static_cast<uint8_t>(pv::layout::kExceptionPort);
    // push %rax; mov %cr2,%rax; push %rax
    const std::vector<uint8_t> head = {0x50, 0x0f, 0x20, 0xd0, 0x50};
    // mov 8(%rsp),%rax; add $32,%rsp; iretq
    const std::vector<uint8_t> ret = {0x48, 0x8b, 0x44, 0x24, 0x08, 0x48, 0x83, 0xc4, 0x20, 0x48, 0xcf};
    auto cat = [](std::initializer_list<std::vector<uint8_t>> parts) {
        std::vector<uint8_t> out;
        for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
        return out;
    };
    // head; out %al,$port; ret
    const std::vector<uint8_t> expected = cat({head, {0xe6, port}, ret});
    EXPECT_EQ(read_image(image, common, expected.size()), expected);
    // head; add kStubDataAddr(abs),%rax; jc skip; out; ret; skip: addq $kNoWorkSkip,32(%rsp); ret
    const auto a = pv::layout::kStubDataAddr;
    const std::vector<uint8_t> add_abs = {0x48,
                                          0x03,
                                          0x04,
                                          0x25,
                                          static_cast<uint8_t>(a),
                                          static_cast<uint8_t>(a >> 8),
                                          static_cast<uint8_t>(a >> 16),
                                          static_cast<uint8_t>(a >> 24)};
    const auto jump = static_cast<uint8_t>(2 + ret.size());  // over the out and the return
    const std::vector<uint8_t> pf = cat({head,
                                         add_abs,
                                         {0x72, jump, 0xe6, port},
                                         ret,
                                         {0x48, 0x83, 0x44, 0x24, 0x20, static_cast<uint8_t>(pv::abi::kNoWorkSkip)},
                                         ret});
    EXPECT_EQ(read_image(image, page_fault, pf.size()), pf);
}

}  // namespace
