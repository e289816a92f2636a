// ELF64 guest-image validation: turns the bytes of a static x86-64 executable
// into a list of segments the VMM can copy into guest RAM and map.
//
// The image is untrusted input. parse_elf() checks every header field it uses
// with overflow-safe arithmetic and fails with ErrorKind::GuestImage and a
// one-line message naming the problem; it never reads outside the file.
// A successful Image satisfies (Image::check_invariants()):
//  - entry lies inside an executable user segment;
//  - segments are sorted by vaddr, page-aligned, non-empty, inside
//    [image_base, image_limit), never cross kernel_window_end, and no two share
//    a page; data.size() <= mem_size; no segment is both writable and executable;
//  - every `data` span points into `file` (Image is move-only for this reason:
//    a copy would leave the spans pointing at the original's buffer).
// GVA == GPA for the image (vmm/abi/layout.h), so vaddr is also the GPA.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mm/addr.h"
#include "vmm/abi/layout.h"
#include "vmm/base/error.h"

namespace pv::loader {

struct Segment {
    mm::GuestVirtAddr vaddr;          // page-aligned; GVA == GPA for the image (layout.h)
    uint64_t mem_size = 0;            // bytes in memory (>= data.size(); the rest is zero)
    std::span<const std::byte> data;  // file bytes (points into Image::file)
    mm::Perm perm = mm::Perm::Read;   // Read always, Write/Exec from p_flags, User iff vaddr >= kernel_window_end

    // mem_size rounded up to whole pages (cannot overflow for segments parse_elf returned).
    [[nodiscard]] uint64_t page_span() const { return (mem_size + mm::kPageSize - 1) & ~(mm::kPageSize - 1); }
};

struct Image {
    std::vector<std::byte> file;
    mm::GuestVirtAddr entry;
    std::vector<Segment> segments;  // sorted by vaddr, non-overlapping at page granularity

    Image() = default;
    Image(Image&&) noexcept = default;
    Image& operator=(Image&&) noexcept = default;
    Image(const Image&) = delete;
    Image& operator=(const Image&) = delete;
    ~Image() = default;

    // The segment containing `gva`, or nullptr.
    [[nodiscard]] const Segment* find_segment(mm::GuestVirtAddr gva) const;
};

struct Limits {  // defaults from vmm/abi/layout.h
    uint64_t image_base = pv::layout::kImageBase;
    uint64_t image_limit = pv::layout::kImageLimit;
    uint64_t kernel_window_end = pv::layout::kKernelWindowEnd;
    uint64_t max_file_size = 64ull << 20;
    bool require_exception_stubs = true;  // [kExceptionStubsAddr, +32*16) inside an executable supervisor segment
};

// Validates `file` as a guest image (ErrorKind::GuestImage on any defect;
// ErrorKind::Invalid if `limits` itself is inconsistent).
pv::Expected<Image> parse_elf(std::vector<std::byte> file, const Limits& limits = {});
// Reads `path` then parses it. Errors are prefixed "guest image '<path>': ";
// open/read failures are ErrorKind::Io with errno.
pv::Expected<Image> load_elf_file(const std::string& path, const Limits& limits = {});

// True when `image` satisfies every guarantee listed at the top of this file
// (used by tests and debug checks).
[[nodiscard]] bool check_invariants(const Image& image, const Limits& limits = {});

}  // namespace pv::loader
