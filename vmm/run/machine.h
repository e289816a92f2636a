// Machine: one VM from creation to teardown. create() builds everything the
// guest needs (KVM VM, RAM, image, boot structures, page tables, vCPUs in
// their entry state); run() starts one thread per vCPU, waits for the guest
// to finish (or the timeout), stops and joins every vCPU thread.
//
// Threads: each vCPU thread runs KVM_RUN and handles its own exits. Shared
// state is the stop record (m_lock), the console/report Services (own lock)
// and the page table, which is read-only while the guest runs.
// Stopping: the first terminal event (Exit, a guest error, a KVM error, the
// timeout) is recorded and every vCPU is kicked (immediate_exit + a signal
// installed without SA_RESTART, so a blocked KVM_RUN returns EINTR).
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "vmm/hypercall/dispatcher.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"
#include "vmm/loader/elf_loader.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/run/guest_access.h"
#include "vmm/run/guest_paging.h"
#include "vmm/run/memory_system.h"
#include "vmm/run/run_config.h"
#include "vmm/run/services.h"
#include "vmm/x86/exit.h"
#include "vmm/x86/guest_page_table.h"

namespace pv::run {

class Machine {
public:
    static Expected<std::unique_ptr<Machine>> create(const RunConfig& config);
    ~Machine();
    Machine(const Machine&) = delete;
    Machine& operator=(const Machine&) = delete;

    // Runs the guest to completion. Call once.
    RunResult run();

    // The guest's memory (after run(): what the guest left behind).
    [[nodiscard]] MemorySystem& memory() { return *m_memsys; }

private:
    using Clock = std::chrono::steady_clock;
    enum class Next { Continue, EndVcpu };
    struct PerVcpu {
        std::atomic<uint64_t> exits{0};
        std::atomic<uint64_t> hypercalls{0};
        abi::HypercallPage* page = nullptr;
        pthread_t thread{};  // written before `started` is set
        std::atomic<bool> started{false};
        std::atomic<int> cpu{-1};               // pinned CPU, -1: not pinned
        bool in_fault_handler = false;          // a segmentation fault was delivered to the guest (vCPU thread only)
        uint64_t handler_sets_at_delivery = 0;  // Services::fault_handler_sets when it was delivered
    };

    Machine(const RunConfig& config, kvm::Kvm kvm, loader::Image image, std::unique_ptr<MemorySystem> memsys);
    Status boot(Clock::time_point created);
    Status setup_vcpu(uint32_t i, const std::vector<kvm::CpuidEntry>& cpuid);

    void start_threads();
    void vcpu_loop(uint32_t i);
    Next handle_exit(uint32_t i, const kvm::ExitState& exit);
    Next on_hypercall(uint32_t i, const x86::ExitAction& action);
    Next on_exception(uint32_t i);
    Next on_page_fault(uint32_t i, const abi::ExceptionFrame& frame);
    // Resumes vCPU i in the guest's fault handler (SetFaultHandler); false if there is none.
    bool deliver_segv(uint32_t i, const abi::ExceptionFrame& frame, const paging::FaultResult& r);
    void kick(uint32_t i);
    Next on_stop(uint32_t i, const x86::ExitAction& action);
    // The unmapped-access message for an MMIO exit, naming the area it hit.
    [[nodiscard]] std::string describe_mmio(const kvm::ExitState& exit, const x86::ExitAction& action) const;
    void pin_vcpu_thread(uint32_t i);

    // The first call wins; every vCPU is kicked.
    void stop_vm(std::optional<int64_t> exit_code, std::optional<Error> error);
    void vcpu_ended(uint32_t i);
    void kick_all();
    RunResult collect();

    RunConfig m_config;
    kvm::Kvm m_kvm;
    loader::Image m_image;
    std::unique_ptr<MemorySystem> m_memsys;  // declared before the VM: outlives its memslots
    memory::GuestMemory& m_mem;              // m_memsys->mem()
    std::optional<kvm::Vm> m_vm;
    std::unique_ptr<x86::TablePool> m_pool;
    std::optional<x86::GuestPageTable> m_pt;
    std::unique_ptr<WorldGate> m_world;     // vCPUs held outside guest mode while memslots change
    std::unique_ptr<GuestPaging> m_paging;  // owns the page tables once booted (adopts m_pt's root)
    std::vector<kvm::Vcpu> m_vcpus;
    std::unique_ptr<PerVcpu[]> m_per_vcpu;
    Services m_services;
    hc::Dispatcher m_dispatcher;
    std::unique_ptr<PageTableGuestAccess> m_access;
    std::vector<std::thread> m_threads;

    Clock::time_point m_created;
    std::atomic<bool> m_stop{false};
    std::atomic<int64_t> m_first_hypercall_ns{-1};
    std::atomic<int64_t> m_first_entry_ns{0};
    std::atomic<int> m_seccomp_probe{-1};  // DebugHooks::probe_seccomp result, -1: not probed
    std::mutex m_lock;
    std::condition_variable m_cv;
    uint32_t m_running = 0;              // guarded by m_lock
    bool m_finished = false;             // guarded by m_lock
    std::optional<int64_t> m_exit_code;  // guarded by m_lock
    std::optional<Error> m_error;        // guarded by m_lock
    Clock::duration m_time_to_exit{};    // guarded by m_lock
};

}  // namespace pv::run
