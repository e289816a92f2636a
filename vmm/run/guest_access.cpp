#include "vmm/run/guest_access.h"

#include <algorithm>
#include <cstring>

#include "vmm/x86/exit.h"

namespace pv::run {
namespace {

mm::Unexpected<Error> fault(uint64_t gva, const char* why) {
    return make_error(ErrorKind::GuestFault, "guest address " + x86::hex(gva) + " " + why);
}

}  // namespace

Expected<std::vector<std::span<std::byte>>> PageTableGuestAccess::resolve(mm::GuestVirtAddr gva, uint64_t len,
                                                                          bool write) const {
    std::vector<std::span<std::byte>> spans;
    auto range = mm::GuestVirtRange::try_create(gva, len);
    if (!range) return fault(gva.value(), "range wraps around");
    uint64_t done = 0;
    while (done < len) {
        mm::GuestVirtAddr at = gva + done;
        auto m = m_query ? m_query(at) : m_pt.query(at);
        if (!m) return fault(at.value(), "is not mapped");
        mm::Perm need = mm::Perm::Read | mm::Perm::User | (write ? mm::Perm::Write : mm::Perm::None);
        if (!mm::allows(m->perm, need))
            return fault(at.value(), write ? "is not user-writable" : "is not user-readable");
        uint64_t offset = at - m->base;
        uint64_t chunk = std::min(len - done, mm::bytes(m->size) - offset);
        auto span = m_mem.host_span(m->phys + offset, chunk);
        if (!span) return fault(at.value(), "is not backed by guest RAM");
        spans.push_back(*span);
        done += chunk;
    }
    return spans;
}

Status PageTableGuestAccess::read(mm::GuestVirtAddr gva, std::span<std::byte> out) {
    PV_TRY_ASSIGN(auto spans, resolve(gva, out.size(), false));
    size_t at = 0;
    for (auto s : spans) {
        std::memcpy(out.data() + at, s.data(), s.size());
        at += s.size();
    }
    return {};
}

Status PageTableGuestAccess::write(mm::GuestVirtAddr gva, std::span<const std::byte> in) {
    PV_TRY_ASSIGN(auto spans, resolve(gva, in.size(), true));
    size_t at = 0;
    for (auto s : spans) {
        std::memcpy(s.data(), in.data() + at, s.size());
        at += s.size();
    }
    return {};
}

}  // namespace pv::run
