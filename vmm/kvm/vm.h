// One KVM virtual machine: memslots and vCPU creation. Owns the VM fd; vCPUs
// created from it keep their own fds (the kernel keeps the VM alive for them).
#pragma once

#include "mm/addr.h"
#include "vmm/base/error.h"
#include "vmm/kvm/fd.h"

namespace pv::kvm {

class Vcpu;

class Vm {
public:
    // Maps [gpa, gpa + size) of guest-physical space to [host, host + size).
    // size 0 deletes the slot. Both addresses and the size must be page aligned.
    // read_only: KVM_MEM_READONLY (guest writes exit as MMIO; needs
    // KVM_CAP_READONLY_MEM, see supports_readonly_memory()).
    [[nodiscard]] Status set_user_memory_region(uint32_t slot, mm::GuestPhysAddr gpa, uint64_t size,
                                                mm::HostVirtAddr host, bool read_only = false) const;
    [[nodiscard]] Status delete_memory_region(uint32_t slot) const;
    // KVM_CHECK_EXTENSION(KVM_CAP_READONLY_MEM) on this VM.
    [[nodiscard]] bool supports_readonly_memory() const;
    // The guest TSC frequency in kHz (KVM_GET_TSC_KHZ on the VM fd; PVM answers it
    // without advertising KVM_CAP_VM_TSC_CONTROL); 0 when the kernel cannot say.
    [[nodiscard]] uint64_t tsc_khz() const;
    [[nodiscard]] Expected<Vcpu> create_vcpu(uint32_t id) const;
    [[nodiscard]] Status set_tss_addr(uint64_t gpa) const;
    [[nodiscard]] Status set_identity_map_addr(uint64_t gpa) const;
    [[nodiscard]] int fd() const { return m_fd.get(); }

private:
    friend class Kvm;
    Vm(UniqueFd fd, uint64_t vcpu_mmap_size) : m_fd(std::move(fd)), m_vcpu_mmap_size(vcpu_mmap_size) {}
    UniqueFd m_fd;
    uint64_t m_vcpu_mmap_size;
};

}  // namespace pv::kvm
