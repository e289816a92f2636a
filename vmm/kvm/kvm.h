// The KVM device (/dev/kvm): API version, capabilities, supported CPUID, and
// the factory for VMs. Every failure is a pv::Error of kind Kvm with a
// message a user can act on (module not loaded, no permission, missing cap).
#pragma once

#include <string>
#include <vector>

#include "vmm/base/error.h"
#include "vmm/kvm/fd.h"
#include "vmm/kvm/types.h"

namespace pv::kvm {

class Vm;

class Kvm {
public:
    // Opens `path` (O_RDWR | O_CLOEXEC), checks the API version is 12 and that
    // every capability in required_caps() is present.
    static Expected<Kvm> open(const std::string& path = "/dev/kvm");

    // The capabilities the VMM cannot run without.
    static std::vector<Cap> required_caps();

    [[nodiscard]] int api_version() const;
    // KVM_CHECK_EXTENSION: 0 when absent, otherwise a cap-specific positive value.
    [[nodiscard]] int check(Cap cap) const;
    // Kvm error "KVM lacks capability KVM_CAP_X" when check(cap) is 0.
    [[nodiscard]] Status require(Cap cap) const;
    [[nodiscard]] Expected<std::vector<CpuidEntry>> supported_cpuid() const;
    [[nodiscard]] Expected<uint64_t> vcpu_mmap_size() const;
    // Recommended maximum vCPUs per VM and the number of memslots.
    [[nodiscard]] int max_vcpus() const;
    [[nodiscard]] int nr_memslots() const;
    // VMX / SVM / PVM from /sys/module and the CPU vendor. Never used for decisions.
    [[nodiscard]] static Flavour flavour();

    [[nodiscard]] Expected<Vm> create_vm() const;
    [[nodiscard]] int fd() const { return m_fd.get(); }

private:
    explicit Kvm(UniqueFd fd) : m_fd(std::move(fd)) {}
    UniqueFd m_fd;
};

}  // namespace pv::kvm
