#include "vmm/memory/guest_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "vmm/abi/layout.h"
#include "vmm/kvm/vm.h"

namespace pv::memory {
namespace {

std::string hex(uint64_t v) {
    char buf[24];
    (void)std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

}  // namespace

Expected<GuestMemory> GuestMemory::create(uint64_t size) {
    if (size < layout::kMinRamSize || size % layout::kPage != 0)
        return make_error(ErrorKind::Invalid, "guest RAM size " + hex(size) + " is not a page multiple >= 48 MiB");
    GuestMemory mem;
    mem.m_size = size;
    uint64_t low = std::min(size, layout::kLowRamLimit);
    std::pair<uint64_t, uint64_t> ranges[2] = {{0, low}, {layout::k4GiB, size - low}};
    for (auto [gpa, len] : ranges) {
        if (len == 0) continue;
        size_t total = len + 2 * layout::kPage;
        void* base = ::mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED)
            return errno_error(ErrorKind::Resource, "cannot reserve " + hex(len) + " bytes of guest RAM");
        mem.m_mappings.push_back({base, total});
        std::byte* host = static_cast<std::byte*>(base) + layout::kPage;
        if (::mprotect(host, len, PROT_READ | PROT_WRITE) != 0)
            return errno_error(ErrorKind::Resource, "cannot map " + hex(len) + " bytes of guest RAM");
        // Guest RAM is not worth a core dump, and a fork (e.g. system()) must not
        // copy-on-write share pages KVM maps into the guest (QEMU does the same).
        ::madvise(host, len, MADV_DONTDUMP);
        ::madvise(host, len, MADV_DONTFORK);
        mem.m_regions.push_back({mm::GuestPhysRange::from_start_size(mm::GuestPhysAddr(gpa), len), host});
    }
    return mem;
}

GuestMemory::GuestMemory(GuestMemory&& o) noexcept
    : m_size(std::exchange(o.m_size, 0)), m_regions(std::move(o.m_regions)), m_mappings(std::move(o.m_mappings)) {
    o.m_regions.clear();
    o.m_mappings.clear();
}

GuestMemory& GuestMemory::operator=(GuestMemory&& o) noexcept {
    if (this != &o) {
        release();
        m_size = std::exchange(o.m_size, 0);
        m_regions = std::move(o.m_regions);
        m_mappings = std::move(o.m_mappings);
        o.m_regions.clear();
        o.m_mappings.clear();
    }
    return *this;
}

GuestMemory::~GuestMemory() { release(); }

void GuestMemory::release() {
    for (auto& m : m_mappings) ::munmap(m.base, m.length);
    m_mappings.clear();
    m_regions.clear();
}

Status GuestMemory::register_with(const kvm::Vm& vm) const {
    uint32_t slot = 0;
    for (const auto& r : m_regions)
        PV_TRY(vm.set_user_memory_region(slot++, r.gpa.start(), r.gpa.size(), mm::host_addr(r.host)));
    return {};
}

uint64_t GuestMemory::low_end() const { return m_regions.empty() ? 0 : m_regions.front().gpa.size(); }

const GuestMemory::Region* GuestMemory::find(mm::GuestPhysAddr gpa) const {
    for (const auto& r : m_regions)
        if (r.gpa.contains(gpa)) return &r;
    return nullptr;
}

bool GuestMemory::contains(mm::GuestPhysAddr gpa, uint64_t len) const {
    auto range = mm::GuestPhysRange::try_create(gpa, len);
    if (!range) return false;
    const Region* r = find(gpa);
    if (r == nullptr) return false;
    return r->gpa.contains(*range);
}

Expected<std::span<std::byte>> GuestMemory::host_span(mm::GuestPhysAddr gpa, uint64_t len) const {
    auto range = mm::GuestPhysRange::try_create(gpa, len);
    const Region* r = find(gpa);
    if (!range || r == nullptr || !r->gpa.contains(*range))
        return make_error(ErrorKind::GuestFault,
                          "guest-physical range [" + hex(gpa.value()) + ", +" + hex(len) + ") is not in guest RAM");
    return std::span<std::byte>(r->host + (gpa - r->gpa.start()), len);
}

}  // namespace pv::memory
