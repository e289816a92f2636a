#include "vmm/kvm/vm.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include "vmm/kvm/uapi.h"
#include "vmm/kvm/vcpu.h"

namespace pv::kvm {

Status Vm::set_user_memory_region(uint32_t slot, mm::GuestPhysAddr gpa, uint64_t size, mm::HostVirtAddr host,
                                  bool read_only) const {
    if (!gpa.is_page_aligned() || !host.is_page_aligned() || !mm::is_aligned(size, mm::kPageSize))
        return make_error(ErrorKind::Invalid, "memslot " + std::to_string(slot) + " is not page aligned");
    kvm_userspace_memory_region region{};
    region.slot = slot;
    region.guest_phys_addr = gpa.value();
    region.memory_size = size;
    region.userspace_addr = host.value();
    region.flags = read_only ? KVM_MEM_READONLY : 0;
    if (::ioctl(m_fd.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0)
        return errno_error(ErrorKind::Kvm, "KVM_SET_USER_MEMORY_REGION (slot " + std::to_string(slot) + ") failed");
    return {};
}

Status Vm::delete_memory_region(uint32_t slot) const {
    kvm_userspace_memory_region region{};
    region.slot = slot;
    if (::ioctl(m_fd.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0)
        return errno_error(ErrorKind::Kvm, "deleting memslot " + std::to_string(slot) + " failed");
    return {};
}

bool Vm::supports_readonly_memory() const { return ::ioctl(m_fd.get(), KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) > 0; }

uint64_t Vm::tsc_khz() const {
    const int khz = ::ioctl(m_fd.get(), KVM_GET_TSC_KHZ, 0);
    return khz > 0 ? static_cast<uint64_t>(khz) : 0;
}

Status Vm::set_tss_addr(uint64_t gpa) const {
    if (::ioctl(m_fd.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(gpa)) < 0)
        return errno_error(ErrorKind::Kvm, "KVM_SET_TSS_ADDR failed");
    return {};
}

Status Vm::set_identity_map_addr(uint64_t gpa) const {
    __u64 addr = gpa;
    if (::ioctl(m_fd.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0)
        return errno_error(ErrorKind::Kvm, "KVM_SET_IDENTITY_MAP_ADDR failed");
    return {};
}

Expected<Vcpu> Vm::create_vcpu(uint32_t id) const {
    int fd = ::ioctl(m_fd.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
    if (fd < 0) return errno_error(ErrorKind::Kvm, "KVM_CREATE_VCPU " + std::to_string(id) + " failed");
    UniqueFd owned(fd);
    void* run = ::mmap(nullptr, m_vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (run == MAP_FAILED) return errno_error(ErrorKind::Resource, "mmap of vCPU " + std::to_string(id) + " failed");
    return Vcpu(std::move(owned), id, run, m_vcpu_mmap_size);
}

}  // namespace pv::kvm
