#include "vmm/x86/table_pool.h"

#include <cstring>

#include "vmm/memory/guest_memory.h"

namespace pv::x86 {

namespace {
constexpr uint64_t kFirstFrame = layout::kPageTablePoolAddr / layout::kPage;
}

TablePool::TablePool(const memory::GuestMemory& mem) {
    auto span = mem.host_span(mm::GuestPhysAddr(layout::kPageTablePoolAddr), layout::kPageTablePoolSize);
    MM_ASSERT(span.has_value());  // every guest has at least kMinRamSize of RAM
    m_base = span->data();
}

bool TablePool::in_pool(mm::GuestFrame frame) const {
    return frame.number() >= kFirstFrame && frame.number() - kFirstFrame < kFrames;
}

mm::Result<uint64_t*> TablePool::table(mm::GuestFrame frame) const {
    if (!in_pool(frame)) return mm::err(mm::Error::OutOfRange);
    return reinterpret_cast<uint64_t*>(m_base + (frame.number() - kFirstFrame) * layout::kPage);
}

mm::Result<mm::GuestFrame> TablePool::alloc_table() {
    for (uint64_t i = 0; i < kFrames; ++i) {
        if (m_used.test(i)) continue;
        m_used.set(i);
        std::memset(m_base + i * layout::kPage, 0, layout::kPage);
        return mm::GuestFrame(kFirstFrame + i);
    }
    return mm::err(mm::Error::NoMemory);
}

bool TablePool::release_table(mm::GuestFrame frame) {
    if (!in_pool(frame) || !m_used.test(frame.number() - kFirstFrame)) return false;
    m_used.reset(frame.number() - kFirstFrame);
    return true;
}

bool TablePool::claim(mm::GuestFrame frame) {
    if (!in_pool(frame) || m_used.test(frame.number() - kFirstFrame)) return false;
    m_used.set(frame.number() - kFirstFrame);
    return true;
}

bool TablePool::check_invariants() const { return m_base != nullptr && m_used.count() <= kFrames; }

}  // namespace pv::x86
