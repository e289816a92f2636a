#include "vmm/x86/exit.h"

#include <cstdio>
#include <cstring>

#include "vmm/abi/layout.h"

namespace pv::x86 {
namespace {

using Kind = ExitAction::Kind;

ExitAction action(Kind kind) {
    ExitAction a;
    a.kind = kind;
    return a;
}

ExitAction stop(ErrorKind kind, std::string message, bool with_rip, bool with_registers) {
    ExitAction a;
    a.kind = Kind::Stop;
    a.error_kind = kind;
    a.message = std::move(message);
    a.with_rip = with_rip;
    a.with_registers = with_registers;
    return a;
}

ExitAction decode_io(const kvm::ExitState::Io& io) {
    if (io.port == layout::kExceptionPort && io.is_out) return action(Kind::GuestException);
    return stop(ErrorKind::GuestFault,
                std::string("guest did port I/O (") + (io.is_out ? "out" : "in") + ", " + std::to_string(io.size) +
                    " bytes) to " + hex(io.port),
                true, false);
}

ExitAction decode_mmio(const kvm::ExitState::Mmio& mmio) {
    if (mmio.gpa == layout::kDoorbellAddr && mmio.is_write && mmio.len == 8) {
        ExitAction a = action(Kind::Hypercall);
        std::memcpy(&a.value, mmio.data.data(), sizeof a.value);
        a.len = mmio.len;
        return a;
    }
    return stop(ErrorKind::GuestFault,
                "guest accessed unmapped GPA " + hex(mmio.gpa) + " (" + (mmio.is_write ? "write" : "read") + ", " +
                    std::to_string(mmio.len) + " bytes)",
                true, true);
}

std::string system_event_name(uint32_t type) {
    switch (type) {
        case 1: return "shutdown";
        case 2: return "reset";
        case 3: return "crash";
        case 4: return "wakeup";
        case 5: return "suspend";
        case 6: return "SEV termination";
        case 7: return "TDX fatal error";
        default: return "type " + std::to_string(type);
    }
}

std::string internal_suberror_name(uint32_t sub) {
    switch (sub) {
        case 1: return "emulation failure";
        case 2: return "simultaneous exceptions";
        case 3: return "delivery event failure";
        case 4: return "unexpected exit reason";
        default: return "unknown";
    }
}

}  // namespace

std::string hex(uint64_t value) {
    char buf[24];
    (void)std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
    return buf;
}

ExitAction decode_exit(const kvm::ExitState& exit) {
    using R = kvm::ExitReason;
    switch (exit.reason) {
        case R::Io: return decode_io(exit.io);
        case R::Mmio: return decode_mmio(exit.mmio);
        case R::Interrupted: return action(Kind::Interrupted);
        case R::Hlt:
            return stop(ErrorKind::GuestFault, "guest halted (HLT) with no interrupt source to wake it", true, false);
        case R::Shutdown: return stop(ErrorKind::GuestFault, "guest triple fault (shutdown)", true, true);
        case R::FailEntry:
            return stop(
                ErrorKind::Kvm,
                "KVM could not enter the guest (hardware entry failure reason " + hex(exit.fail_entry_reason) + ")",
                false, false);
        case R::InternalError:
            return stop(ErrorKind::Kvm,
                        "KVM internal error (suberror " + std::to_string(exit.internal_suberror) + ": " +
                            internal_suberror_name(exit.internal_suberror) + ")",
                        true, true);
        case R::SystemEvent:
            return stop(ErrorKind::GuestFault, "guest raised system event " + system_event_name(exit.system_event_type),
                        true, false);
        case R::Unknown: break;
    }
    return stop(ErrorKind::Internal, "unhandled KVM exit reason " + std::to_string(exit.raw_reason), true, false);
}

std::string stop_message(const ExitAction& a, uint32_t vcpu, const std::optional<kvm::Regs>& regs) {
    std::string m = a.message;
    if (a.with_rip && regs) m += " at RIP " + hex(regs->rip);
    m += " (vCPU " + std::to_string(vcpu) + ")";
    if (a.with_registers && regs) m += "; registers: " + format_registers(*regs);
    return m;
}

std::string format_registers(const kvm::Regs& r) {
    const std::pair<const char*, uint64_t> regs[] = {
        {"rax", r.rax}, {"rbx", r.rbx}, {"rcx", r.rcx}, {"rdx", r.rdx}, {"rsi", r.rsi}, {"rdi", r.rdi},
        {"rsp", r.rsp}, {"rbp", r.rbp}, {"r8", r.r8},   {"r9", r.r9},   {"r10", r.r10}, {"r11", r.r11},
        {"r12", r.r12}, {"r13", r.r13}, {"r14", r.r14}, {"r15", r.r15}, {"rip", r.rip}, {"rflags", r.rflags},
    };
    std::string out;
    for (const auto& [name, value] : regs) {
        if (!out.empty()) out += ' ';
        out += std::string(name) + "=" + hex(value);
    }
    return out;
}

std::string exception_name(uint64_t vector) {
    static constexpr const char* kNames[32] = {
        "#DE (divide error)",
        "#DB (debug)",
        "NMI",
        "#BP (breakpoint)",
        "#OF (overflow)",
        "#BR (bound range exceeded)",
        "#UD (invalid opcode)",
        "#NM (device not available)",
        "#DF (double fault)",
        "vector 9 (coprocessor segment overrun)",
        "#TS (invalid TSS)",
        "#NP (segment not present)",
        "#SS (stack-segment fault)",
        "#GP (general protection)",
        "#PF (page fault)",
        "vector 15 (reserved)",
        "#MF (x87 floating-point error)",
        "#AC (alignment check)",
        "#MC (machine check)",
        "#XM (SIMD floating-point exception)",
        "#VE (virtualization exception)",
        "#CP (control protection)",
    };
    if (vector < 32 && kNames[vector] != nullptr) return kNames[vector];
    return "vector " + std::to_string(vector);
}

std::string describe_exception(const abi::ExceptionFrame& f, uint32_t vcpu) {
    std::string m = "guest exception " + exception_name(f.vector) + " at RIP " + hex(f.rip);
    if (f.vector == 14) m += ", address " + hex(f.cr2);
    bool has_error_code = f.vector == 8 || (f.vector >= 10 && f.vector <= 14) || f.vector == 17 || f.vector == 21;
    if (has_error_code) m += ", error code " + hex(f.error_code);
    return m + " (vCPU " + std::to_string(vcpu) + ")";
}

}  // namespace pv::x86
