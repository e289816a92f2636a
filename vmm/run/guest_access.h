// GuestAccess over the guest's own page table and RAM: every guest-virtual
// byte is translated through the page table (present + User, and Write for
// writes), then bounds-checked against guest RAM, before any host access.
// A failed access copies nothing into guest memory (write validates the
// whole range first). Safe to use from several vCPU threads at once while no
// thread modifies the page table.
#pragma once

#include <functional>
#include <vector>

#include "vmm/hypercall/guest_access.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/x86/guest_page_table.h"

namespace pv::run {

class PageTableGuestAccess final : public hc::GuestAccess {
public:
    PageTableGuestAccess(const memory::GuestMemory& mem, const x86::GuestPageTable& pt) : m_mem(mem), m_pt(pt) {}

    // Translate through this instead of walking `pt` with its table pool (once
    // pagevisor's guest-virtual layer owns the tables, they live outside the pool).
    // Pages not mapped yet are not faulted in: such a pointer is a Fault.
    using Query = std::function<mm::Result<mm::x86::Mapping>(mm::GuestVirtAddr)>;
    void set_query(Query query) { m_query = std::move(query); }

    Status read(mm::GuestVirtAddr gva, std::span<std::byte> out) override;
    Status write(mm::GuestVirtAddr gva, std::span<const std::byte> in) override;

    // Host spans covering [gva, gva + len), in order; GuestFault if any byte fails.
    [[nodiscard]] Expected<std::vector<std::span<std::byte>>> resolve(mm::GuestVirtAddr gva, uint64_t len,
                                                                      bool write) const;

private:
    const memory::GuestMemory& m_mem;
    const x86::GuestPageTable& m_pt;
    Query m_query;
};

}  // namespace pv::run
