// fuzz_elf: the ELF64 guest-image parser (vmm/loader/elf_loader.h) over
// arbitrary file bytes. Properties: never crashes or reads outside the file
// (ASan); an accepted image satisfies check_invariants() and every segment's
// data lies inside Image::file; a rejection is ErrorKind::GuestImage with a
// one-line message. Parsed twice: with the default limits and without the
// exception-stub requirement (reaches the checks after it).
#include <vector>

#include "fuzz/fuzz_check.h"
#include "vmm/loader/elf_loader.h"

namespace {

void check_one(const uint8_t* data, size_t size, const pv::loader::Limits& limits) {
    std::vector<std::byte> file(reinterpret_cast<const std::byte*>(data),
                                reinterpret_cast<const std::byte*>(data) + size);
    auto image = pv::loader::parse_elf(std::move(file), limits);
    if (!image) {
        PV_FUZZ_CHECK(image.error().kind == pv::ErrorKind::GuestImage, image.error().message);
        PV_FUZZ_CHECK(pv::fuzz::is_one_line(image.error().message), image.error().message);
        return;
    }
    PV_FUZZ_CHECK(pv::loader::check_invariants(*image, limits), "accepted image breaks its invariants");
    const std::byte* begin = image->file.data();
    const std::byte* end = begin + image->file.size();
    for (const auto& seg : image->segments) {
        PV_FUZZ_CHECK(seg.data.size() <= seg.mem_size, "segment data larger than mem_size");
        PV_FUZZ_CHECK(seg.data.empty() || (seg.data.data() >= begin && seg.data.data() + seg.data.size() <= end),
                      "segment data outside the file");
        PV_FUZZ_CHECK(image->find_segment(seg.vaddr) == &seg, "find_segment disagrees with the segment list");
    }
    PV_FUZZ_CHECK(image->find_segment(image->entry) != nullptr, "entry outside every segment");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    check_one(data, size, pv::loader::Limits{});
    pv::loader::Limits relaxed;
    relaxed.require_exception_stubs = false;
    check_one(data, size, relaxed);
    return 0;
}
