// Per-thread seccomp filters for the VMM's guest-facing threads (docs/security.md).
//
// A vCPU thread runs guest exits and a fault-server thread serves userfaultfd
// events: the two threads that handle guest-controlled input. Each installs, on
// itself, after its setup and before its loop, a filter that allows only the
// system calls that loop needs (Firecracker's model). Without TSYNC a seccomp
// filter binds only the calling thread (and threads it creates later): the
// main thread keeps full rights for control, signals, files and metrics.
// A filter cannot be removed; installing a second one stacks (both apply).
//
// Allowed calls (the tables in seccomp.cpp are the reference):
//  - both: read, write, futex, rt_sigreturn, rt_sigprocmask, sigaltstack,
//    madvise, mmap/mprotect without PROT_EXEC, munmap, mremap, brk,
//    clock_gettime, clock_nanosleep, nanosleep, sched_yield, gettid, getpid,
//    tgkill, restart_syscall, close, exit, exit_group;
//  - Vcpu: ioctl whose request has the KVM type byte (0xAE);
//  - FaultServer: ioctl whose request has the userfaultfd type byte (0xAA),
//    poll, ppoll.
#pragma once

#include <string_view>
#include <vector>

#include "vmm/base/error.h"

namespace pv::sandbox {

enum class ThreadProfile { Vcpu, FaultServer };

// What a forbidden system call does.
enum class Action {
    KillProcess,  // the whole process dies with SIGSYS at once (production default, as Firecracker)
    Trap,         // SIGSYS: a handler prints "pagevisor: seccomp: forbidden system call <name> (<nr>) in
                  // thread <tid>" on stderr and the call returns -EPERM (debugging: finds every missing call)
    Errno,        // the call fails with EPERM (tests)
};

// Installs the profile's filter on the calling thread only. Errors:
// ErrorKind::Resource when the kernel refuses the filter (no seccomp support),
// ErrorKind::Internal when libseccomp cannot build it.
[[nodiscard]] Status install_thread_filter(ThreadProfile profile, Action on_violation = Action::KillProcess);

// Names of the system calls the profile allows (ioctl, mmap and mprotect with
// their argument conditions), for documentation, tests and `info`.
[[nodiscard]] std::vector<std::string_view> allowed_syscalls(ThreadProfile profile);

[[nodiscard]] std::string_view to_string(ThreadProfile profile);

// Gives stdout a buffer of our own (line-buffered on a terminal, fully buffered
// otherwise), decided on the calling thread. Without it glibc sets the buffer up
// on the stream's first write -- from a filtered vCPU thread printing console
// lines -- and, when stdout is a character device such as /dev/null, asks
// ioctl(TCGETS) whether it is a terminal: a call the Vcpu profile forbids. Call
// once from main() before any filtered thread exists and before any output.
void prepare_stdio();

}  // namespace pv::sandbox
