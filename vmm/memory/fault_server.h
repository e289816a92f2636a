// FaultServer: serves first-touch faults on registered host memory ranges
// with userfaultfd (MISSING mode). It knows nothing about KVM: KVM's accesses
// to a registered guest RAM mapping arrive as ordinary userfaultfd events, and
// host threads touching the memory (tests) are served the same way.
//
// Resolution. A fault at page P of a range is resolved with one UFFDIO_COPY
// (from a zero buffer, or from the range's PageSource), by default; the
// ZeroPage option uses UFFDIO_ZEROPAGE instead (on shadow-paging hosts that is
// two guest faults per written page). Fault-around: when the fault is
// sequential (P is the page after the previous fault's page or window in the
// same range; a range tracks a few such streams, so several vCPUs touching
// different parts of it each keep theirs) or the mode is Always, a window [P, P + N) clipped to the range
// and to the run of pages not yet resident (mincore) is installed at once. If
// the window copy fails with EEXIST (a page got populated meanwhile) the
// server falls back to the single page; EEXIST on the single page is a benign
// race (counted), never an error.
//
// Accounting and out of memory. Before installing pages the server calls
// FrameCharger::charge(node, pages); pages it charged but could not install
// are refunded with uncharge(). A refusal is fatal for the guest: the server
// records Error{Resource, "guest out of memory on node N ..."}, enters the
// stopped state and calls on_fatal once. So that no thread ever hangs, the
// refused fault and every later one are still resolved, one page each, with
// the page's correct first-touch contents (zero or the PageSource's data), NOT
// charged and counted as unaccounted_pages. The VMM's duty on on_fatal: kick
// its vCPUs and do not re-enter KVM_RUN. The overshoot is bounded by the faults
// taken between the refusal and the kick.
//
// Watchdog. A fault whose resolution has been running longer than
// Options::watchdog_timeout is reported once through on_stall with a Timeout
// error (address, range id, elapsed time), and counted in stats.stalls.
//
// Threads. Options::threads server threads read the one userfaultfd, either
// sleeping in poll() or busy-polling read(); each may be pinned to a CPU.
// Pitfall (DESIGN.md): the server never reads or writes registered memory; it
// only installs pages through ioctls. PageSource and FrameCharger callbacks run
// on server threads under the range table's shared lock: they must not touch
// registered memory nor register/unregister ranges. on_fatal and on_stall run
// outside that lock (on a server thread / the watchdog thread).
//
// Ranges are registered and unregistered at any time from any thread (a
// shared_mutex guards the range table; a fault resolution holds it shared).
// Unregistering wakes threads blocked on the range; they refault on plain
// memory. Destroying the server unregisters every remaining range.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "mm/addr.h"
#include "vmm/base/error.h"
#include "vmm/memory/fault_stats.h"

namespace pv::memory {

inline constexpr uint64_t kFaultPageSize = 4096;

// Supplies the initial contents of pages of a range (snapshot restore, swap:
// later issues). Called on a server thread with a page-aligned offset.
class PageSource {
public:
    virtual ~PageSource() = default;
    // An error leaves the page uninstalled and is fatal (on_fatal, like OOM).
    virtual Status read_page(uint64_t offset_in_range, std::span<std::byte, kFaultPageSize> page) = 0;
};

// Frame accounting hook (per-node pools). charge() returning false means the
// node's quota or host memory is exhausted. Both run on server threads.
struct FrameCharger {
    std::function<bool(uint32_t node, uint64_t pages)> charge;
    std::function<void(uint32_t node, uint64_t pages)> uncharge;  // may be empty
};

// One resolved fault, for tracing (Options::on_fault).
struct FaultRecord {
    uint64_t time_ns = 0;     // CLOCK_MONOTONIC when the event was read
    uint64_t address = 0;     // faulting host virtual address
    uint32_t range_id = 0;    // RangeInfo::id of its range (0 for a stale event)
    uint32_t node = 0;        // RangeInfo::node
    uint32_t tid = 0;         // faulting thread (0 if the kernel does not report it)
    bool write = false;       // a write fault
    uint64_t latency_ns = 0;  // event read -> resolved
};

struct RangeInfo {
    uint32_t id = 0;               // caller's tag (area / backend id), reported in stats and errors
    uint32_t node = 0;             // guest NUMA node charged, < FaultServer::kMaxNodes
    PageSource* source = nullptr;  // nullptr: zero-fill. Not owned; must outlive the registration.
};

class FaultServer {
public:
    static constexpr uint32_t kMaxNodes = 64;
    static constexpr uint32_t kMaxFaultAround = 512;  // 2 MiB window
    static constexpr int kNoCpu = -1;

    enum class FaultAround { Off, Sequential, Always };
    enum class ZeroFill { Copy, ZeroPage };
    enum class Wait { Poll, BusyPoll };
    // How the userfaultfd is obtained. Auto: syscall, then /dev/userfaultfd if refused.
    enum class Open { Auto, Syscall, Device };

    struct Options {
        unsigned threads = 1;    // 1..16
        Wait wait = Wait::Poll;  // BusyPoll burns its CPU; measure before choosing it
        std::vector<int> cpus;   // thread i pinned to cpus[i % size]; empty or kNoCpu: not pinned
        FaultAround fault_around = FaultAround::Sequential;
        uint32_t fault_around_pages = 16;  // 0 or 1: off
        ZeroFill zero_fill = ZeroFill::Copy;
        Open open = Open::Auto;
        // Only user-mode faults are served: KVM's faults (kernel mode) would fail. Tests only.
        bool user_mode_only = false;
        std::chrono::milliseconds watchdog_timeout{2000};  // 0: no watchdog
        FrameCharger charger;                              // empty charge: everything allowed
        std::function<void(const Error&)> on_fatal;        // OOM, PageSource or ioctl failure (once)
        std::function<void(const Error&)> on_stall;        // watchdog report (once per stuck fault)
        // Called after every resolved fault on the server thread (tracing); may be empty.
        // It must be quick and must not touch registered memory.
        std::function<void(const FaultRecord&)> on_fault;
        // Called first on every server thread (e.g. to install a seccomp filter on it); may be empty.
        std::function<void()> on_thread_start;
    };

    struct RangeStats {
        uint32_t id = 0;
        uint32_t node = 0;
        mm::HostVirtAddr start;
        uint64_t size = 0;
        uint64_t pages = 0;          // pages installed
        uint64_t charged_pages = 0;  // of which charged to the FrameCharger
        uint64_t faults = 0;
    };

    struct Stats {
        uint64_t faults = 0;               // pagefault events read
        uint64_t pages_installed = 0;      // all pages installed (incl. fault-around, unaccounted)
        uint64_t fault_around_pages = 0;   // pages installed beyond the faulting one
        uint64_t eexist_races = 0;         // window or page already populated
        uint64_t stale_faults = 0;         // event for an address no longer registered
        uint64_t oom_refusals = 0;         // charger refusals
        uint64_t unaccounted_pages = 0;    // installed after the stop, not charged
        uint64_t stalls = 0;               // watchdog reports
        std::vector<uint64_t> node_pages;  // kMaxNodes entries
        std::vector<RangeStats> ranges;
        LatencyHistogram::Snapshot latency;  // event read -> ioctl return, per fault
        std::vector<int> thread_cpus;        // per server thread: pinned CPU or kNoCpu
        Wait wait = Wait::Poll;
        bool device_fd = false;  // fd came from /dev/userfaultfd
    };

    static Expected<std::unique_ptr<FaultServer>> create(Options options);
    FaultServer(const FaultServer&) = delete;
    FaultServer& operator=(const FaultServer&) = delete;
    ~FaultServer();

    // [start, start + size): page aligned, non-empty, not overlapping another
    // range, a mapping userfaultfd accepts (anonymous, shmem, hugetlbfs).
    [[nodiscard]] Status register_range(mm::HostVirtAddr start, uint64_t size, RangeInfo info);
    // `start` must be the start of a registered range. Threads blocked in it are
    // woken (they refault on plain memory). Returns the range's final counters:
    // the owner uncharges `charged_pages` when it releases the memory.
    [[nodiscard]] Expected<RangeStats> unregister_range(mm::HostVirtAddr start);

    // Counters are updated after the ioctl that wakes the faulting thread, so
    // right after a toucher resumes they may lag. wait_idle() returns true once
    // no fault is queued or being handled (then stats() covers every fault
    // taken before the call), false after `timeout`. The VMM calls it after its
    // vCPUs stopped, before reporting.
    [[nodiscard]] bool wait_idle(std::chrono::milliseconds timeout) const;
    [[nodiscard]] Stats stats() const;
    // Stopped after a fatal error (OOM, PageSource or ioctl failure).
    [[nodiscard]] bool stopped() const { return m_stopped.load(std::memory_order_acquire); }
    // The first fatal error, if any.
    [[nodiscard]] std::optional<Error> fatal_error() const;
    [[nodiscard]] const Options& options() const { return m_options; }

private:
    struct Range;
    struct Worker;
    struct Window {
        uint64_t first = 0;  // page index in the range
        uint64_t pages = 0;
        int stream = -1;  // sequential stream slot it continues, -1: a new stream
    };

    explicit FaultServer(Options options);
    Status start_threads();
    void stop_threads();
    [[nodiscard]] Range* find_locked(uint64_t address) const;
    [[nodiscard]] bool wait_for_event() const;
    void worker_loop(Worker& w);
    void handle_fault(Worker& w, uint64_t address, uint64_t read_ns, uint32_t tid, bool write);
    void resolve_locked(Worker& w, Range& r, uint64_t page);
    void resolve_stopped(Worker& w, Range& r, uint64_t page);
    int64_t install_window(Range& r, Window& win, const std::byte* src);
    void copy_failed(Worker& w, Range& r, uint64_t page, int64_t n);
    [[nodiscard]] Window choose_window(const Range& r, uint64_t page) const;
    [[nodiscard]] uint64_t clip_to_missing(const Range& r, uint64_t first, uint64_t pages) const;
    bool charge(const Range& r, uint64_t pages);
    void refund(const Range& r, uint64_t pages);
    [[nodiscard]] Expected<const std::byte*> source_data(Worker& w, const Range& r, Window win) const;
    [[nodiscard]] int64_t copy_pages(const Range& r, Window win, const std::byte* src, bool wake_thread) const;
    void account(Range& r, uint64_t pages, bool charged);
    bool record_fatal(Error error);  // true for the first fatal error
    void wake(uint64_t address) const;
    void watchdog_loop();
    void check_stalls(uint64_t now);

    Options m_options;
    int m_uffd = -1;
    int m_stop_fd = -1;  // eventfd: wakes pollers at shutdown
    bool m_device_fd = false;
    std::atomic<bool> m_shutdown{false};
    std::atomic<bool> m_stopped{false};
    std::atomic<unsigned> m_active{0};  // workers between read() and the end of their batch

    mutable std::shared_mutex m_ranges_lock;
    std::map<uint64_t, std::unique_ptr<Range>> m_ranges;  // by start address, guarded by m_ranges_lock

    mutable std::mutex m_fatal_lock;
    std::optional<Error> m_fatal;  // guarded by m_fatal_lock

    std::vector<std::unique_ptr<Worker>> m_workers;
    std::thread m_watchdog;
    std::mutex m_watchdog_lock;
    std::condition_variable m_watchdog_cv;

    std::atomic<uint64_t> m_faults{0}, m_pages{0}, m_around{0}, m_eexist{0}, m_stale{0}, m_oom{0}, m_unaccounted{0},
        m_stalls{0};
    std::array<std::atomic<uint64_t>, kMaxNodes> m_node_pages{};
    LatencyHistogram m_latency;
    std::vector<std::byte> m_zero;  // never written: the UFFDIO_COPY source for zero-fill, one window long
};

}  // namespace pv::memory
