// One KVM vCPU: its fd and the shared kvm_run page (mmap'ed with the size
// KVM_GET_VCPU_MMAP_SIZE reports). A Vcpu is used by one thread at a time,
// except request_immediate_exit(), which any thread may call to kick it.
#pragma once

#include <span>
#include <vector>

#include "vmm/base/error.h"
#include "vmm/kvm/fd.h"
#include "vmm/kvm/types.h"

namespace pv::kvm {

class Vcpu {
public:
    Vcpu(Vcpu&& o) noexcept;
    Vcpu& operator=(Vcpu&& o) noexcept;
    Vcpu(const Vcpu&) = delete;
    Vcpu& operator=(const Vcpu&) = delete;
    ~Vcpu();

    [[nodiscard]] uint32_t id() const { return m_id; }

    [[nodiscard]] Expected<Regs> get_regs() const;
    [[nodiscard]] Status set_regs(const Regs& regs) const;
    [[nodiscard]] Expected<Sregs> get_sregs() const;
    // Keeps the vCPU's pending-interrupt bitmap; sets everything in `sregs`.
    [[nodiscard]] Status set_sregs(const Sregs& sregs) const;
    [[nodiscard]] Status set_cpuid(std::span<const CpuidEntry> entries) const;

    // KVM_RUN once. A signal or immediate_exit yields ExitReason::Interrupted;
    // any other ioctl failure is a Kvm error.
    [[nodiscard]] Expected<ExitState> run();
    // The decoded state of the last exit (valid after run()).
    [[nodiscard]] ExitState exit_state() const;

    // Thread-safe: the next (or current, with a signal) KVM_RUN returns at once.
    void request_immediate_exit(bool on);

private:
    friend class Vm;
    Vcpu(UniqueFd fd, uint32_t id, void* run, uint64_t run_size);
    void unmap();

    UniqueFd m_fd;
    uint32_t m_id = 0;
    void* m_run = nullptr;
    uint64_t m_run_size = 0;
};

}  // namespace pv::kvm
