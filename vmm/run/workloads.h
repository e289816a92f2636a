// The guest's allocator workloads (issue #7; guest side in guest/workload/,
// docs/workloads.md): the one list the VMM keeps of the programs that read
// BootInfo::args (abi::WorkloadArgs). It must match the guest's registry
// (guest/programs/registry.cpp); the CLI uses it to refuse --ops/--heap/...
// for a program that would ignore them.
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace pv::run {

inline constexpr std::array<std::string_view, 8> kAllocatorWorkloads = {
    "slab-churn", "buddy-churn", "tlsf-churn", "frames", "ids", "frag", "sparse", "multi"};

inline bool is_allocator_workload(std::string_view name) {
    for (auto w : kAllocatorWorkloads)
        if (w == name) return true;
    return false;
}

// "slab-churn, buddy-churn, ..., multi", for messages and --help.
inline std::string allocator_workload_list() {
    std::string s;
    for (auto w : kAllocatorWorkloads) {
        if (!s.empty()) s += ", ";
        s += w;
    }
    return s;
}

}  // namespace pv::run
