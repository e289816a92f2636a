#include "vmm/kvm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include "vmm/kvm/uapi.h"
#include "vmm/kvm/vm.h"

namespace pv::kvm {
namespace {

struct CapInfo {
    Cap cap;
    long number;
    std::string_view name;
};
constexpr CapInfo kCaps[] = {
    {Cap::UserMemory, KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {Cap::SetTssAddr, KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {Cap::SetIdentityMapAddr, KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
    {Cap::ExtCpuid, KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {Cap::ImmediateExit, KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
    {Cap::NrMemslots, KVM_CAP_NR_MEMSLOTS, "KVM_CAP_NR_MEMSLOTS"},
    {Cap::MaxVcpus, KVM_CAP_MAX_VCPUS, "KVM_CAP_MAX_VCPUS"},
    {Cap::MaxVcpuId, KVM_CAP_MAX_VCPU_ID, "KVM_CAP_MAX_VCPU_ID"},
};

const CapInfo& cap_info(Cap c) {
    for (const auto& info : kCaps)
        if (info.cap == c) return info;
    return kCaps[0];  // unreachable: every Cap has an entry
}

bool path_exists(const char* p) { return ::access(p, F_OK) == 0; }

std::string cpu_vendor() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("vendor_id", 0) == 0) return line.substr(line.find(':') + 2);
    return "";
}

}  // namespace

std::string_view flavour_name(Flavour f) {
    switch (f) {
        case Flavour::Vmx: return "VMX";
        case Flavour::Svm: return "SVM";
        case Flavour::Pvm: return "PVM";
        case Flavour::Unknown: return "unknown";
    }
    return "unknown";
}

std::string_view cap_name(Cap c) { return cap_info(c).name; }

Expected<Kvm> Kvm::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return make_error(ErrorKind::Kvm,
                              "KVM is not available: " + path + " does not exist (is the kvm module loaded?)");
        if (e == EACCES || e == EPERM)
            return make_error(ErrorKind::Kvm, "no permission to open " + path + " (add yourself to the kvm group)");
        return make_error(ErrorKind::Kvm, "cannot open " + path, e);
    }
    Kvm kvm{UniqueFd(fd)};
    int version = kvm.api_version();
    if (version != KVM_API_VERSION)
        return make_error(ErrorKind::Kvm, path + " is not a usable KVM device (API version " + std::to_string(version) +
                                              ", need " + std::to_string(KVM_API_VERSION) + ")");
    for (Cap c : required_caps()) PV_TRY(kvm.require(c));
    return kvm;
}

std::vector<Cap> Kvm::required_caps() {
    return {Cap::UserMemory, Cap::ExtCpuid, Cap::ImmediateExit, Cap::NrMemslots, Cap::MaxVcpus};
}

int Kvm::api_version() const { return ::ioctl(m_fd.get(), KVM_GET_API_VERSION, 0); }

int Kvm::check(Cap cap) const {
    int r = ::ioctl(m_fd.get(), KVM_CHECK_EXTENSION, cap_info(cap).number);
    return r < 0 ? 0 : r;
}

Status Kvm::require(Cap cap) const {
    if (check(cap) <= 0) return make_error(ErrorKind::Kvm, "KVM lacks capability " + std::string(cap_name(cap)));
    return {};
}

int Kvm::max_vcpus() const { return check(Cap::MaxVcpus); }
int Kvm::nr_memslots() const { return check(Cap::NrMemslots); }

Expected<uint64_t> Kvm::vcpu_mmap_size() const {
    int r = ::ioctl(m_fd.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (r <= 0) return errno_error(ErrorKind::Kvm, "KVM_GET_VCPU_MMAP_SIZE failed");
    return static_cast<uint64_t>(r);
}

Expected<std::vector<CpuidEntry>> Kvm::supported_cpuid() const {
    // Grow the buffer until KVM stops answering E2BIG.
    for (uint32_t n = 256; n <= 4096; n *= 2) {
        size_t bytes = sizeof(PvKvmCpuid2Header) + n * sizeof(kvm_cpuid_entry2);
        auto buf = std::make_unique<uint64_t[]>((bytes + 7) / 8);
        auto* cpuid = reinterpret_cast<PvKvmCpuid2Header*>(buf.get());
        auto* entries = reinterpret_cast<kvm_cpuid_entry2*>(cpuid + 1);
        cpuid->nent = n;
        if (::ioctl(m_fd.get(), PV_KVM_GET_SUPPORTED_CPUID, cpuid) < 0) {
            if (errno == E2BIG) continue;
            return errno_error(ErrorKind::Kvm, "KVM_GET_SUPPORTED_CPUID failed");
        }
        std::vector<CpuidEntry> out;
        out.reserve(cpuid->nent);
        for (uint32_t i = 0; i < cpuid->nent; ++i) {
            const auto& e = entries[i];
            out.push_back({e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx});
        }
        return out;
    }
    return make_error(ErrorKind::Kvm, "KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
}

Flavour Kvm::flavour() {
    if (path_exists("/sys/module/kvm_pvm")) return Flavour::Pvm;
    std::string vendor = cpu_vendor();
    if (path_exists("/sys/module/kvm_intel") && vendor == "GenuineIntel") return Flavour::Vmx;
    if (path_exists("/sys/module/kvm_amd") && (vendor == "AuthenticAMD" || vendor == "HygonGenuine"))
        return Flavour::Svm;
    return Flavour::Unknown;
}

Expected<Vm> Kvm::create_vm() const {
    PV_TRY_ASSIGN(uint64_t mmap_size, vcpu_mmap_size());
    int fd = ::ioctl(m_fd.get(), KVM_CREATE_VM, 0);
    if (fd < 0) {
        if (errno == ENOMEM || errno == EMFILE || errno == ENFILE)
            return errno_error(ErrorKind::Resource, "KVM_CREATE_VM failed");
        return errno_error(ErrorKind::Kvm, "KVM_CREATE_VM failed");
    }
    Vm vm{UniqueFd(fd), mmap_size};
    // VMX needs these two pages reserved below 4 GiB (real-mode/EPT helpers);
    // elsewhere the ioctls are accepted no-ops. Both lie in the MMIO hole above
    // the device window, never in RAM.
    if (check(Cap::SetTssAddr) > 0) PV_TRY(vm.set_tss_addr(0xFFFB'D000));
    if (check(Cap::SetIdentityMapAddr) > 0) PV_TRY(vm.set_identity_map_addr(0xFFFB'C000));
    return vm;
}

}  // namespace pv::kvm
