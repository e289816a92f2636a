// `pagevisor info`: what KVM offers here and what pagevisor relies on.
#include <cstring>
#include <filesystem>
#include <ostream>
#include <string>

#include "vmm/cli/cli.h"
#include "vmm/kvm/kvm.h"

namespace pv::cli {
namespace {

const kvm::CpuidEntry* find_leaf(const std::vector<kvm::CpuidEntry>& entries, uint32_t function) {
    for (const auto& e : entries)
        if (e.function == function && e.index == 0) return &e;
    return nullptr;
}

std::string vendor_of(const kvm::CpuidEntry& leaf0) {
    char v[13] = {};
    std::memcpy(v, &leaf0.ebx, 4);
    std::memcpy(v + 4, &leaf0.edx, 4);
    std::memcpy(v + 8, &leaf0.ecx, 4);
    return v;
}

void print_cpuid(std::ostream& out, const std::vector<kvm::CpuidEntry>& cpuid) {
    out << "supported CPUID:   " << cpuid.size() << " entries";
    if (const auto* l0 = find_leaf(cpuid, 0))
        out << ", vendor " << vendor_of(*l0) << ", max leaf 0x" << std::hex << l0->eax;
    if (const auto* e0 = find_leaf(cpuid, 0x8000'0000)) out << ", max extended leaf 0x" << std::hex << e0->eax;
    out << std::dec << "\n";
    std::string features;
    auto flag = [&features](bool on, const char* name) {
        if (on) features += std::string(features.empty() ? "" : " ") + name;
    };
    if (const auto* l1 = find_leaf(cpuid, 1)) {
        flag(l1->edx & (1U << 25), "sse");
        flag(l1->ecx & (1U << 21), "x2apic");
        flag(l1->ecx & (1U << 26), "xsave");
    }
    if (const auto* e1 = find_leaf(cpuid, 0x8000'0001)) {
        flag(e1->edx & (1U << 20), "nx");
        flag(e1->edx & (1U << 26), "1g-pages");
        flag(e1->edx & (1U << 29), "long-mode");
    }
    if (const auto* l7 = find_leaf(cpuid, 7)) {
        flag(l7->ebx & (1U << 0), "fsgsbase");
        flag(l7->ebx & (1U << 7), "smep");
        flag(l7->ebx & (1U << 20), "smap");
    }
    out << "CPUID features:    " << (features.empty() ? "(none of interest)" : features) << "\n";
}

void print_numa(std::ostream& out) {
    std::vector<std::string> nodes;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/sys/devices/system/node", ec)) {
        std::string name = entry.path().filename().string();
        if (name.rfind("node", 0) == 0 && name.size() > 4 && std::isdigit(static_cast<unsigned char>(name[4])))
            nodes.push_back(name);
    }
    std::sort(nodes.begin(), nodes.end());
    out << "host NUMA nodes:   " << nodes.size();
    for (const auto& n : nodes) out << " " << n;
    out << "\n";
}

}  // namespace

int info_command(std::ostream& out, std::ostream& err) {
    out << "KVM flavour:       " << kvm::flavour_name(kvm::Kvm::flavour()) << "\n";
    auto kvm = kvm::Kvm::open();
    if (!kvm) {
        err << "pagevisor: error: " << kvm.error().to_string() << "\n";
        return exit_status(kvm.error().kind);
    }
    out << "KVM API version:   " << kvm->api_version() << "\n";
    out << "max vCPUs per VM:  " << kvm->max_vcpus() << "\n";
    out << "memslots per VM:   " << kvm->nr_memslots() << "\n";
    out << "capabilities relied on:\n";
    for (kvm::Cap c : kvm::Kvm::required_caps()) out << "  " << kvm::cap_name(c) << " = " << kvm->check(c) << "\n";
    out << "capabilities used when present:\n";
    for (kvm::Cap c : {kvm::Cap::SetTssAddr, kvm::Cap::SetIdentityMapAddr, kvm::Cap::MaxVcpuId})
        out << "  " << kvm::cap_name(c) << " = " << kvm->check(c) << "\n";
    auto cpuid = kvm->supported_cpuid();
    if (cpuid)
        print_cpuid(out, *cpuid);
    else
        out << "supported CPUID:   unavailable (" << cpuid.error().to_string() << ")\n";
    print_numa(out);
    return 0;
}

}  // namespace pv::cli
