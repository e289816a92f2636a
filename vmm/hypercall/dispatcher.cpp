#include "vmm/hypercall/dispatcher.h"

#include <array>

#include "vmm/paging/mem_abi.h"

namespace pv::hc {
namespace {

using abi::Call;
using abi::HcError;

constexpr int64_t error_value(HcError e) { return static_cast<int64_t>(e); }

// The page is guest memory another vCPU may write concurrently: every access is
// a single atomic load/store so the compiler can neither re-read nor tear it.
template <class T>
T load_once(T& field) {
    return std::atomic_ref<T>(field).load(std::memory_order_relaxed);
}
template <class T>
void store_once(T& field, T value, std::memory_order order = std::memory_order_relaxed) {
    std::atomic_ref<T>(field).store(value, order);
}

// Counters have a single writer (the vCPU's thread), so no read-modify-write is needed.
void bump(std::atomic<uint64_t>& counter) {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

}  // namespace

Dispatcher::Dispatcher(VmServices& services) : m_services(services) {}

void Dispatcher::set_memory_calls(MemoryCalls* calls) { m_memory_calls.store(calls, std::memory_order_release); }

void Dispatcher::set_stub_data(abi::StubData* data) {
    if (data != nullptr) store_once(data->nowork_neg_start, uint64_t{0});
    m_stub_data.store(data, std::memory_order_release);
}

Outcome Dispatcher::dispatch(uint32_t vcpu, uint64_t value, uint32_t len, abi::HypercallPage& page, GuestAccess& mem) {
    uint64_t args[6];
    for (size_t i = 0; i < 6; ++i) args[i] = load_once(page.args[i]);

    CallResult r;
    if (vcpu >= layout::kMaxVcpus || len != sizeof(uint64_t)) {
        r.ret = error_value(HcError::Invalid);
    } else {
        r = run_call(vcpu, value, args, mem);
    }
    store_once(page.ret, r.ret);
    store_once(page.ret_aux, r.ret_aux);
    // Release: a guest that sees the new seq also sees ret/ret_aux.
    store_once(page.seq, load_once(page.seq) + 1, std::memory_order_release);
    if (vcpu < layout::kMaxVcpus) count(vcpu, value, r.ret);
    return r.outcome;
}

Dispatcher::CallResult Dispatcher::run_call(uint32_t vcpu, uint64_t nr, const uint64_t (&args)[6], GuestAccess& mem) {
    CallResult r;
    if (nr >= abi::kFirstMemoryCall && nr <= abi::kLastMemoryCall) return memory_call(vcpu, nr, args);
    switch (nr) {
        case uint64_t(Call::Nop): break;
        case uint64_t(Call::Version): r.ret = abi::kAbiVersion; break;
        case uint64_t(Call::ConsoleWrite): return console_write(vcpu, args, mem);
        case uint64_t(Call::Report): return report(vcpu, args, mem);
        case uint64_t(Call::Exit): r.outcome = Outcome{Outcome::Kind::Exit, static_cast<int64_t>(args[0])}; break;
        case uint64_t(Call::VcpuStop): r.outcome.kind = Outcome::Kind::VcpuStop; break;
        case uint64_t(Call::SetFaultHandler): r.ret = m_services.set_fault_handler(vcpu, args[0]); break;
        case uint64_t(Call::SetNoWorkWindow): return set_nowork_window(args);
        default: r.ret = error_value(HcError::BadCall); break;
    }
    return r;
}

Dispatcher::CallResult Dispatcher::console_write(uint32_t vcpu, const uint64_t (&args)[6], GuestAccess& mem) {
    const uint64_t gva = args[0];
    const uint64_t len = args[1];
    CallResult r;
    if (len > abi::kMaxConsoleWrite) {
        r.ret = error_value(HcError::TooBig);
        return r;
    }
    if (len == 0) return r;
    std::array<std::byte, abi::kMaxConsoleWrite> buf{};
    std::span<std::byte> bytes(buf.data(), static_cast<size_t>(len));
    if (!mem.read(mm::GuestVirtAddr(gva), bytes)) {
        r.ret = error_value(HcError::Fault);
        return r;
    }
    m_services.console(vcpu, sanitize_console(bytes));
    r.ret = static_cast<int64_t>(len);
    return r;
}

Dispatcher::CallResult Dispatcher::report(uint32_t vcpu, const uint64_t (&args)[6], GuestAccess& mem) {
    const uint64_t gva = args[0];
    const uint64_t count = args[1];
    CallResult r;
    if (count > abi::kMaxReportFields) {
        r.ret = error_value(HcError::TooBig);
        return r;
    }
    if (count == 0) return r;
    std::array<abi::ReportField, abi::kMaxReportFields> buf{};
    std::span<abi::ReportField> fields(buf.data(), static_cast<size_t>(count));
    if (!mem.read(mm::GuestVirtAddr(gva), std::as_writable_bytes(fields))) {
        r.ret = error_value(HcError::Fault);
        return r;
    }
    auto values = decode_report(fields);
    if (!values) {
        r.ret = error_value(HcError::Invalid);
        return r;
    }
    m_services.report(vcpu, *values);
    r.ret = static_cast<int64_t>(count);
    return r;
}

Dispatcher::CallResult Dispatcher::memory_call(uint32_t vcpu, uint64_t nr, const uint64_t (&args)[6]) {
    CallResult r;
    MemoryCalls* calls = m_memory_calls.load(std::memory_order_acquire);
    if (calls == nullptr) {
        r.ret = error_value(HcError::BadCall);
        return r;
    }
    r.ret = calls->call(vcpu, static_cast<Call>(nr), args, r.ret_aux);
    return r;
}

// The window starts in the memory calls' user range, so the stub never skips
// an instruction on behalf of a fault on the kernel's own structures (all below
// kUserBase). One 8-byte store: a stub on another vCPU sees the old or the new window.
Dispatcher::CallResult Dispatcher::set_nowork_window(const uint64_t (&args)[6]) {
    const uint64_t start = args[0];
    CallResult r;
    abi::StubData* data = m_stub_data.load(std::memory_order_acquire);
    if (data == nullptr) {
        r.ret = error_value(HcError::BadCall);
        return r;
    }
    if (start != 0 && (start < abi::kUserBase || start >= abi::kUserTop)) {
        r.ret = error_value(HcError::Invalid);
        return r;
    }
    store_once(data->nowork_neg_start, uint64_t{0} - start, std::memory_order_release);
    return r;
}

void Dispatcher::count(uint32_t vcpu, uint64_t nr, int64_t ret) {
    VcpuCounters& c = m_counters[vcpu];
    bump(c.calls);
    if (ret < 0) bump(c.errors);
    if (nr < 32) bump(c.per_call[nr]);
}

Dispatcher::Stats Dispatcher::stats(uint32_t vcpu) const {
    Stats s;
    if (vcpu >= layout::kMaxVcpus) return s;
    const VcpuCounters& c = m_counters[vcpu];
    s.calls = c.calls.load(std::memory_order_relaxed);
    s.errors = c.errors.load(std::memory_order_relaxed);
    for (size_t i = 0; i < 32; ++i) s.per_call[i] = c.per_call[i].load(std::memory_order_relaxed);
    return s;
}

}  // namespace pv::hc
