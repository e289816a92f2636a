// Tests for the ELF64 guest-image loader: a valid image built in the test, one
// test per malformation (error kind + message), a randomized robustness test
// over mutated images, load_elf_file, and the real guest image when available.
#include "vmm/loader/elf_loader.h"

#include <elf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>

#include "tests/support/seed.h"

namespace pv::loader {
namespace {

constexpr uint64_t kPage = 0x1000;
constexpr uint64_t kStubVaddr = layout::kExceptionStubsAddr;       // supervisor RX, holds the stubs
constexpr uint64_t kTextVaddr = layout::kKernelWindowEnd;          // user RX
constexpr uint64_t kDataVaddr = layout::kKernelWindowEnd + kPage;  // user RW + bss
constexpr uint64_t kEntry = kTextVaddr + 0x10;

// Builds ELF files: starts as a valid guest image that tests then break one field at a time.
struct ElfBuilder {
    Elf64_Ehdr eh{};
    std::vector<Elf64_Phdr> phdrs;
    uint64_t file_size = 4 * kPage;
    bool auto_phnum = true;

    ElfBuilder() {
        std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
        eh.e_ident[EI_CLASS] = ELFCLASS64;
        eh.e_ident[EI_DATA] = ELFDATA2LSB;
        eh.e_ident[EI_VERSION] = EV_CURRENT;
        eh.e_type = ET_EXEC;
        eh.e_machine = EM_X86_64;
        eh.e_version = EV_CURRENT;
        eh.e_entry = kEntry;
        eh.e_phoff = sizeof(Elf64_Ehdr);
        eh.e_ehsize = sizeof(Elf64_Ehdr);
        eh.e_phentsize = sizeof(Elf64_Phdr);
        phdrs.push_back(load(PF_R | PF_X, kStubVaddr, 1 * kPage, kPage, kPage));
        phdrs.push_back(load(PF_R | PF_X, kTextVaddr, 2 * kPage, kPage, kPage));
        phdrs.push_back(load(PF_R | PF_W, kDataVaddr, 3 * kPage, 0x800, 3 * kPage));
        Elf64_Phdr stack{};
        stack.p_type = PT_GNU_STACK;
        stack.p_flags = PF_R | PF_W;
        phdrs.push_back(stack);
    }

    static Elf64_Phdr load(uint32_t flags, uint64_t vaddr, uint64_t offset, uint64_t filesz, uint64_t memsz) {
        Elf64_Phdr ph{};
        ph.p_type = PT_LOAD;
        ph.p_flags = flags;
        ph.p_vaddr = ph.p_paddr = vaddr;
        ph.p_offset = offset;
        ph.p_filesz = filesz;
        ph.p_memsz = memsz;
        ph.p_align = kPage;
        return ph;
    }

    // File byte i holds a value derived from i, so tests can check which bytes a segment points at.
    static std::byte pattern(size_t i) { return std::byte(static_cast<uint8_t>(i * 7 + (i >> 12))); }

    std::vector<std::byte> build() const {
        std::vector<std::byte> f(file_size);
        for (size_t i = 0; i < f.size(); ++i) f[i] = pattern(i);
        Elf64_Ehdr h = eh;
        if (auto_phnum) h.e_phnum = static_cast<uint16_t>(phdrs.size());
        std::memcpy(f.data(), &h, std::min<size_t>(sizeof(h), f.size()));
        for (size_t i = 0; i < phdrs.size(); ++i) {
            const size_t off = sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr);
            if (off + sizeof(Elf64_Phdr) <= f.size()) std::memcpy(f.data() + off, &phdrs[i], sizeof(Elf64_Phdr));
        }
        return f;
    }
};

void expect_image_error(const pv::Expected<Image>& r, const std::string& substring) {
    ASSERT_FALSE(r.has_value()) << "expected an error containing '" << substring << "'";
    EXPECT_EQ(r.error().kind, ErrorKind::GuestImage) << r.error().message;
    EXPECT_NE(r.error().message.find(substring), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << "message must be one line";
}

void expect_rejected(const ElfBuilder& b, const std::string& substring, const Limits& limits = {}) {
    expect_image_error(parse_elf(b.build(), limits), substring);
}

TEST(ElfLoader, ValidImageParses) {
    ElfBuilder b;
    auto r = parse_elf(b.build());
    ASSERT_TRUE(r.has_value()) << r.error().message;
    const Image& img = *r;
    EXPECT_TRUE(check_invariants(img));
    EXPECT_EQ(img.entry.value(), kEntry);
    ASSERT_EQ(img.segments.size(), 3u);
    EXPECT_EQ(img.segments[0].vaddr.value(), kStubVaddr);
    EXPECT_EQ(img.segments[0].perm, mm::Perm::Read | mm::Perm::Exec);
    EXPECT_EQ(img.segments[1].perm, mm::Perm::Read | mm::Perm::Exec | mm::Perm::User);
    EXPECT_EQ(img.segments[2].perm, mm::Perm::Read | mm::Perm::Write | mm::Perm::User);
    EXPECT_EQ(img.segments[2].mem_size, 3 * kPage);
    ASSERT_EQ(img.segments[2].data.size(), 0x800u);
    // The data span points at the file bytes at p_offset.
    EXPECT_EQ(img.segments[2].data.data(), img.file.data() + 3 * kPage);
    EXPECT_EQ(img.segments[2].data[5], ElfBuilder::pattern(3 * kPage + 5));
    EXPECT_EQ(img.find_segment(mm::GuestVirtAddr(kDataVaddr + 3 * kPage - 1)), &img.segments[2]);
    EXPECT_EQ(img.find_segment(mm::GuestVirtAddr(kDataVaddr + 3 * kPage)), nullptr);
    EXPECT_EQ(img.find_segment(mm::GuestVirtAddr(kStubVaddr - 1)), nullptr);
}

TEST(ElfLoader, SegmentsAreSortedAndSpansSurviveMove) {
    ElfBuilder b;
    std::swap(b.phdrs[0], b.phdrs[2]);
    auto r = parse_elf(b.build());
    ASSERT_TRUE(r.has_value()) << r.error().message;
    Image moved = std::move(*r);
    ASSERT_EQ(moved.segments.size(), 3u);
    EXPECT_LT(moved.segments[0].vaddr, moved.segments[1].vaddr);
    EXPECT_LT(moved.segments[1].vaddr, moved.segments[2].vaddr);
    EXPECT_TRUE(check_invariants(moved));
}

TEST(ElfLoader, ZeroMemSizeSegmentsAreIgnored) {
    ElfBuilder b;
    b.phdrs.push_back(ElfBuilder::load(PF_R | PF_W | PF_X, 0x1234, 0, 0, 0));  // would fail every check
    auto r = parse_elf(b.build());
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->segments.size(), 3u);
}

TEST(ElfLoader, StubsNotRequiredWhenDisabled) {
    ElfBuilder b;
    b.phdrs.erase(b.phdrs.begin());
    expect_rejected(b, "exception stubs");
    Limits l;
    l.require_exception_stubs = false;
    auto r = parse_elf(b.build(), l);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->segments.size(), 2u);
}

TEST(ElfLoader, RejectsEmptyFile) { expect_image_error(parse_elf({}), "empty"); }

TEST(ElfLoader, RejectsTooLargeFile) {
    Limits l;
    l.max_file_size = 4 * kPage - 1;
    expect_rejected(ElfBuilder{}, "too large", l);
}

TEST(ElfLoader, RejectsBadMagic) {
    ElfBuilder b;
    b.eh.e_ident[EI_MAG1] = 'F';
    expect_rejected(b, "bad magic");
    expect_image_error(parse_elf({std::byte{0x7f}, std::byte{'E'}}), "bad magic");
}

TEST(ElfLoader, RejectsNot64Bit) {
    ElfBuilder b;
    b.eh.e_ident[EI_CLASS] = ELFCLASS32;
    expect_rejected(b, "64-bit");
}

TEST(ElfLoader, RejectsBigEndian) {
    ElfBuilder b;
    b.eh.e_ident[EI_DATA] = ELFDATA2MSB;
    expect_rejected(b, "little-endian");
}

TEST(ElfLoader, RejectsBadVersion) {
    ElfBuilder b;
    b.eh.e_ident[EI_VERSION] = 2;
    expect_rejected(b, "version");
    ElfBuilder c;
    c.eh.e_version = 0;
    expect_rejected(c, "bad ELF version");
}

TEST(ElfLoader, RejectsTruncatedHeader) {
    ElfBuilder b;
    b.file_size = 40;
    expect_rejected(b, "truncated inside the ELF header");
    b.file_size = 10;
    expect_rejected(b, "truncated inside the ELF identification");
}

TEST(ElfLoader, RejectsNonExecutableTypes) {
    for (auto [type, text] : {std::pair<uint16_t, const char*>{ET_DYN, "position-independent"},
                              {ET_REL, "relocatable"},
                              {ET_CORE, "not a static executable"},
                              {ET_NONE, "not a static executable"}}) {
        ElfBuilder b;
        b.eh.e_type = type;
        expect_rejected(b, text);
    }
}

TEST(ElfLoader, RejectsWrongMachine) {
    ElfBuilder b;
    b.eh.e_machine = EM_386;
    expect_rejected(b, "x86-64");
}

TEST(ElfLoader, RejectsWrongPhentsize) {
    ElfBuilder b;
    b.eh.e_phentsize = sizeof(Elf64_Phdr) - 1;
    expect_rejected(b, "e_phentsize");
}

TEST(ElfLoader, RejectsProgramHeadersOutsideFile) {
    ElfBuilder b;
    b.eh.e_phoff = b.file_size - sizeof(Elf64_Phdr);  // the table runs past the end
    expect_rejected(b, "program headers");
    b.eh.e_phoff = UINT64_MAX - 8;  // offset + size would wrap
    expect_rejected(b, "program headers");
    ElfBuilder c;
    c.file_size = sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr) + 10;  // truncated in the third entry
    expect_rejected(c, "program headers");
    ElfBuilder d;
    d.auto_phnum = false;
    d.eh.e_phnum = PN_XNUM;
    expect_rejected(d, "PN_XNUM");
    d.eh.e_phnum = PN_XNUM - 1;
    expect_rejected(d, "program headers");
}

TEST(ElfLoader, RejectsNoLoadSegment) {
    ElfBuilder b;
    for (auto& ph : b.phdrs) ph.p_type = PT_NOTE;
    expect_rejected(b, "no PT_LOAD");
    ElfBuilder c;
    c.phdrs.clear();
    expect_rejected(c, "no PT_LOAD");
    ElfBuilder d;
    for (auto& ph : d.phdrs) ph.p_filesz = ph.p_memsz = 0;
    expect_rejected(d, "non-zero memory size");
}

TEST(ElfLoader, RejectsDynamicAndTls) {
    for (auto [type, text] :
         {std::pair<uint32_t, const char*>{PT_INTERP, "PT_INTERP"}, {PT_DYNAMIC, "PT_DYNAMIC"}, {PT_TLS, "PT_TLS"}}) {
        ElfBuilder b;
        Elf64_Phdr ph{};
        ph.p_type = type;
        b.phdrs.push_back(ph);
        expect_rejected(b, text);
    }
}

TEST(ElfLoader, RejectsFileSizeAboveMemSize) {
    ElfBuilder b;
    b.phdrs[2].p_memsz = b.phdrs[2].p_filesz - 1;
    expect_rejected(b, "exceeds memsz");
}

TEST(ElfLoader, RejectsFileBytesOutsideFile) {
    ElfBuilder b;
    b.phdrs[1].p_filesz = 2 * kPage + 1;
    b.phdrs[1].p_memsz = 3 * kPage;
    expect_rejected(b, "outside the file");
    ElfBuilder c;
    c.phdrs[1].p_offset = UINT64_MAX - 0xfff;  // offset + filesz wraps
    expect_rejected(c, "outside the file");
    ElfBuilder d;
    d.phdrs[1].p_filesz = UINT64_MAX;
    d.phdrs[1].p_memsz = UINT64_MAX;
    expect_rejected(d, "outside the file");
}

TEST(ElfLoader, RejectsUnalignedVaddr) {
    ElfBuilder b;
    b.phdrs[1].p_vaddr += 0x10;
    b.phdrs[1].p_offset += 0x10;
    b.phdrs[1].p_filesz -= 0x10;
    expect_rejected(b, "not page-aligned");
}

TEST(ElfLoader, RejectsIncongruentOffset) {
    ElfBuilder b;
    b.phdrs[1].p_offset += 0x10;
    b.phdrs[1].p_filesz -= 0x10;
    expect_rejected(b, "congruent");
}

TEST(ElfLoader, RejectsVaddrPlusMemszOverflow) {
    ElfBuilder b;
    b.phdrs[2].p_vaddr = UINT64_MAX - 0xfff;  // page-aligned, end wraps
    expect_rejected(b, "overflows");
}

TEST(ElfLoader, RejectsSegmentOutsideImageWindow) {
    ElfBuilder below;
    below.phdrs[2].p_vaddr = layout::kImageBase - kPage;
    expect_rejected(below, "outside the image window");
    ElfBuilder above;
    above.phdrs[2].p_vaddr = layout::kImageLimit - kPage;  // 3 pages of memsz run past the limit
    expect_rejected(above, "outside the image window");
    ElfBuilder at_limit;  // ending exactly at the limit is fine
    at_limit.phdrs[2].p_vaddr = layout::kImageLimit - 3 * kPage;
    EXPECT_TRUE(parse_elf(at_limit.build()).has_value());
    ElfBuilder high;
    high.phdrs[2].p_vaddr = 0xffff'ffff'8000'0000;
    expect_rejected(high, "outside the image window");
}

TEST(ElfLoader, RejectsSegmentCrossingKernelWindowEnd) {
    ElfBuilder b;
    b.phdrs[2].p_vaddr = layout::kKernelWindowEnd - kPage;
    b.phdrs.erase(b.phdrs.begin() + 1);  // the text segment would overlap
    expect_rejected(b, "crosses the kernel window end");
}

TEST(ElfLoader, RejectsOverlappingSegments) {
    ElfBuilder b;
    b.phdrs[2].p_vaddr = kTextVaddr;  // same page as the text segment
    expect_rejected(b, "overlap");
    ElfBuilder c;
    c.phdrs[1].p_memsz = kPage + 1;  // text's last page is the data segment's first page
    expect_rejected(c, "overlap");
}

TEST(ElfLoader, RejectsWritableExecutable) {
    ElfBuilder b;
    b.phdrs[1].p_flags = PF_R | PF_W | PF_X;
    expect_rejected(b, "W^X");
}

TEST(ElfLoader, RejectsBadEntry) {
    ElfBuilder outside;
    outside.eh.e_entry = 0x12345;
    expect_rejected(outside, "entry point");
    ElfBuilder supervisor;
    supervisor.eh.e_entry = kStubVaddr;
    expect_rejected(supervisor, "entry point");
    ElfBuilder data;
    data.eh.e_entry = kDataVaddr;
    expect_rejected(data, "entry point");
    ElfBuilder past_end;
    past_end.eh.e_entry = kTextVaddr + kPage;  // the first byte after the text segment
    expect_rejected(past_end, "entry point");
}

TEST(ElfLoader, RejectsUncoveredExceptionStubs) {
    ElfBuilder not_exec;
    not_exec.phdrs[0].p_flags = PF_R;
    expect_rejected(not_exec, "exception stubs");
    ElfBuilder too_small;
    too_small.phdrs[0].p_filesz = too_small.phdrs[0].p_memsz =
        layout::kExceptionVectors * layout::kExceptionStubStride - 1;
    expect_rejected(too_small, "exception stubs");
    ElfBuilder exact;
    exact.phdrs[0].p_filesz = exact.phdrs[0].p_memsz = layout::kExceptionVectors * layout::kExceptionStubStride;
    EXPECT_TRUE(parse_elf(exact.build()).has_value());
}

TEST(ElfLoader, RejectsInconsistentLimits) {
    Limits l;
    l.image_base = l.image_limit;
    auto r = parse_elf(ElfBuilder{}.build(), l);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::Invalid);
    Limits unaligned;
    unaligned.kernel_window_end += 1;
    EXPECT_FALSE(parse_elf(ElfBuilder{}.build(), unaligned).has_value());
}

// ---- load_elf_file --------------------------------------------------------------

class TempFile {
public:
    explicit TempFile(const std::vector<std::byte>& data) {
        char name[] = "/tmp/pv_elf_loader_test_XXXXXX";
        const int fd = ::mkstemp(name);
        EXPECT_GE(fd, 0);
        m_path = name;
        if (!data.empty()) {
            EXPECT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
        }
        ::close(fd);
    }
    ~TempFile() { ::unlink(m_path.c_str()); }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
    const std::string& path() const { return m_path; }

private:
    std::string m_path;
};

TEST(ElfLoaderFile, LoadsValidFile) {
    TempFile f(ElfBuilder{}.build());
    auto r = load_elf_file(f.path());
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    EXPECT_EQ(r->segments.size(), 3u);
    EXPECT_TRUE(check_invariants(*r));
}

TEST(ElfLoaderFile, MissingFileIsIoErrorWithErrno) {
    auto r = load_elf_file("/nonexistent/pagevisor/guest.elf");
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::Io);
    EXPECT_EQ(r.error().err_no, ENOENT);
    EXPECT_EQ(r.error().message.rfind("guest image '/nonexistent/pagevisor/guest.elf': ", 0), 0u) << r.error().message;
}

TEST(ElfLoaderFile, DirectoryIsIoError) {
    auto r = load_elf_file("/tmp");
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::Io);
    EXPECT_NE(r.error().message.find("not a regular file"), std::string::npos);
}

TEST(ElfLoaderFile, MalformedFileIsPrefixedImageError) {
    TempFile empty({});
    auto r = load_elf_file(empty.path());
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::GuestImage);
    EXPECT_EQ(r.error().message, "guest image '" + empty.path() + "': file is empty");
    ElfBuilder b;
    b.eh.e_machine = EM_AARCH64;
    TempFile arm(b.build());
    auto r2 = load_elf_file(arm.path());
    ASSERT_FALSE(r2.has_value());
    EXPECT_EQ(r2.error().kind, ErrorKind::GuestImage);
    EXPECT_EQ(r2.error().message.rfind("guest image '" + arm.path() + "': not an x86-64", 0), 0u);
    Limits small;
    small.max_file_size = 100;
    auto r3 = load_elf_file(arm.path(), small);
    ASSERT_FALSE(r3.has_value());
    EXPECT_NE(r3.error().message.find("too large"), std::string::npos);
}

// ---- randomized robustness ----------------------------------------------------------

// Every successful parse must satisfy the documented guarantees, checked here
// independently of check_invariants().
void expect_sound(const Image& img, const std::vector<std::byte>& file) {
    ASSERT_TRUE(check_invariants(img));
    ASSERT_EQ(img.file, file);
    for (const Segment& s : img.segments) {
        ASSERT_GE(s.data.data(), img.file.data());
        ASSERT_LE(s.data.data() + s.data.size(), img.file.data() + img.file.size());
        ASSERT_LE(s.data.size(), s.mem_size);
        ASSERT_EQ(s.vaddr.value() % kPage, 0u);
        ASSERT_FALSE(mm::has(s.perm, mm::Perm::Write | mm::Perm::Exec));
    }
}

uint64_t boundary_value(std::mt19937_64& rng, uint64_t file_size) {
    const uint64_t values[] = {0,
                               1,
                               0xfff,
                               0x1000,
                               0x1001,
                               file_size - 1,
                               file_size,
                               file_size + 1,
                               layout::kImageBase,
                               layout::kImageBase - 1,
                               layout::kKernelWindowEnd,
                               layout::kKernelWindowEnd - kPage,
                               layout::kImageLimit,
                               layout::kImageLimit - kPage,
                               UINT64_MAX,
                               UINT64_MAX - 0xfff,
                               INT64_MAX,
                               uint64_t(INT64_MAX) + 1,
                               UINT32_MAX};
    return values[rng() % std::size(values)];
}

// Sets one header or program-header field to a boundary value.
void mutate_field(ElfBuilder& b, std::mt19937_64& rng) {
    const uint64_t v = boundary_value(rng, b.file_size);
    if (rng() % 4 == 0) {
        switch (rng() % 6) {
            case 0: b.eh.e_phoff = v; break;
            case 1: b.eh.e_entry = v; break;
            case 2:
                b.auto_phnum = false;
                b.eh.e_phnum = static_cast<uint16_t>(v);
                break;
            case 3: b.eh.e_phentsize = static_cast<uint16_t>(v); break;
            case 4: b.eh.e_type = static_cast<uint16_t>(v); break;
            default: b.eh.e_version = static_cast<uint32_t>(v); break;
        }
        return;
    }
    Elf64_Phdr& ph = b.phdrs[rng() % b.phdrs.size()];
    switch (rng() % 6) {
        case 0: ph.p_offset = v; break;
        case 1: ph.p_vaddr = v; break;
        case 2: ph.p_filesz = v; break;
        case 3: ph.p_memsz = v; break;
        case 4: ph.p_flags = static_cast<uint32_t>(v); break;
        default: ph.p_type = static_cast<uint32_t>(v); break;
    }
}

// Flips a few bits, mostly in the first `header_bytes` (where a flip changes the parse), and
// sometimes truncates.
void flip_and_truncate(std::vector<std::byte>& f, size_t header_bytes, std::mt19937_64& rng) {
    const int flips = static_cast<int>(rng() % 4);
    for (int i = 0; i < flips && !f.empty(); ++i) {
        const size_t pos = rng() % 4 != 0 ? rng() % header_bytes : rng() % f.size();
        if (pos < f.size()) {
            f[pos] ^= std::byte(static_cast<uint8_t>(1u << (rng() % 8)));
        }
    }
    if (rng() % 5 == 0) f.resize(rng() % (f.size() + 1));
}

std::vector<std::byte> mutated_image(std::mt19937_64& rng) {
    ElfBuilder b;
    const int field_mutations = static_cast<int>(rng() % 3);
    for (int i = 0; i < field_mutations; ++i) mutate_field(b, rng);
    std::vector<std::byte> f = b.build();
    flip_and_truncate(f, sizeof(Elf64_Ehdr) + b.phdrs.size() * sizeof(Elf64_Phdr), rng);
    return f;
}

// Parses `f`: success must yield a sound image, failure must be a GuestImage error. Returns
// whether it was accepted.
bool check_parse(const std::vector<std::byte>& f) {
    auto r = parse_elf(f);
    if (r.has_value()) {
        expect_sound(*r, f);
        return true;
    }
    EXPECT_EQ(r.error().kind, ErrorKind::GuestImage) << r.error().message;
    EXPECT_FALSE(r.error().message.empty());
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
    return false;
}

TEST(ElfLoaderRobustness, MutatedImagesNeverCrash) {
    const uint64_t seed = pv::test::test_seed(0xE1F);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    int accepted = 0;
    constexpr int kIterations = 6000;  // ~1 s in Debug, ~3 s under ASan+UBSan
    for (int i = 0; i < kIterations && !HasFailure(); ++i) accepted += check_parse(mutated_image(rng)) ? 1 : 0;
    // Some mutations are harmless (e.g. a flipped p_paddr bit), so both outcomes must occur;
    // otherwise the mutator is not exercising the validator.
    EXPECT_GT(accepted, 0);
    EXPECT_LT(accepted, kIterations);
}

// ---- the real guest image --------------------------------------------------------

// The image comes from the environment variable PAGEVISOR_GUEST_IMAGE, else from
// the build (tests/CMakeLists.txt defines the macro when the pvguest target exists).
std::string guest_image_path() {
    if (const char* env = std::getenv("PAGEVISOR_GUEST_IMAGE"); env != nullptr && *env != '\0') return env;
#ifdef PAGEVISOR_GUEST_IMAGE
    return PAGEVISOR_GUEST_IMAGE;
#else
    return {};
#endif
}

TEST(ElfLoaderGuest, RealGuestImageParses) {
    const std::string path = guest_image_path();
    if (path.empty())
        GTEST_SKIP() << "PAGEVISOR_GUEST_IMAGE is not set and the guest is not built: the real image was not checked";
    auto r = load_elf_file(path);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    EXPECT_TRUE(check_invariants(*r));
    const Segment* entry = r->find_segment(r->entry);
    ASSERT_NE(entry, nullptr);
    EXPECT_TRUE(mm::has(entry->perm, mm::Perm::Exec | mm::Perm::User));
}

TEST(ElfLoaderGuest, MutatedRealGuestImageNeverCrashes) {
    const std::string path = guest_image_path();
    if (path.empty())
        GTEST_SKIP() << "PAGEVISOR_GUEST_IMAGE is not set and the guest is not built: the real image was not checked";
    auto r = load_elf_file(path);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    Elf64_Ehdr eh{};
    ASSERT_GE(r->file.size(), sizeof(eh));
    std::memcpy(&eh, r->file.data(), sizeof(eh));
    const size_t header_bytes = std::min<size_t>(r->file.size(), eh.e_phoff + size_t(eh.e_phnum) * sizeof(Elf64_Phdr));
    const uint64_t seed = pv::test::test_seed(0xE1E);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 400 && !HasFailure(); ++i) {  // the image is ~170 KiB: each copy counts
        std::vector<std::byte> f = r->file;
        flip_and_truncate(f, header_bytes, rng);
        check_parse(f);
    }
}

}  // namespace
}  // namespace pv::loader
