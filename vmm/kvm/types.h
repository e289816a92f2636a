// Project-side mirrors of the KVM ABI structures. The rest of the VMM speaks
// these types; only vmm/kvm/*.cpp converts them to and from <linux/kvm.h>
// (STYLE.md rule 7), so this header must not include any Linux UAPI header.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace pv::kvm {

// General-purpose registers (kvm_regs).
struct Regs {
    uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rsp = 0, rbp = 0;
    uint64_t r8 = 0, r9 = 0, r10 = 0, r11 = 0, r12 = 0, r13 = 0, r14 = 0, r15 = 0;
    uint64_t rip = 0, rflags = 0;
};

// A segment register's hidden state (kvm_segment).
struct Segment {
    uint64_t base = 0;
    uint32_t limit = 0;
    uint16_t selector = 0;
    uint8_t type = 0;
    bool present = false;
    uint8_t dpl = 0;
    bool db = false;
    bool s = false;  // code/data (true) or system (false)
    bool l = false;  // 64-bit code
    bool g = false;
    bool avl = false;
    bool unusable = false;
};

struct DescriptorTable {
    uint64_t base = 0;
    uint16_t limit = 0;
};

// Special registers (kvm_sregs without the pending-interrupt bitmap, which
// Vcpu::set_sregs preserves from the vCPU's current state).
struct Sregs {
    Segment cs, ds, es, fs, gs, ss, tr, ldt;
    DescriptorTable gdt, idt;
    uint64_t cr0 = 0, cr2 = 0, cr3 = 0, cr4 = 0, cr8 = 0;
    uint64_t efer = 0;
    uint64_t apic_base = 0;
};

// One CPUID leaf/subleaf (kvm_cpuid_entry2).
struct CpuidEntry {
    uint32_t function = 0;
    uint32_t index = 0;
    uint32_t flags = 0;  // kCpuidFlagSignificantIndex when `index` matters
    uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};
inline constexpr uint32_t kCpuidFlagSignificantIndex = 1;  // KVM_CPUID_FLAG_SIGNIFCANT_INDEX

// Which hardware virtualisation is behind /dev/kvm. Reported only: pagevisor's
// behaviour must never depend on it.
enum class Flavour { Vmx, Svm, Pvm, Unknown };
std::string_view flavour_name(Flavour f);

// Capabilities pagevisor relies on or reports (numbers live in kvm.cpp).
enum class Cap {
    UserMemory,
    SetTssAddr,
    SetIdentityMapAddr,
    ExtCpuid,
    ImmediateExit,
    NrMemslots,
    MaxVcpus,
    MaxVcpuId,
};
std::string_view cap_name(Cap c);

// Why KVM_RUN returned, decoded from kvm_run into plain values (ExitState is
// what vmm/x86's pure exit decoder consumes; it is filled only by Vcpu).
enum class ExitReason { Hlt, Io, Mmio, Shutdown, FailEntry, InternalError, SystemEvent, Interrupted, Unknown };

struct ExitState {
    ExitReason reason = ExitReason::Unknown;
    uint32_t raw_reason = 0;
    struct Io {
        uint16_t port = 0;
        uint8_t size = 0;  // 1, 2 or 4
        bool is_out = false;
        uint32_t count = 0;
        uint64_t value = 0;  // the first element, for OUT
    } io;
    struct Mmio {
        uint64_t gpa = 0;
        uint32_t len = 0;
        bool is_write = false;
        std::array<uint8_t, 8> data{};
    } mmio;
    uint64_t fail_entry_reason = 0;  // hardware_entry_failure_reason
    uint32_t internal_suberror = 0;
    uint32_t system_event_type = 0;
};

}  // namespace pv::kvm
