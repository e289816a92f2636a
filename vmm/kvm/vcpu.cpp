#include "vmm/kvm/vcpu.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cstring>
#include <memory>

#include "vmm/kvm/uapi.h"

namespace pv::kvm {
namespace {

kvm_run* as_run(void* p) { return static_cast<kvm_run*>(p); }

Segment from_kvm(const kvm_segment& s) {
    return {s.base,    s.limit,  s.selector, s.type,   s.present != 0, s.dpl,
            s.db != 0, s.s != 0, s.l != 0,   s.g != 0, s.avl != 0,     s.unusable != 0};
}

kvm_segment to_kvm(const Segment& s) {
    kvm_segment k{};
    k.base = s.base;
    k.limit = s.limit;
    k.selector = s.selector;
    k.type = s.type;
    k.present = s.present;
    k.dpl = s.dpl;
    k.db = s.db;
    k.s = s.s;
    k.l = s.l;
    k.g = s.g;
    k.avl = s.avl;
    k.unusable = s.unusable;
    return k;
}

ExitReason reason_of(uint32_t raw) {
    switch (raw) {
        case KVM_EXIT_HLT: return ExitReason::Hlt;
        case KVM_EXIT_IO: return ExitReason::Io;
        case KVM_EXIT_MMIO: return ExitReason::Mmio;
        case KVM_EXIT_SHUTDOWN: return ExitReason::Shutdown;
        case KVM_EXIT_FAIL_ENTRY: return ExitReason::FailEntry;
        case KVM_EXIT_INTERNAL_ERROR: return ExitReason::InternalError;
        case KVM_EXIT_SYSTEM_EVENT: return ExitReason::SystemEvent;
        case KVM_EXIT_INTR: return ExitReason::Interrupted;
        default: return ExitReason::Unknown;
    }
}

}  // namespace

Vcpu::Vcpu(UniqueFd fd, uint32_t id, void* run, uint64_t run_size)
    : m_fd(std::move(fd)), m_id(id), m_run(run), m_run_size(run_size) {}

Vcpu::Vcpu(Vcpu&& o) noexcept
    : m_fd(std::move(o.m_fd)),
      m_id(o.m_id),
      m_run(std::exchange(o.m_run, nullptr)),
      m_run_size(std::exchange(o.m_run_size, 0)) {}

Vcpu& Vcpu::operator=(Vcpu&& o) noexcept {
    if (this != &o) {
        unmap();
        m_fd = std::move(o.m_fd);
        m_id = o.m_id;
        m_run = std::exchange(o.m_run, nullptr);
        m_run_size = std::exchange(o.m_run_size, 0);
    }
    return *this;
}

Vcpu::~Vcpu() { unmap(); }

void Vcpu::unmap() {
    if (m_run != nullptr) ::munmap(m_run, m_run_size);
    m_run = nullptr;
}

Expected<Regs> Vcpu::get_regs() const {
    kvm_regs k{};
    if (::ioctl(m_fd.get(), KVM_GET_REGS, &k) < 0) return errno_error(ErrorKind::Kvm, "KVM_GET_REGS failed");
    return Regs{k.rax, k.rbx, k.rcx, k.rdx, k.rsi, k.rdi, k.rsp, k.rbp, k.r8,
                k.r9,  k.r10, k.r11, k.r12, k.r13, k.r14, k.r15, k.rip, k.rflags};
}

Status Vcpu::set_regs(const Regs& r) const {
    kvm_regs k{r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8,
               r.r9,  r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rip, r.rflags};
    if (::ioctl(m_fd.get(), KVM_SET_REGS, &k) < 0) return errno_error(ErrorKind::Kvm, "KVM_SET_REGS failed");
    return {};
}

Expected<Sregs> Vcpu::get_sregs() const {
    kvm_sregs k{};
    if (::ioctl(m_fd.get(), KVM_GET_SREGS, &k) < 0) return errno_error(ErrorKind::Kvm, "KVM_GET_SREGS failed");
    Sregs s;
    s.cs = from_kvm(k.cs), s.ds = from_kvm(k.ds), s.es = from_kvm(k.es), s.fs = from_kvm(k.fs);
    s.gs = from_kvm(k.gs), s.ss = from_kvm(k.ss), s.tr = from_kvm(k.tr), s.ldt = from_kvm(k.ldt);
    s.gdt = {k.gdt.base, k.gdt.limit};
    s.idt = {k.idt.base, k.idt.limit};
    s.cr0 = k.cr0, s.cr2 = k.cr2, s.cr3 = k.cr3, s.cr4 = k.cr4, s.cr8 = k.cr8;
    s.efer = k.efer;
    s.apic_base = k.apic_base;
    return s;
}

Status Vcpu::set_sregs(const Sregs& s) const {
    kvm_sregs k{};
    if (::ioctl(m_fd.get(), KVM_GET_SREGS, &k) < 0) return errno_error(ErrorKind::Kvm, "KVM_GET_SREGS failed");
    k.cs = to_kvm(s.cs), k.ds = to_kvm(s.ds), k.es = to_kvm(s.es), k.fs = to_kvm(s.fs);
    k.gs = to_kvm(s.gs), k.ss = to_kvm(s.ss), k.tr = to_kvm(s.tr), k.ldt = to_kvm(s.ldt);
    k.gdt.base = s.gdt.base, k.gdt.limit = s.gdt.limit;
    k.idt.base = s.idt.base, k.idt.limit = s.idt.limit;
    k.cr0 = s.cr0, k.cr2 = s.cr2, k.cr3 = s.cr3, k.cr4 = s.cr4, k.cr8 = s.cr8;
    k.efer = s.efer;
    k.apic_base = s.apic_base;
    if (::ioctl(m_fd.get(), KVM_SET_SREGS, &k) < 0) return errno_error(ErrorKind::Kvm, "KVM_SET_SREGS failed");
    return {};
}

Status Vcpu::set_cpuid(std::span<const CpuidEntry> entries) const {
    size_t bytes = sizeof(PvKvmCpuid2Header) + entries.size() * sizeof(kvm_cpuid_entry2);
    auto buf = std::make_unique<uint64_t[]>((bytes + 7) / 8);
    auto* cpuid = reinterpret_cast<PvKvmCpuid2Header*>(buf.get());
    auto* out = reinterpret_cast<kvm_cpuid_entry2*>(cpuid + 1);
    cpuid->nent = static_cast<uint32_t>(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
        const auto& e = entries[i];
        auto& k = out[i];
        k.function = e.function, k.index = e.index, k.flags = e.flags;
        k.eax = e.eax, k.ebx = e.ebx, k.ecx = e.ecx, k.edx = e.edx;
    }
    if (::ioctl(m_fd.get(), PV_KVM_SET_CPUID2, cpuid) < 0) return errno_error(ErrorKind::Kvm, "KVM_SET_CPUID2 failed");
    return {};
}

Expected<ExitState> Vcpu::run() {
    if (::ioctl(m_fd.get(), KVM_RUN, 0) < 0) {
        if (errno == EINTR || errno == EAGAIN) {
            ExitState s;
            s.reason = ExitReason::Interrupted;
            s.raw_reason = KVM_EXIT_INTR;
            return s;
        }
        return errno_error(ErrorKind::Kvm, "KVM_RUN on vCPU " + std::to_string(m_id) + " failed");
    }
    return exit_state();
}

ExitState Vcpu::exit_state() const {
    const kvm_run* run = as_run(m_run);
    ExitState s;
    s.raw_reason = run->exit_reason;
    s.reason = reason_of(run->exit_reason);
    switch (s.reason) {
        case ExitReason::Io: {
            s.io.port = run->io.port;
            s.io.size = run->io.size;
            s.io.is_out = run->io.direction == KVM_EXIT_IO_OUT;
            s.io.count = run->io.count;
            // The data lives inside the mmap'ed area; never read past it.
            uint64_t off = run->io.data_offset;
            if (s.io.size <= 8 && off <= m_run_size && m_run_size - off >= s.io.size)
                std::memcpy(&s.io.value, static_cast<const char*>(m_run) + off, s.io.size);
            break;
        }
        case ExitReason::Mmio:
            s.mmio.gpa = run->mmio.phys_addr;
            s.mmio.len = run->mmio.len;
            s.mmio.is_write = run->mmio.is_write != 0;
            std::memcpy(s.mmio.data.data(), run->mmio.data, sizeof(run->mmio.data));
            break;
        case ExitReason::FailEntry: s.fail_entry_reason = run->fail_entry.hardware_entry_failure_reason; break;
        case ExitReason::InternalError: s.internal_suberror = run->internal.suberror; break;
        case ExitReason::SystemEvent: s.system_event_type = run->system_event.type; break;
        default: break;
    }
    return s;
}

void Vcpu::request_immediate_exit(bool on) {
    __atomic_store_n(&as_run(m_run)->immediate_exit, on ? 1 : 0, __ATOMIC_SEQ_CST);
}

}  // namespace pv::kvm
