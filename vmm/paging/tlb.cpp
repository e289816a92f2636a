#include "vmm/paging/tlb.h"

#include "mm/std.h"

namespace pv::paging {

TlbCoordinator::TlbCoordinator(uint32_t vcpus) : m_vcpus(vcpus), m_state(std::make_unique<VcpuState[]>(vcpus)) {}

void TlbCoordinator::begin(uint32_t vcpu) {
    MM_ASSERT(vcpu < m_vcpus);
    m_state[vcpu].in_guest.store(true);
}

void TlbCoordinator::end(uint32_t vcpu) {
    MM_ASSERT(vcpu < m_vcpus);
    m_state[vcpu].in_guest.store(false);
    notify();
}

uint64_t TlbCoordinator::flush_generation(uint32_t vcpu) const {
    MM_ASSERT(vcpu < m_vcpus);
    uint64_t g = m_generation.load();
    return m_state[vcpu].acked.load() < g ? g : 0;
}

void TlbCoordinator::ack(uint32_t vcpu, uint64_t generation) {
    MM_ASSERT(vcpu < m_vcpus);
    uint64_t cur = m_state[vcpu].acked.load();
    while (cur < generation && !m_state[vcpu].acked.compare_exchange_weak(cur, generation)) {
    }
    notify();
}

bool TlbCoordinator::answered(uint32_t vcpu, uint64_t generation) const {
    return !m_state[vcpu].in_guest.load() || m_state[vcpu].acked.load() >= generation;
}

// The common case (nobody waiting) costs one load: vCPU exits stay cheap.
void TlbCoordinator::notify() {
    if (m_waiters.load() == 0) return;
    std::lock_guard lock(m_lock);
    m_changed.notify_all();
}

uint64_t TlbCoordinator::shootdown(const std::function<void(uint32_t)>& kick) {
    m_waiters.fetch_add(1);
    uint64_t gen = m_generation.fetch_add(1) + 1;
    m_shootdowns.fetch_add(1);
    std::unique_lock lock(m_lock);
    for (;;) {
        bool all = true;
        for (uint32_t v = 0; v < m_vcpus; ++v) {
            if (answered(v, gen)) continue;
            all = false;
            if (kick) kick(v);
            m_kicks.fetch_add(1);
        }
        if (all) break;
        // A state change between the checks above and this wait notifies under
        // m_lock, which we hold until wait_for releases it: no wake-up is lost.
        m_changed.wait_for(lock, kRekick);
    }
    m_waiters.fetch_sub(1);
    return gen;
}

}  // namespace pv::paging
