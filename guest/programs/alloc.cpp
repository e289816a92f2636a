// The allocator workloads (docs/guest.md "Allocator workloads"): slab-churn,
// buddy-churn, tlsf-churn, frames, ids, frag, sparse, multi. The engine is
// guest/workload/ (shared with the host tests and benchmark); this file is its
// guest Env (heaps from pagevisor's Mmap, rdtsc, SpinLock) and the report.
//
// Parameters: BootInfo::args (ops, heap_bytes, max_block, check_every, flags;
// 0 = the workload's default), BootInfo::seed. Only vCPU 0 runs a workload,
// except multi, where every vCPU runs and vCPU 0 reports the aggregate.
// Exit: 0 ok, 2 bad arguments, 3 verification or invariant errors, 4 a heap
// could not be mapped.
#include "guest/programs/programs.h"
#include "guest/rt/console.h"
#include "guest/rt/format.h"
#include "guest/rt/memory.h"
#include "guest/rt/report.h"
#include "guest/rt/runtime.h"
#include "guest/rt/sync.h"
#include "guest/workload/workload.h"

namespace pv::guest {

namespace {

constexpr int64_t kBadArgsExitCode = 2;

const char* mem_error_name(int64_t e) {
    switch (static_cast<abi::MemError>(e)) {
        case abi::MemError::Invalid: return "Invalid";
        case abi::MemError::NoMemory: return "NoMemory";
        case abi::MemError::Permission: return "Permission";
        case abi::MemError::Exists: return "Exists";
        case abi::MemError::OutOfRange: return "OutOfRange";
        case abi::MemError::Overflow: return "Overflow";
        case abi::MemError::NotMapped: return "NotMapped";
    }
    return hc_error_name(e);
}

// The state the vCPUs of a multi run share (zeroed .bss: value-initialised).
workload::MultiShared<SpinLock> g_multi;

class GuestEnv {
public:
    using Lock = SpinLock;

    void* map(uint64_t bytes, bool populate) {
        const int64_t r = mem_map(0, bytes, abi::kProtRead | abi::kProtWrite, populate ? abi::kMapPopulate : 0);
        if (r < 0) {
            m_map_error = r;
            return nullptr;
        }
        return reinterpret_cast<void*>(r);
    }
    void unmap(void* p, uint64_t bytes) {
        if (mem_unmap(reinterpret_cast<uint64_t>(p), bytes) != 0) ++m_unmap_errors;
    }
    uint64_t now() {
        uint32_t lo, hi;
        asm volatile("rdtsc" : "=a"(lo), "=d"(hi)::"memory");
        return (uint64_t(hi) << 32) | lo;
    }
    workload::MultiShared<Lock>& shared() { return g_multi; }
    void relax() { cpu_relax(); }

    [[nodiscard]] int64_t map_error() const { return m_map_error; }
    [[nodiscard]] uint64_t unmap_errors() const { return m_unmap_errors; }

private:
    int64_t m_map_error = 0;
    uint64_t m_unmap_errors = 0;
};

workload::Params params_of(uint32_t vcpu, const abi::BootInfo& boot) {
    workload::Params p;
    p.ops = boot.args.ops;
    p.heap_bytes = boot.args.heap_bytes;
    p.max_block = boot.args.max_block;
    p.check_every = boot.args.check_every;
    p.flags = boot.args.flags;
    p.seed = boot.seed;
    p.vcpu = vcpu;
    p.vcpus = 1;
    return p;
}

// cycles -> ns with the TSC frequency in kHz, without a 128-bit product.
uint64_t cycles_to_ns(uint64_t cycles, uint64_t tsc_khz) {
    if (tsc_khz == 0) return 0;
    const uint64_t whole = cycles / tsc_khz;  // milliseconds
    const uint64_t rest = cycles % tsc_khz;
    return whole * 1000000 + rest * 1000000 / tsc_khz;
}

int64_t send_report(const workload::Result& r, uint64_t vcpus, const abi::BootInfo& boot) {
    Report<32> rep;
    rep.add_u64("wl.ops", r.ops);
    rep.add_u64("wl.allocs", r.allocs);
    rep.add_u64("wl.frees", r.frees);
    rep.add_u64("wl.failures", r.failures);
    rep.add_u64("wl.verify_errors", r.verify_errors);
    rep.add_u64("wl.invariant_checks", r.invariant_checks);
    rep.add_u64("wl.invariant_failures", r.invariant_failures);
    rep.add_u64("wl.bytes_peak", r.bytes_peak);
    rep.add_u64("wl.live_peak", r.live_peak);
    rep.add_u64("wl.heap_bytes", r.heap_bytes);
    rep.add_u64("wl.pages_touched", r.pages_touched);
    rep.add_u64("wl.cycles", r.cycles);
    rep.add_u64("wl.ns", cycles_to_ns(r.cycles, boot.tsc_khz));
    rep.add_u64("wl.vcpus", vcpus);
    if (vcpus == 1) rep.add_u64("wl.stat.digest", r.digest);  // multi's interleaving is not reproducible
    if (r.heap_reinit_error >= 0) rep.add_u64("wl.heap_reinit_error", uint64_t(r.heap_reinit_error));
    char key[abi::kReportKeyLen];
    for (uint32_t i = 0; i < r.stat_count; ++i) {
        (void)fmt::format_to(key, sizeof key, "wl.stat.%s", r.stats[i].name);
        rep.add_u64(key, r.stats[i].value);
    }
    return rep.send();
}

}  // namespace

int64_t run_alloc_workload(uint32_t vcpu, const abi::BootInfo& boot) {
    workload::Kind kind{};
    if (!workload::kind_from_name(boot.workload, kind)) {  // registry.cpp only routes the names it knows
        if (vcpu != 0) vcpu_stop();
        return kUnknownWorkloadExitCode;
    }
    workload::Params p = params_of(vcpu, boot);
    if (kind == workload::Kind::Multi) p.vcpus = boot.vcpu_count;
    if (kind != workload::Kind::Multi && vcpu != 0) vcpu_stop();
    p = workload::resolve(kind, p);
    if (const char* why = workload::params_error(kind, p)) {
        if (vcpu != 0) vcpu_stop();
        printf("%s: bad arguments: %s\n", workload::kind_name(kind), why);
        return kBadArgsExitCode;
    }
    GuestEnv env;
    const workload::Result r = workload::run(kind, p, env);
    if (vcpu != 0) vcpu_stop();
    if (r.map_failed && env.map_error() != 0)
        printf("%s: mmap of %lu bytes failed: %s (%ld)\n", workload::kind_name(kind), r.map_bytes,
               mem_error_name(env.map_error()), env.map_error());
    else if (r.map_failed)
        printf("%s: mmap of %lu bytes failed on another vCPU\n", workload::kind_name(kind), r.map_bytes);
    if (env.unmap_errors() != 0) printf("%s: %lu munmap calls failed\n", workload::kind_name(kind), env.unmap_errors());
    if (const int64_t sent = send_report(r, p.vcpus, boot); sent < 0)
        printf("%s: the report was rejected (%s)\n", workload::kind_name(kind), hc_error_name(sent));
    printf("%s: %lu ops on %u vCPU(s), %lu allocs, %lu failures, %lu verify errors, %lu invariant failures\n",
           workload::kind_name(kind), r.ops, p.vcpus, r.allocs, r.failures, r.verify_errors, r.invariant_failures);
    return workload::exit_code(r);
}

}  // namespace pv::guest
