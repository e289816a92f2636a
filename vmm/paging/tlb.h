// TlbCoordinator: TLB shootdown for one guest address space.
//
// A generation counter per address space. An operation that removes or
// downgrades translations calls shootdown(): it bumps the generation and does
// not return until every vCPU has either acknowledged that generation (it
// flushed its TLB) or is outside guest mode. A vCPU thread runs:
//
//     for (;;) {
//         tlb.begin(v);                                   // entering guest mode
//         if (uint64_t g = tlb.flush_generation(v)) {     // something to flush
//             flush (re-set CR3 via KVM_SET_SREGS, which resets KVM's MMU context);
//             tlb.ack(v, g);
//         }
//         KVM_RUN;
//         tlb.end(v);                                     // before taking any other lock
//         handle the exit;
//     }
//
// Correctness: begin() publishes "in guest" before reading the generation and
// shootdown() bumps the generation before reading "in guest" (both seq_cst), so
// either the vCPU sees the new generation and flushes before entering, or the
// shootdown sees it in guest and waits for its ack or its end(). kick(v) must make
// a vCPU that is in or about to enter KVM_RUN return from it soon (a signal with
// immediate_exit); it is called again every kRekick while the vCPU has not answered.
// kick runs under the coordinator's internal lock: it must not call end()/ack() itself.
// Thread-safe; shootdown() may be called from several threads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

namespace pv::paging {

class TlbCoordinator {
public:
    static constexpr std::chrono::milliseconds kRekick{2};

    explicit TlbCoordinator(uint32_t vcpus);

    [[nodiscard]] uint32_t vcpus() const { return m_vcpus; }
    [[nodiscard]] uint64_t generation() const { return m_generation.load(); }

    void begin(uint32_t vcpu);
    void end(uint32_t vcpu);
    // The generation to flush for and ack, or 0 when this vCPU is up to date.
    [[nodiscard]] uint64_t flush_generation(uint32_t vcpu) const;
    [[nodiscard]] bool flush_pending(uint32_t vcpu) const { return flush_generation(vcpu) != 0; }
    void ack(uint32_t vcpu, uint64_t generation);

    // Bumps the generation, kicks the vCPUs in guest mode that have not acked it,
    // waits for all of them; returns the generation.
    uint64_t shootdown(const std::function<void(uint32_t)>& kick);

    [[nodiscard]] uint64_t shootdowns() const { return m_shootdowns.load(); }
    [[nodiscard]] uint64_t kicks() const { return m_kicks.load(); }

private:
    struct alignas(64) VcpuState {
        std::atomic<bool> in_guest{false};
        std::atomic<uint64_t> acked{0};
    };
    [[nodiscard]] bool answered(uint32_t vcpu, uint64_t generation) const;
    void notify();

    uint32_t m_vcpus;
    std::unique_ptr<VcpuState[]> m_state;
    std::atomic<uint64_t> m_generation{0};
    std::atomic<uint32_t> m_waiters{0};
    std::atomic<uint64_t> m_shootdowns{0};
    std::atomic<uint64_t> m_kicks{0};
    std::mutex m_lock;  // only for the waiters' condition variable
    std::condition_variable m_changed;
};

}  // namespace pv::paging
