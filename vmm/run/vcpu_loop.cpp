// The vCPU threads: KVM_RUN, exit handling (one helper per exit kind), stop and kick.
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

#include <cstdio>
#include <mutex>
#include <system_error>

#include "vmm/abi/layout.h"
#include "vmm/run/machine.h"
#include "vmm/sandbox/seccomp.h"

namespace pv::run {
namespace {

// Kicks a vCPU thread out of KVM_RUN. Installed without SA_RESTART so the
// ioctl returns EINTR; the handler itself has nothing to do.
constexpr int kKickSignal = SIGUSR2;

void install_kick_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa {};
        sa.sa_handler = [](int) {};
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        sigaction(kKickSignal, &sa, nullptr);
    });
}

std::string format_seconds(std::chrono::milliseconds ms) {
    char buf[32];
    if (ms.count() % 1000 == 0)
        (void)std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(ms.count() / 1000));
    else
        (void)std::snprintf(buf, sizeof buf, "%.3gs", static_cast<double>(ms.count()) / 1000.0);
    return buf;
}

}  // namespace

RunResult Machine::run() {
    install_kick_handler();
    {
        std::lock_guard guard(m_lock);
        m_running = m_config.vcpus;
    }
    start_threads();
    {
        std::unique_lock lock(m_lock);
        bool done = m_cv.wait_until(lock, m_created + m_config.timeout, [this] { return m_finished; });
        if (!done) {
            lock.unlock();
            stop_vm(std::nullopt, make_error(ErrorKind::Timeout, "guest did not finish within " +
                                                                     format_seconds(m_config.timeout) + " (timeout)")
                                      .error);
        }
    }
    for (auto& t : m_threads) t.join();
    m_threads.clear();
    return collect();
}

void Machine::start_threads() {
    m_threads.reserve(m_config.vcpus);
    for (uint32_t i = 0; i < m_config.vcpus; ++i) {
        try {
            m_threads.emplace_back([this, i] { vcpu_loop(i); });
        } catch (const std::system_error& e) {
            // The threads already started are stopped and joined by run().
            stop_vm(std::nullopt, make_error(ErrorKind::Resource,
                                             "cannot start the thread of vCPU " + std::to_string(i) + ": " + e.what())
                                      .error);
            return;
        }
    }
}

void Machine::pin_vcpu_thread(uint32_t i) {
    if (m_config.vcpu_cpus.empty()) return;
    int cpu = m_config.vcpu_cpus[i % m_config.vcpu_cpus.size()];
    if (cpu < 0 || cpu >= CPU_SETSIZE) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0) m_per_vcpu[i].cpu.store(cpu);
}

void Machine::vcpu_loop(uint32_t i) {
    kvm::Vcpu& vcpu = m_vcpus[i];
    pin_vcpu_thread(i);
    m_memsys->set_vcpu_thread(i, static_cast<uint32_t>(::gettid()));
    m_per_vcpu[i].thread = pthread_self();
    if (m_config.seccomp != SeccompMode::Off) {  // after the last setup call of this thread
        auto action = m_config.seccomp == SeccompMode::Trap ? sandbox::Action::Trap : sandbox::Action::KillProcess;
        if (auto s = sandbox::install_thread_filter(sandbox::ThreadProfile::Vcpu, action); !s) {
            m_per_vcpu[i].started.store(true, std::memory_order_release);
            stop_vm(std::nullopt, s.error());
            vcpu_ended(i);
            return;
        }
    }
    if (i == 0 && m_config.debug.probe_seccomp) {
        int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        m_seccomp_probe.store(fd < 0 ? errno : 0);
        if (fd >= 0) ::close(fd);
    }
    m_per_vcpu[i].started.store(true, std::memory_order_release);
    if (i == 0)
        m_first_entry_ns.store(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - m_created).count());
    Next next = Next::Continue;
    while (next == Next::Continue) {
        // A world-stop kick (not a stop) leaves immediate_exit set: clear it before
        // looking for a stop, so a stop requested after this point still kicks.
        vcpu.request_immediate_exit(false);
        m_world->enter(i);
        if (m_stop.load(std::memory_order_acquire)) {
            m_world->leave(i);
            break;
        }
        auto exit = vcpu.run();
        m_world->leave(i);  // before anything that may take the address space's lock
        if (auto e = m_paging->flush_error()) {
            stop_vm(std::nullopt, *e);
            break;
        }
        if (!exit) {
            stop_vm(std::nullopt, exit.error());
            break;
        }
        m_per_vcpu[i].exits.fetch_add(1, std::memory_order_relaxed);
        next = handle_exit(i, *exit);
    }
    vcpu_ended(i);
}

Machine::Next Machine::handle_exit(uint32_t i, const kvm::ExitState& exit) {
    x86::ExitAction action = x86::decode_exit(exit);
    using Kind = x86::ExitAction::Kind;
    switch (action.kind) {
        case Kind::Resume: return Next::Continue;
        case Kind::Interrupted: return m_stop.load() ? Next::EndVcpu : Next::Continue;
        case Kind::Hypercall: return on_hypercall(i, action);
        case Kind::GuestException: return on_exception(i);
        case Kind::Stop: {
            x86::ExitAction stop = action;
            if (exit.reason == kvm::ExitReason::Mmio) stop.message = describe_mmio(exit, action);
            return on_stop(i, stop);
        }
    }
    return on_stop(i, action);
}

std::string Machine::describe_mmio(const kvm::ExitState& exit, const x86::ExitAction& action) const {
    auto area = m_mem.find_area(mm::GuestPhysAddr(exit.mmio.gpa));
    if (!area) return action.message;
    const char* access = exit.mmio.is_write ? "write" : "read";
    if (area->kind == memory::AreaKind::ReadOnly || area->read_only)
        return std::string("guest ") + (exit.mmio.is_write ? "wrote to" : "accessed") +
               " read-only guest memory at GPA " + x86::hex(exit.mmio.gpa) + " (area '" + area->name + "', " + access +
               ", " + std::to_string(exit.mmio.len) + " bytes)";
    if (area->kind == memory::AreaKind::Hole)
        return "guest accessed unmapped GPA " + x86::hex(exit.mmio.gpa) + " in hole '" + area->name + "' (" + access +
               ", " + std::to_string(exit.mmio.len) + " bytes)";
    return action.message;
}

Machine::Next Machine::on_hypercall(uint32_t i, const x86::ExitAction& action) {
    if (m_first_hypercall_ns.load(std::memory_order_relaxed) < 0) {
        int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - m_created).count();
        int64_t unset = -1;
        m_first_hypercall_ns.compare_exchange_strong(unset, ns);
    }
    m_per_vcpu[i].hypercalls.fetch_add(1, std::memory_order_relaxed);
    hc::Outcome out = m_dispatcher.dispatch(i, action.value, action.len, *m_per_vcpu[i].page, *m_access);
    switch (out.kind) {
        case hc::Outcome::Kind::Resume: return Next::Continue;
        case hc::Outcome::Kind::VcpuStop: return Next::EndVcpu;
        case hc::Outcome::Kind::Exit: stop_vm(out.exit_code, std::nullopt); return Next::EndVcpu;
    }
    return Next::Continue;
}

Machine::Next Machine::on_exception(uint32_t i) {
    auto frame_addr = mm::GuestPhysAddr(layout::kernel_stack_top(i) - sizeof(abi::ExceptionFrame));
    auto frame = m_mem.read<abi::ExceptionFrame>(frame_addr);
    if (!frame) {
        stop_vm(std::nullopt, frame.error());
        return Next::EndVcpu;
    }
    if (frame->vector == 14 && m_paging) return on_page_fault(i, *frame);
    stop_vm(std::nullopt, Error{ErrorKind::GuestFault, 0, x86::describe_exception(*frame, i)});
    return Next::EndVcpu;
}

// A guest #PF: pagevisor's guest-virtual layer maps the page (the stub's iretq
// then retries the access) or the access is not allowed: a segmentation fault
// that stops the guest with the address, the access and RIP.
Machine::Next Machine::on_page_fault(uint32_t i, const abi::ExceptionFrame& frame) {
    using Kind = paging::FaultResult::Kind;
    const auto start = Clock::now();
    paging::FaultResult r = m_paging->handle_fault(i, frame.cr2, frame.error_code);
    m_paging->record_fault_latency(
        i, static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count()));
    if (r.kind == Kind::Mapped || r.kind == Kind::Spurious) return Next::Continue;
    static constexpr const char* kAccess[] = {"read", "write", "execute"};
    const char* access = kAccess[static_cast<int>(r.access)];
    if (r.kind == Kind::OutOfMemory) {
        stop_vm(std::nullopt,
                Error{ErrorKind::GuestOutOfMemory, 0,
                      "guest out of memory on node " + std::to_string(r.node) + " (page fault: " + access + " at GVA " +
                          x86::hex(frame.cr2) + ", RIP " + x86::hex(frame.rip) + ", vCPU " + std::to_string(i) + ")"});
        return Next::EndVcpu;
    }
    // A SetFaultHandler call since the last delivery means the guest recovered from it.
    if (m_per_vcpu[i].in_fault_handler && m_services.fault_handler_sets(i) != m_per_vcpu[i].handler_sets_at_delivery)
        m_per_vcpu[i].in_fault_handler = false;
    if (deliver_segv(i, frame, r)) return Next::Continue;
    static constexpr const char* kReason[] = {"no mapping", "not allowed by the mapping", "corrupt page table"};
    const bool nested = m_per_vcpu[i].in_fault_handler;
    stop_vm(std::nullopt,
            Error{ErrorKind::GuestFault, 0,
                  "guest segmentation fault: " + std::string(access) + " at GVA " + x86::hex(frame.cr2) + " (" +
                      kReason[static_cast<int>(r.reason)] + ") at RIP " + x86::hex(frame.rip) +
                      (nested ? " in the guest's fault handler" : "") + " (vCPU " + std::to_string(i) + ")"});
    return Next::EndVcpu;
}

// The stub's iretq returns to the frame's RIP: point it at the handler and pass
// the fault in rdi/rsi/rdx/rcx (registers the stub does not touch).
bool Machine::deliver_segv(uint32_t i, const abi::ExceptionFrame& frame, const paging::FaultResult& r) {
    const uint64_t handler = m_services.fault_handler();
    if (handler == 0 || m_per_vcpu[i].in_fault_handler) return false;
    auto frame_addr = mm::GuestPhysAddr(layout::kernel_stack_top(i) - sizeof(abi::ExceptionFrame) +
                                        offsetof(abi::ExceptionFrame, rip));
    auto regs = m_vcpus[i].get_regs();
    if (!regs || !m_mem.write<uint64_t>(frame_addr, handler)) return false;
    regs->rdi = frame.cr2;
    regs->rsi = frame.rip;
    regs->rdx = static_cast<uint64_t>(r.access);
    regs->rcx = static_cast<uint64_t>(r.reason);
    if (!m_vcpus[i].set_regs(*regs)) return false;
    m_per_vcpu[i].in_fault_handler = true;
    m_per_vcpu[i].handler_sets_at_delivery = m_services.fault_handler_sets(i);
    return true;
}

void Machine::kick(uint32_t i) {
    if (i >= m_vcpus.size()) return;
    m_vcpus[i].request_immediate_exit(true);
    if (m_per_vcpu[i].started.load(std::memory_order_acquire) && !pthread_equal(m_per_vcpu[i].thread, pthread_self()))
        pthread_kill(m_per_vcpu[i].thread, kKickSignal);
}

Machine::Next Machine::on_stop(uint32_t i, const x86::ExitAction& action) {
    std::optional<kvm::Regs> regs;
    if (action.with_rip || action.with_registers) {
        auto r = m_vcpus[i].get_regs();
        if (r) regs = *r;
    }
    stop_vm(std::nullopt, Error{action.error_kind, 0, x86::stop_message(action, i, regs)});
    return Next::EndVcpu;
}

void Machine::stop_vm(std::optional<int64_t> exit_code, std::optional<Error> error) {
    {
        std::lock_guard guard(m_lock);
        if (m_finished) return;
        m_finished = true;
        m_exit_code = exit_code;
        m_error = std::move(error);
        m_time_to_exit = Clock::now() - m_created;
        m_stop.store(true, std::memory_order_release);
    }
    m_cv.notify_all();
    kick_all();
}

void Machine::vcpu_ended(uint32_t /*i*/) {
    bool all_done = false;
    {
        std::lock_guard guard(m_lock);
        all_done = --m_running == 0;
        if (all_done && !m_finished) {
            m_finished = true;  // every vCPU called VcpuStop: status 0
            m_time_to_exit = Clock::now() - m_created;
            m_stop.store(true, std::memory_order_release);
        }
    }
    if (all_done) m_cv.notify_all();
}

void Machine::kick_all() {
    for (uint32_t i = 0; i < m_vcpus.size(); ++i) {
        m_vcpus[i].request_immediate_exit(true);
        // A vCPU thread that stops the VM is not in KVM_RUN: no need to signal itself.
        if (m_per_vcpu[i].started.load(std::memory_order_acquire) &&
            !pthread_equal(m_per_vcpu[i].thread, pthread_self()))
            pthread_kill(m_per_vcpu[i].thread, kKickSignal);
    }
}

RunResult Machine::collect() {
    RunResult r;
    m_services.finish(r.console, r.reports);
    for (uint32_t i = 0; i < m_config.vcpus; ++i)
        r.vcpus.push_back({m_per_vcpu[i].exits.load(), m_per_vcpu[i].hypercalls.load()});
    int64_t first = m_first_hypercall_ns.load();
    if (first >= 0) r.time_to_first_hypercall = std::chrono::nanoseconds(first);
    r.time_to_first_entry = std::chrono::nanoseconds(m_first_entry_ns.load());
    r.flavour = kvm::Kvm::flavour();
    if (auto* server = m_memsys->fault_server(); server != nullptr) (void)server->wait_idle(std::chrono::seconds(2));
    r.memory_report = m_memsys->report();
    r.memory = r.memory_report.ram_bytes;
    if (int p = m_seccomp_probe.load(); p >= 0) r.seccomp_probe_errno = p;
    if (m_paging) {
        const paging::PagingStats ps = m_paging->stats();
        GuestVirtualReport g;
        g.faults = ps.faults;
        g.mapped_faults = ps.mapped_faults;
        g.spurious = ps.spurious;
        g.segv = ps.segv;
        g.oom = ps.oom;
        g.fault_around_pages = ps.fault_around_pages;
        g.huge_faults = ps.huge_faults;
        g.shootdowns = ps.shootdowns;
        g.page_table_frames = ps.provider_tables;
        g.frames_per_node = ps.frames_per_node;
        g.latency = m_paging->fault_latency();
        r.memory_report.guest_virtual = g;
    }
    for (uint32_t i = 0; i < m_config.vcpus; ++i) r.vcpu_cpus.push_back(m_per_vcpu[i].cpu.load());
    std::lock_guard guard(m_lock);
    r.time_to_exit = std::chrono::duration_cast<std::chrono::nanoseconds>(m_time_to_exit);
    r.guest_exit_code = m_exit_code;
    r.error = m_error;
    if (m_error)
        r.exit_status = exit_status(m_error->kind);
    else if (m_exit_code)
        r.exit_status = static_cast<int>(static_cast<uint64_t>(*m_exit_code) & 0xFF);
    return r;
}

}  // namespace pv::run
