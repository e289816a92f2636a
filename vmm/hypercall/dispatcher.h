// The hypercall dispatcher: runs one guest hypercall (ABI v1, vmm/abi/hypercall.h,
// docs/hypercall-abi.md) per doorbell exit.
//
// Threading: one Dispatcher serves every vCPU. Each vCPU thread calls dispatch()
// for its own vCPU only, one call at a time; all mutable state is per vCPU
// (statistics, written only by that vCPU's thread with relaxed atomics, so any
// thread may read them), except the no-work window (SetNoWorkWindow), which is
// the VM's, lives in guest memory (set_stub_data) and is one atomic word.
// set_memory_calls() is an atomic pointer store: call it before the vCPUs
// start; the MemoryCalls object must outlive the Dispatcher's use.
// VmServices and MemoryCalls are called from vCPU threads concurrently: they do
// their own locking.
//
// The guest is untrusted: the HypercallPage is guest-writable memory that another
// vCPU may change at any moment, so dispatch() reads each field exactly once
// into locals and only uses those; every pointer/length goes through GuestAccess.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string_view>

#include "vmm/abi/hypercall.h"
#include "vmm/abi/layout.h"
#include "vmm/hypercall/guest_access.h"
#include "vmm/hypercall/report.h"

namespace pv::hc {

class VmServices {  // implemented by the VMM core (vmm/run)
public:
    VmServices() = default;
    VmServices(const VmServices&) = delete;
    VmServices& operator=(const VmServices&) = delete;
    virtual ~VmServices() = default;
    virtual void console(uint32_t vcpu, std::string_view text) = 0;  // already sanitized (sanitize_console)
    virtual void report(uint32_t vcpu, std::span<const ReportValue> fields) = 0;  // already validated
    // SetFaultHandler: the VM's guest fault handler (0 = none). Returns the call's ret.
    virtual int64_t set_fault_handler(uint32_t /*vcpu*/, uint64_t /*gva*/) {
        return static_cast<int64_t>(abi::HcError::BadCall);
    }
};

class MemoryCalls {  // memory calls 16..31; without a handler they return HcError::BadCall
public:
    MemoryCalls() = default;
    MemoryCalls(const MemoryCalls&) = delete;
    MemoryCalls& operator=(const MemoryCalls&) = delete;
    virtual ~MemoryCalls() = default;
    // Returns the value for `ret`: >= 0 on success, else an abi::HcError value; may set ret_aux.
    // `args` are the page's args read once (the guest cannot change them underneath).
    virtual int64_t call(uint32_t vcpu, abi::Call nr, const uint64_t (&args)[6], uint64_t& ret_aux) = 0;
};

struct Outcome {
    enum class Kind { Resume, Exit, VcpuStop } kind = Kind::Resume;
    int64_t exit_code = 0;  // Kind::Exit: the guest's code as given (the VM's status is code & 0xff)
};

class Dispatcher {
public:
    explicit Dispatcher(VmServices& services);
    Dispatcher(const Dispatcher&) = delete;
    Dispatcher& operator=(const Dispatcher&) = delete;

    void set_memory_calls(MemoryCalls* calls);
    // Where SetNoWorkWindow writes the #PF stub's window: the host view of guest memory at
    // layout::kStubDataAddr (zeroed here: no window). Without it the call returns BadCall. Call before
    // the vCPUs start; the memory must outlive the Dispatcher's use.
    void set_stub_data(abi::StubData* data);

    // One doorbell: `value`/`len` are the MMIO store's data and width (`value` is the call number; the
    // page's `nr` field is not consulted); `page` is the vCPU's HypercallPage in host memory
    // (guest-writable). Writes ret/ret_aux, then increments seq (release). Never throws; never touches
    // guest memory except through `mem` and `page`. `vcpu` must be < layout::kMaxVcpus (otherwise the
    // call is refused with HcError::Invalid and not counted).
    Outcome dispatch(uint32_t vcpu, uint64_t value, uint32_t len, abi::HypercallPage& page, GuestAccess& mem);

    struct Stats {
        uint64_t calls = 0;
        uint64_t errors = 0;         // calls whose ret was < 0
        uint64_t per_call[32] = {};  // by call number, for numbers < 32
    };
    // A snapshot of one vCPU's statistics (zeros for vcpu >= kMaxVcpus). Returned by value because the
    // counters are atomics updated by the vCPU thread; `const auto& s = d.stats(i)` still works.
    [[nodiscard]] Stats stats(uint32_t vcpu) const;

private:
    struct VcpuCounters {
        std::atomic<uint64_t> calls{0};
        std::atomic<uint64_t> errors{0};
        std::atomic<uint64_t> per_call[32]{};
    };
    struct CallResult {
        int64_t ret = 0;
        uint64_t ret_aux = 0;
        Outcome outcome{};
    };

    CallResult run_call(uint32_t vcpu, uint64_t nr, const uint64_t (&args)[6], GuestAccess& mem);
    CallResult console_write(uint32_t vcpu, const uint64_t (&args)[6], GuestAccess& mem);
    CallResult report(uint32_t vcpu, const uint64_t (&args)[6], GuestAccess& mem);
    CallResult memory_call(uint32_t vcpu, uint64_t nr, const uint64_t (&args)[6]);
    CallResult set_nowork_window(const uint64_t (&args)[6]);
    void count(uint32_t vcpu, uint64_t nr, int64_t ret);

    VmServices& m_services;
    std::atomic<MemoryCalls*> m_memory_calls{nullptr};
    std::atomic<abi::StubData*> m_stub_data{nullptr};
    VcpuCounters m_counters[layout::kMaxVcpus];
};

}  // namespace pv::hc
