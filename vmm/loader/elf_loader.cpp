#include "vmm/loader/elf_loader.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace pv::loader {
namespace {

using Bytes = std::span<const std::byte>;

mm::Unexpected<Error> bad_image(std::string message) { return make_error(ErrorKind::GuestImage, std::move(message)); }

std::string hex(uint64_t v) {
    char buf[2 + 16];
    buf[0] = '0';
    buf[1] = 'x';
    auto res = std::to_chars(buf + 2, buf + sizeof(buf), v, 16);
    return std::string(buf, res.ptr);
}

// Whether [offset, offset + size) lies inside a buffer of `total` bytes, without overflow.
bool fits(uint64_t total, uint64_t offset, uint64_t size) { return offset <= total && size <= total - offset; }

template <class T>
T read_struct(Bytes file, uint64_t offset) {
    T out{};
    MM_ASSERT(fits(file.size(), offset, sizeof(T)));  // callers check with fits() first
    std::memcpy(&out, file.data() + offset, sizeof(T));
    return out;
}

Status check_limits(const Limits& l) {
    auto aligned = [](uint64_t v) { return mm::is_aligned(v, mm::kPageSize); };
    if (!aligned(l.image_base) || !aligned(l.image_limit) || !aligned(l.kernel_window_end) ||
        l.image_base >= l.image_limit || l.max_file_size == 0)
        return make_error(ErrorKind::Invalid, "loader limits are inconsistent (image base " + hex(l.image_base) +
                                                  ", limit " + hex(l.image_limit) + ", kernel window end " +
                                                  hex(l.kernel_window_end) + ")");
    return {};
}

Status check_ident(Bytes file, const Limits& limits) {
    if (file.empty()) return bad_image("file is empty");
    if (file.size() > limits.max_file_size)
        return bad_image("file is too large (" + std::to_string(file.size()) + " bytes, limit " +
                         std::to_string(limits.max_file_size) + ")");
    if (file.size() < SELFMAG || std::memcmp(file.data(), ELFMAG, SELFMAG) != 0)
        return bad_image("not an ELF file (bad magic)");
    if (file.size() < EI_NIDENT) return bad_image("file truncated inside the ELF identification");
    auto ident = [&](size_t i) { return static_cast<unsigned char>(file[i]); };
    if (ident(EI_CLASS) != ELFCLASS64)
        return bad_image("not a 64-bit ELF file (EI_CLASS " + std::to_string(ident(EI_CLASS)) + ")");
    if (ident(EI_DATA) != ELFDATA2LSB) return bad_image("not a little-endian ELF file");
    if (ident(EI_VERSION) != EV_CURRENT) return bad_image("bad ELF identification version");
    if (file.size() < sizeof(Elf64_Ehdr)) return bad_image("file truncated inside the ELF header");
    return {};
}

pv::Expected<Elf64_Ehdr> read_header(Bytes file) {
    auto eh = read_struct<Elf64_Ehdr>(file, 0);
    if (eh.e_version != EV_CURRENT) return bad_image("bad ELF version " + std::to_string(eh.e_version));
    if (eh.e_type != ET_EXEC) {
        const char* what = eh.e_type == ET_DYN   ? " (position-independent/shared object)"
                           : eh.e_type == ET_REL ? " (relocatable object)"
                                                 : "";
        return bad_image("not a static executable: e_type " + std::to_string(eh.e_type) + what +
                         "; link the guest with -static -no-pie");
    }
    if (eh.e_machine != EM_X86_64)
        return bad_image("not an x86-64 ELF file (e_machine " + std::to_string(eh.e_machine) + ")");
    if (eh.e_phentsize != sizeof(Elf64_Phdr))
        return bad_image("e_phentsize is " + std::to_string(eh.e_phentsize) + ", expected " +
                         std::to_string(sizeof(Elf64_Phdr)));
    if (eh.e_phnum == PN_XNUM) return bad_image("extended program header numbering (PN_XNUM) is unsupported");
    const uint64_t table_size = uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr);
    if (!fits(file.size(), eh.e_phoff, table_size))
        return bad_image("program headers (offset " + hex(eh.e_phoff) + ", " + std::to_string(eh.e_phnum) +
                         " entries) lie outside the file");
    return eh;
}

pv::Expected<std::vector<Elf64_Phdr>> read_program_headers(Bytes file, const Elf64_Ehdr& eh) {
    std::vector<Elf64_Phdr> loads;
    for (uint64_t i = 0; i < eh.e_phnum; ++i) {
        auto ph = read_struct<Elf64_Phdr>(file, eh.e_phoff + i * sizeof(Elf64_Phdr));
        switch (ph.p_type) {
            case PT_INTERP:
                return bad_image("PT_INTERP present: dynamic executables are unsupported (link with -static)");
            case PT_DYNAMIC:
                return bad_image("PT_DYNAMIC present: dynamic executables are unsupported (link with -static)");
            case PT_TLS: return bad_image("PT_TLS present: thread-local storage is unsupported in the guest");
            case PT_LOAD: loads.push_back(ph); break;
            default: break;  // notes, GNU_STACK, ... carry nothing to load
        }
    }
    if (loads.empty()) return bad_image("no PT_LOAD segment");
    return loads;
}

mm::Perm segment_perm(const Elf64_Phdr& ph, const Limits& limits) {
    mm::Perm p = mm::Perm::Read;
    if ((ph.p_flags & PF_W) != 0) p |= mm::Perm::Write;
    if ((ph.p_flags & PF_X) != 0) p |= mm::Perm::Exec;
    if (ph.p_vaddr >= limits.kernel_window_end) p |= mm::Perm::User;
    return p;
}

// Checks one PT_LOAD with mem_size > 0 against the file and the limits.
Status check_segment(const Elf64_Phdr& ph, const Limits& limits, const std::string& name) {
    if (ph.p_vaddr % mm::kPageSize != 0)
        return bad_image(name + ": vaddr is not page-aligned (the guest linker script must page-align segments)");
    if (ph.p_offset % mm::kPageSize != ph.p_vaddr % mm::kPageSize)
        return bad_image(name + ": p_offset " + hex(ph.p_offset) +
                         " and p_vaddr are not congruent modulo the page size");
    uint64_t end = 0;
    if (__builtin_add_overflow(ph.p_vaddr, ph.p_memsz, &end))
        return bad_image(name + ": vaddr + memsz (" + hex(ph.p_memsz) + ") overflows");
    if (ph.p_vaddr < limits.image_base || end > limits.image_limit)
        return bad_image(name + " [" + hex(ph.p_vaddr) + ", " + hex(end) + ") is outside the image window [" +
                         hex(limits.image_base) + ", " + hex(limits.image_limit) + ")");
    if (ph.p_vaddr < limits.kernel_window_end && end > limits.kernel_window_end)
        return bad_image(name + " [" + hex(ph.p_vaddr) + ", " + hex(end) + ") crosses the kernel window end " +
                         hex(limits.kernel_window_end));
    if ((ph.p_flags & PF_W) != 0 && (ph.p_flags & PF_X) != 0)
        return bad_image(name + " is both writable and executable (W^X)");
    return {};
}

pv::Expected<std::vector<Segment>> make_segments(Bytes file, const std::vector<Elf64_Phdr>& loads,
                                                 const Limits& limits) {
    std::vector<Segment> segments;
    for (size_t i = 0; i < loads.size(); ++i) {
        const Elf64_Phdr& ph = loads[i];
        const std::string name = "PT_LOAD segment " + std::to_string(i) + " (vaddr " + hex(ph.p_vaddr) + ")";
        if (ph.p_filesz > ph.p_memsz)
            return bad_image(name + ": filesz " + hex(ph.p_filesz) + " exceeds memsz " + hex(ph.p_memsz));
        if (!fits(file.size(), ph.p_offset, ph.p_filesz))
            return bad_image(name + ": file bytes [offset " + hex(ph.p_offset) + ", +" + hex(ph.p_filesz) +
                             ") lie outside the file");
        if (ph.p_memsz == 0) continue;
        PV_TRY(check_segment(ph, limits, name));
        segments.push_back(Segment{mm::GuestVirtAddr(ph.p_vaddr), ph.p_memsz,
                                   file.subspan(static_cast<size_t>(ph.p_offset), static_cast<size_t>(ph.p_filesz)),
                                   segment_perm(ph, limits)});
    }
    if (segments.empty()) return bad_image("no PT_LOAD segment with a non-zero memory size");
    std::sort(segments.begin(), segments.end(), [](const Segment& a, const Segment& b) { return a.vaddr < b.vaddr; });
    for (size_t i = 1; i < segments.size(); ++i) {
        const Segment& prev = segments[i - 1];
        const Segment& cur = segments[i];
        // Validated segments end at or below image_limit (page-aligned), so rounding cannot overflow.
        if (prev.vaddr.value() + prev.page_span() > cur.vaddr.value())
            return bad_image("segments at " + hex(prev.vaddr.value()) + " and " + hex(cur.vaddr.value()) +
                             " overlap or share a page");
    }
    return segments;
}

Status check_entry_and_stubs(const Image& image, const Limits& limits) {
    const Segment* seg = image.find_segment(image.entry);
    if (seg == nullptr || !mm::has(seg->perm, mm::Perm::Exec | mm::Perm::User))
        return bad_image("entry point " + hex(image.entry.value()) + " is not inside an executable user segment");
    if (!limits.require_exception_stubs) return {};
    const uint64_t stubs = layout::kExceptionStubsAddr;
    const uint64_t stubs_size = layout::kExceptionVectors * layout::kExceptionStubStride;
    seg = image.find_segment(mm::GuestVirtAddr(stubs));
    const bool covered = seg != nullptr && mm::has(seg->perm, mm::Perm::Exec) && !mm::has(seg->perm, mm::Perm::User) &&
                         stubs - seg->vaddr.value() + stubs_size <= seg->mem_size;
    if (!covered)
        return bad_image("exception stubs [" + hex(stubs) + ", " + hex(stubs + stubs_size) +
                         ") are not inside one executable supervisor segment");
    return {};
}

}  // namespace

const Segment* Image::find_segment(mm::GuestVirtAddr gva) const {
    auto it = std::upper_bound(segments.begin(), segments.end(), gva,
                               [](mm::GuestVirtAddr a, const Segment& s) { return a < s.vaddr; });
    if (it == segments.begin()) return nullptr;
    --it;
    if (gva.value() - it->vaddr.value() >= it->mem_size) return nullptr;
    return &*it;
}

pv::Expected<Image> parse_elf(std::vector<std::byte> file, const Limits& limits) {
    PV_TRY(check_limits(limits));
    Image image;
    image.file = std::move(file);
    const Bytes bytes(image.file);
    PV_TRY(check_ident(bytes, limits));
    PV_TRY_ASSIGN(Elf64_Ehdr eh, read_header(bytes));
    PV_TRY_ASSIGN(std::vector<Elf64_Phdr> loads, read_program_headers(bytes, eh));
    PV_TRY_ASSIGN(image.segments, make_segments(bytes, loads, limits));
    image.entry = mm::GuestVirtAddr(eh.e_entry);
    PV_TRY(check_entry_and_stubs(image, limits));
    MM_DEBUG_ASSERT(check_invariants(image, limits));
    return image;
}

namespace {

pv::Expected<std::vector<std::byte>> read_file(const std::string& path, const Limits& limits) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_error(ErrorKind::Io, "cannot open");
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) return errno_error(ErrorKind::Io, "cannot stat");
    if (!S_ISREG(st.st_mode)) return make_error(ErrorKind::Io, "not a regular file");
    const auto size = static_cast<uint64_t>(st.st_size);
    if (size == 0) return bad_image("file is empty");
    if (size > limits.max_file_size)
        return bad_image("file is too large (" + std::to_string(size) + " bytes, limit " +
                         std::to_string(limits.max_file_size) + ")");
    std::vector<std::byte> data(static_cast<size_t>(size));
    size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::read(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error(ErrorKind::Io, "read failed");
        if (n == 0) return make_error(ErrorKind::Io, "file shrank while being read");
        done += static_cast<size_t>(n);
    }
    return data;
}

}  // namespace

pv::Expected<Image> load_elf_file(const std::string& path, const Limits& limits) {
    const std::string context = "guest image '" + path + "'";
    auto data = read_file(path, limits);
    if (!data) return mm::Unexpected<Error>{data.error().with_context(context)};
    auto image = parse_elf(std::move(*data), limits);
    if (!image) return mm::Unexpected<Error>{image.error().with_context(context)};
    return image;
}

bool check_invariants(const Image& image, const Limits& limits) {
    const auto* file_begin = image.file.data();
    const auto* file_end = file_begin + image.file.size();
    for (size_t i = 0; i < image.segments.size(); ++i) {
        const Segment& s = image.segments[i];
        const uint64_t v = s.vaddr.value();
        if (!s.vaddr.is_page_aligned() || s.mem_size == 0 || s.data.size() > s.mem_size) return false;
        if (v < limits.image_base || s.mem_size > limits.image_limit - v) return false;
        if (v < limits.kernel_window_end && v + s.mem_size > limits.kernel_window_end) return false;
        if (!mm::has(s.perm, mm::Perm::Read) || mm::has(s.perm, mm::Perm::Write | mm::Perm::Exec)) return false;
        if (mm::has(s.perm, mm::Perm::User) != (v >= limits.kernel_window_end)) return false;
        if (!s.data.empty() && (s.data.data() < file_begin || s.data.data() + s.data.size() > file_end)) return false;
        if (i > 0) {
            const Segment& p = image.segments[i - 1];
            if (p.vaddr.value() + p.page_span() > v) return false;
        }
    }
    if (image.segments.empty()) return false;
    const Segment* entry = image.find_segment(image.entry);
    return entry != nullptr && mm::has(entry->perm, mm::Perm::Exec | mm::Perm::User);
}

}  // namespace pv::loader
