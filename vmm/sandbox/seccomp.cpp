#include "vmm/sandbox/seccomp.h"

#include <fcntl.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>

namespace pv::sandbox {
namespace {

enum class Cond {
    Any,
    KvmIoctl,   // ioctl request type byte == KVMIO (0xAE): every KVM ioctl, nothing else
    UffdIoctl,  // ioctl request type byte == UFFDIO (0xAA)
    NoExec,     // mmap/mprotect whose prot (arg 2) has no PROT_EXEC
    ReadOnly,   // openat whose flags (arg 2) open for reading only, without O_CREAT
};
constexpr uint64_t kIoctlTypeMask = 0xff00;
constexpr uint64_t kKvmIoctlType = 0xAE00;   // KVMIO << 8 (<linux/kvm.h> stays under vmm/kvm/)
constexpr uint64_t kUffdIoctlType = 0xAA00;  // UFFDIO << 8

struct Rule {
    const char* name;
    Cond cond;
};

// Why each is here: docs/security.md.
constexpr Rule kCommon[] = {
    {"read", Cond::Any},
    {"write", Cond::Any},
    {"futex", Cond::Any},
    {"rt_sigreturn", Cond::Any},
    {"rt_sigprocmask", Cond::Any},
    {"sigaltstack", Cond::Any},
    {"madvise", Cond::Any},
    {"mmap", Cond::NoExec},
    {"mprotect", Cond::NoExec},
    {"munmap", Cond::Any},
    {"mremap", Cond::Any},
    {"brk", Cond::Any},
    {"clock_gettime", Cond::Any},
    {"clock_nanosleep", Cond::Any},
    {"nanosleep", Cond::Any},
    {"sched_yield", Cond::Any},
    {"gettid", Cond::Any},
    {"getpid", Cond::Any},
    {"tgkill", Cond::Any},
    {"restart_syscall", Cond::Any},
    {"close", Cond::Any},
    {"exit", Cond::Any},
    {"exit_group", Cond::Any},
    // stdio's first write to a stream (console lines from a vCPU thread) fstat()s its fd.
    {"fstat", Cond::Any},
    {"newfstatat", Cond::Any},
    // residency queries: fault-around clipping (fault server), resident-page accounting.
    {"mincore", Cond::Any},
    // glibc's malloc reads /proc/sys/vm/overcommit_memory when it shrinks a thread arena.
    {"openat", Cond::ReadOnly},
};
#if defined(PAGEVISOR_SANITIZE) || defined(__SANITIZE_ADDRESS__)
// Sanitizer builds only: UBSan's vptr check probes whether memory is readable by writing it to a
// fresh pipe (sanitizer_common IsAccessibleMemoryRange); without these it reports false errors.
constexpr Rule kSanitizerRuntime[] = {{"pipe", Cond::Any}, {"pipe2", Cond::Any}};
#else
constexpr std::span<const Rule> kSanitizerRuntime{};
#endif
constexpr Rule kVcpu[] = {{"ioctl", Cond::KvmIoctl}};
constexpr Rule kFaultServer[] = {{"ioctl", Cond::UffdIoctl}, {"poll", Cond::Any}, {"ppoll", Cond::Any}};

std::span<const Rule> profile_rules(ThreadProfile p) {
    if (p == ThreadProfile::Vcpu) return kVcpu;
    return kFaultServer;
}

// ---- Trap mode: a SIGSYS handler that names the call ---------------------------------------
// Names are resolved before any filter exists: the handler may not allocate (the
// trapped thread may hold the malloc lock) and may only use allowed calls (write).
constexpr int kMaxNamedSyscall = 512;
char g_syscall_names[kMaxNamedSyscall][32];

void resolve_syscall_names() {
    const uint32_t arch = seccomp_arch_native();
    for (int nr = 0; nr < kMaxNamedSyscall; ++nr) {
        char* name = seccomp_syscall_resolve_num_arch(arch, nr);
        std::strncpy(g_syscall_names[nr], name != nullptr ? name : "?", sizeof g_syscall_names[nr] - 1);
        std::free(name);
    }
}

// Appends text/decimals to a fixed buffer (async-signal-safe).
struct SignalLine {
    char buf[160];
    size_t len = 0;
    void put(const char* s) {
        while (*s != '\0' && len < sizeof buf) buf[len++] = *s++;
    }
    void put_int(long v) {
        char digits[24];
        int n = 0;
        unsigned long u = v < 0 ? 0UL - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
        do digits[n++] = static_cast<char>('0' + u % 10);
        while ((u /= 10) != 0 && n < 23);
        if (v < 0) put("-");
        while (n > 0 && len < sizeof buf) buf[len++] = digits[--n];
    }
};

void on_sigsys(int, siginfo_t* info, void* context) {
    const int saved_errno = errno;
    const int nr = info->si_syscall;
    SignalLine line;
    line.put("pagevisor: seccomp: forbidden system call ");
    line.put(nr >= 0 && nr < kMaxNamedSyscall ? g_syscall_names[nr] : "?");
    line.put(" (");
    line.put_int(nr);
    line.put(") in thread ");
    line.put_int(::gettid());
    line.put("\n");
    [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, line.buf, line.len);
    // The trapped call returns -EPERM: the thread goes on, so one run shows every missing call.
    static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RAX] = -EPERM;
    errno = saved_errno;
}

Status install_sigsys_handler() {
    static std::once_flag names_once;
    std::call_once(names_once, resolve_syscall_names);
    struct sigaction sa {};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, nullptr) != 0) return errno_error(ErrorKind::Resource, "seccomp: sigaction(SIGSYS)");
    return {};
}

// ---- building the filter ------------------------------------------------------------------------
struct FilterDeleter {
    void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Filter = std::unique_ptr<void, FilterDeleter>;

uint32_t default_action(Action a) {
    switch (a) {
        case Action::KillProcess: return SCMP_ACT_KILL_PROCESS;
        case Action::Trap: return SCMP_ACT_TRAP;
        case Action::Errno: return SCMP_ACT_ERRNO(EPERM);
    }
    return SCMP_ACT_KILL_PROCESS;
}

// libseccomp's SCMP_A<n> macros are C compound literals (-Wpedantic in C++): build the struct.
scmp_arg_cmp masked_eq(unsigned arg, uint64_t mask, uint64_t value) {
    scmp_arg_cmp c{};
    c.arg = arg;
    c.op = SCMP_CMP_MASKED_EQ;
    c.datum_a = mask;
    c.datum_b = value;
    return c;
}

Status add_rule(scmp_filter_ctx ctx, const Rule& rule) {
    const int nr = seccomp_syscall_resolve_name(rule.name);
    if (nr == __NR_SCMP_ERROR)
        return make_error(ErrorKind::Internal, std::string("seccomp: unknown system call ") + rule.name);
    scmp_arg_cmp cmp{};
    switch (rule.cond) {
        case Cond::Any: break;
        case Cond::KvmIoctl: cmp = masked_eq(1, kIoctlTypeMask, kKvmIoctlType); break;
        case Cond::UffdIoctl: cmp = masked_eq(1, kIoctlTypeMask, kUffdIoctlType); break;
        case Cond::NoExec: cmp = masked_eq(2, PROT_EXEC, 0); break;
        case Cond::ReadOnly: cmp = masked_eq(2, O_ACCMODE | O_CREAT, O_RDONLY); break;
    }
    const unsigned n_cmp = rule.cond == Cond::Any ? 0 : 1;
    if (int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, n_cmp, n_cmp ? &cmp : nullptr); rc < 0)
        return make_error(ErrorKind::Internal, std::string("seccomp: cannot add a rule for ") + rule.name, -rc);
    return {};
}

}  // namespace

Status install_thread_filter(ThreadProfile profile, Action on_violation) {
    if (on_violation == Action::Trap) PV_TRY(install_sigsys_handler());
    Filter ctx(seccomp_init(default_action(on_violation)));
    if (!ctx) return make_error(ErrorKind::Internal, "seccomp: seccomp_init failed");
    for (const Rule& r : kCommon) PV_TRY(add_rule(ctx.get(), r));
    for (const Rule& r : profile_rules(profile)) PV_TRY(add_rule(ctx.get(), r));
    for (const Rule& r : kSanitizerRuntime) PV_TRY(add_rule(ctx.get(), r));
    // No SCMP_FLTATR_CTL_TSYNC: the filter binds this thread only. NO_NEW_PRIVS (libseccomp's
    // default) is what lets an unprivileged process load a filter.
    if (int rc = seccomp_load(ctx.get()); rc < 0)
        return make_error(ErrorKind::Resource,
                          "seccomp: cannot load the " + std::string(to_string(profile)) + " filter", -rc);
    return {};
}

std::vector<std::string_view> allowed_syscalls(ThreadProfile profile) {
    std::vector<std::string_view> out;
    for (const Rule& r : kCommon) out.emplace_back(r.name);
    for (const Rule& r : profile_rules(profile)) out.emplace_back(r.name);
    for (const Rule& r : kSanitizerRuntime) out.emplace_back(r.name);
    return out;
}

void prepare_stdio() {
    static char buffer[BUFSIZ];
    (void)std::setvbuf(stdout, buffer, ::isatty(STDOUT_FILENO) != 0 ? _IOLBF : _IOFBF, sizeof buffer);
}

std::string_view to_string(ThreadProfile profile) { return profile == ThreadProfile::Vcpu ? "vcpu" : "fault-server"; }

}  // namespace pv::sandbox
