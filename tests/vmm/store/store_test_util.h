// Helpers shared by the store tests: a scratch directory and page contents.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace pv::store::test {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class ScratchDir {
public:
    ScratchDir() {
        const char* base = std::getenv("TMPDIR");
        std::string templ = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/pv-store-XXXXXX";
        std::vector<char> buf(templ.begin(), templ.end());
        buf.push_back('\0');
        if (::mkdtemp(buf.data()) != nullptr) m_path = buf.data();
    }
    ~ScratchDir() {
        std::error_code ec;
        if (!m_path.empty()) std::filesystem::remove_all(m_path, ec);
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    [[nodiscard]] std::string file(const std::string& name) const { return m_path + "/" + name; }
    [[nodiscard]] const std::string& path() const { return m_path; }

private:
    std::string m_path;
};

// Deterministic page contents for (gpn, version): distinct for distinct keys.
inline std::vector<std::byte> page_bytes(uint64_t gpn, uint64_t version, size_t page_size = 4096) {
    std::vector<std::byte> page(page_size);
    std::mt19937_64 rng(gpn * 0x9E3779B97F4A7C15ULL ^ (version + 1) * 0xC2B2AE3D27D4EB4FULL);
    for (size_t i = 0; i < page_size; i += 8) {
        uint64_t v = rng();
        for (size_t j = 0; j < 8 && i + j < page_size; ++j) page[i + j] = std::byte(v >> (8 * j));
    }
    return page;
}

inline std::vector<std::byte> read_file(const std::string& path) {
    std::vector<std::byte> bytes;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return bytes;
    struct stat st {};
    ::fstat(fd, &st);
    bytes.resize(size_t(st.st_size));
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::pread(fd, bytes.data() + done, bytes.size() - done, off_t(done));
        if (n <= 0) break;
        done += size_t(n);
    }
    ::close(fd);
    bytes.resize(done);
    return bytes;
}

inline bool write_file(const std::string& path, const std::vector<std::byte>& bytes) {
    int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n <= 0) break;
        done += size_t(n);
    }
    ::close(fd);
    return done == bytes.size();
}

}  // namespace pv::store::test
