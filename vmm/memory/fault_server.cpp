// FaultServer: lifecycle, userfaultfd setup, range table, threads, watchdog.
// The fault path itself (window choice, charging, UFFDIO_COPY) is in
// fault_server_resolve.cpp.
#include "vmm/memory/fault_server.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>

#include "vmm/memory/fault_server_internal.h"

namespace pv::memory {

namespace {

constexpr unsigned kMaxThreads = 16;

Error open_error(int e, const char* how) {
    std::string msg = std::string("userfaultfd (") + how + ")";
    if (e == EPERM || e == EACCES)
        msg +=
            " not permitted: needs CAP_SYS_PTRACE, sysctl vm.unprivileged_userfaultfd=1 or access to /dev/userfaultfd";
    else if (e == ENOSYS || e == ENOENT)
        msg += " not supported by this kernel (CONFIG_USERFAULTFD)";
    else
        msg += " failed";
    return Error{ErrorKind::Resource, e, msg};
}

Expected<int> open_syscall(int flags) {
    int fd = static_cast<int>(syscall(SYS_userfaultfd, flags));
    if (fd < 0) return mm::Unexpected<Error>{open_error(errno, "syscall")};
    return fd;
}

Expected<int> open_device(int flags) {
    int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0) return mm::Unexpected<Error>{open_error(errno, "/dev/userfaultfd")};
    int fd = ::ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    int e = errno;
    ::close(dev);
    if (fd < 0) return mm::Unexpected<Error>{open_error(e, "USERFAULTFD_IOC_NEW")};
    return fd;
}

Status handshake(int fd) {
    uffdio_api api{};
    api.api = UFFD_API;
    // The faulting thread's id is only needed for tracing; a kernel without the
    // feature still serves faults (records then carry tid 0).
    api.features = UFFD_FEATURE_THREAD_ID;
    if (::ioctl(fd, UFFDIO_API, &api) != 0) {
        api = uffdio_api{};
        api.api = UFFD_API;
        if (::ioctl(fd, UFFDIO_API, &api) != 0) return errno_error(ErrorKind::Resource, "userfaultfd: UFFDIO_API");
    }
    constexpr uint64_t kNeeded = (1ULL << _UFFDIO_REGISTER) | (1ULL << _UFFDIO_UNREGISTER);
    if ((api.ioctls & kNeeded) != kNeeded)
        return make_error(ErrorKind::Resource, "userfaultfd: kernel lacks UFFDIO_REGISTER/UNREGISTER");
    return {};
}

Status validate(const FaultServer::Options& o) {
    if (o.threads == 0 || o.threads > kMaxThreads)
        return make_error(ErrorKind::Invalid, "fault server: threads must be 1.." + std::to_string(kMaxThreads));
    if (o.fault_around_pages > FaultServer::kMaxFaultAround)
        return make_error(ErrorKind::Invalid, "fault server: fault-around window " +
                                                  std::to_string(o.fault_around_pages) + " pages exceeds " +
                                                  std::to_string(FaultServer::kMaxFaultAround));
    for (int cpu : o.cpus) {
        if (cpu != FaultServer::kNoCpu && (cpu < 0 || cpu >= CPU_SETSIZE))
            return make_error(ErrorKind::Invalid, "fault server: invalid CPU " + std::to_string(cpu));
    }
    return {};
}

std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

}  // namespace

std::string fault_hex(uint64_t v) { return hex(v); }

FaultServer::FaultServer(Options options) : m_options(std::move(options)) {}

Expected<std::unique_ptr<FaultServer>> FaultServer::create(Options options) {
    PV_TRY(validate(options));
    std::unique_ptr<FaultServer> s(new FaultServer(std::move(options)));
    int flags = O_CLOEXEC | O_NONBLOCK | (s->m_options.user_mode_only ? UFFD_USER_MODE_ONLY : 0);
    Expected<int> fd = make_error(ErrorKind::Internal, "userfaultfd: not opened");
    if (s->m_options.open != Open::Device) fd = open_syscall(flags);
    if (!fd && s->m_options.open != Open::Syscall) {
        auto dev = open_device(flags);
        if (!dev && s->m_options.open == Open::Auto)
            return make_error(dev.error().kind, fd.error().to_string() + "; " + dev.error().message,
                              dev.error().err_no);
        fd = std::move(dev);
        s->m_device_fd = true;
    }
    if (!fd) return mm::Unexpected<Error>{fd.error()};
    s->m_uffd = *fd;
    PV_TRY(handshake(s->m_uffd));
    s->m_stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->m_stop_fd < 0) return errno_error(ErrorKind::Resource, "fault server: eventfd");
    s->m_zero.assign(window_capacity(s->m_options) * kFaultPageSize, std::byte{0});
    PV_TRY(s->start_threads());
    return s;
}

Status FaultServer::start_threads() {
    for (unsigned i = 0; i < m_options.threads; ++i) {
        auto w = std::make_unique<Worker>();
        w->index = i;
        w->buffer.resize(window_capacity(m_options) * kFaultPageSize);
        if (!m_options.cpus.empty()) w->cpu = m_options.cpus[i % m_options.cpus.size()];
        Worker& ref = *w;
        m_workers.push_back(std::move(w));
        ref.thread = std::thread([this, &ref] { worker_loop(ref); });
        if (ref.cpu != kNoCpu) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(static_cast<unsigned>(ref.cpu), &set);
            int rc = pthread_setaffinity_np(ref.thread.native_handle(), sizeof set, &set);
            if (rc != 0)
                return make_error(
                    ErrorKind::Resource,
                    "fault server: cannot pin thread " + std::to_string(i) + " to CPU " + std::to_string(ref.cpu), rc);
        }
    }
    if (m_options.watchdog_timeout.count() > 0) m_watchdog = std::thread([this] { watchdog_loop(); });
    return {};
}

void FaultServer::stop_threads() {
    m_shutdown.store(true, std::memory_order_release);
    if (m_stop_fd >= 0) {
        uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(m_stop_fd, &one, sizeof one);
    }
    {
        std::lock_guard lock(m_watchdog_lock);
        m_watchdog_cv.notify_all();
    }
    for (auto& w : m_workers)
        if (w->thread.joinable()) w->thread.join();
    if (m_watchdog.joinable()) m_watchdog.join();
}

FaultServer::~FaultServer() {
    stop_threads();
    if (m_uffd >= 0) {
        std::unique_lock lock(m_ranges_lock);
        for (auto& [start, r] : m_ranges) {
            uffdio_range range{r->start, r->size};
            ::ioctl(m_uffd, UFFDIO_UNREGISTER, &range);
        }
        m_ranges.clear();
        ::close(m_uffd);
    }
    if (m_stop_fd >= 0) ::close(m_stop_fd);
}

// ---- ranges ------------------------------------------------------------------

Status FaultServer::register_range(mm::HostVirtAddr start, uint64_t size, RangeInfo info) {
    const uint64_t s = start.value();
    std::string where = "fault server: range " + hex(s) + "+" + hex(size);
    if (size == 0 || s % kFaultPageSize != 0 || size % kFaultPageSize != 0 || s > UINT64_MAX - size)
        return make_error(ErrorKind::Invalid, where + ": empty, unaligned or wrapping");
    if (info.node >= kMaxNodes)
        return make_error(ErrorKind::Invalid,
                          where + ": node " + std::to_string(info.node) + " >= " + std::to_string(kMaxNodes));
    std::unique_lock lock(m_ranges_lock);
    auto next = m_ranges.lower_bound(s);
    if (next != m_ranges.end() && next->first < s + size)
        return make_error(ErrorKind::Invalid, where + ": overlaps a registered range");
    if (next != m_ranges.begin() && std::prev(next)->second->end() > s)
        return make_error(ErrorKind::Invalid, where + ": overlaps a registered range");
    uffdio_register reg{};
    reg.range = {s, size};
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(m_uffd, UFFDIO_REGISTER, &reg) != 0) {
        int e = errno;
        const char* why = e == EINVAL   ? ": not a mapping userfaultfd supports (anonymous, shmem, hugetlbfs)"
                          : e == EBUSY  ? ": already registered with another userfaultfd"
                          : e == ENOMEM ? ": not fully mapped"
                                        : ": UFFDIO_REGISTER";
        return make_error(ErrorKind::Resource, where + why, e);
    }
    const uint64_t needed = m_options.zero_fill == ZeroFill::ZeroPage
                                ? (1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_ZEROPAGE)
                                : (1ULL << _UFFDIO_COPY);
    if ((reg.ioctls & needed) != needed) {
        uffdio_range range{s, size};
        ::ioctl(m_uffd, UFFDIO_UNREGISTER, &range);
        return make_error(ErrorKind::Resource, where + ": kernel offers no UFFDIO_COPY/ZEROPAGE for this mapping");
    }
    m_ranges.emplace(s, std::make_unique<Range>(s, size, info));
    return {};
}

Expected<FaultServer::RangeStats> FaultServer::unregister_range(mm::HostVirtAddr start) {
    std::unique_lock lock(m_ranges_lock);
    auto it = m_ranges.find(start.value());
    if (it == m_ranges.end())
        return make_error(ErrorKind::Invalid, "fault server: no range registered at " + hex(start.value()));
    uffdio_range range{it->second->start, it->second->size};
    if (::ioctl(m_uffd, UFFDIO_UNREGISTER, &range) != 0)
        return errno_error(ErrorKind::Resource, "fault server: UFFDIO_UNREGISTER at " + hex(start.value()));
    RangeStats st = it->second->stats();
    m_ranges.erase(it);
    return st;
}

FaultServer::Range* FaultServer::find_locked(uint64_t address) const {
    auto it = m_ranges.upper_bound(address);
    if (it == m_ranges.begin()) return nullptr;
    --it;
    return address < it->second->end() ? it->second.get() : nullptr;
}

// ---- threads -------------------------------------------------------------------

bool FaultServer::wait_for_event() const {
    if (m_options.wait == Wait::BusyPoll) {
        __builtin_ia32_pause();
        return true;
    }
    pollfd fds[2] = {{m_uffd, POLLIN, 0}, {m_stop_fd, POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    return n > 0 && (fds[0].revents & POLLIN) != 0;
}

void FaultServer::worker_loop(Worker& w) {
    if (m_options.on_thread_start) m_options.on_thread_start();
    uffd_msg msgs[16];
    while (!m_shutdown.load(std::memory_order_acquire)) {
        if (!wait_for_event()) continue;
        // Raised before read() so that wait_idle() never sees an event that
        // left the queue but is not yet handled.
        m_active.fetch_add(1, std::memory_order_seq_cst);
        ssize_t n = ::read(m_uffd, msgs, sizeof msgs);
        uint64_t read_ns = now_ns();
        for (size_t i = 0; n > 0 && i < static_cast<size_t>(n) / sizeof(uffd_msg); ++i) {
            if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;  // no other events are enabled
            const auto& pf = msgs[i].arg.pagefault;
            handle_fault(w, pf.address, read_ns, pf.feat.ptid, (pf.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0);
        }
        m_active.fetch_sub(1, std::memory_order_release);
    }
}

void FaultServer::watchdog_loop() {
    const auto period = std::max(std::chrono::milliseconds(1), m_options.watchdog_timeout / 4);
    std::unique_lock lock(m_watchdog_lock);
    while (!m_shutdown.load(std::memory_order_acquire)) {
        m_watchdog_cv.wait_for(lock, period);
        check_stalls(now_ns());
    }
}

void FaultServer::check_stalls(uint64_t now) {
    const auto timeout_ns =
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(m_options.watchdog_timeout).count());
    for (auto& w : m_workers) {
        uint64_t since = w->busy_since_ns.load(std::memory_order_acquire);
        if (since == 0 || now < since || now - since < timeout_ns || w->reported_since == since) continue;
        w->reported_since = since;
        m_stalls.fetch_add(1, std::memory_order_relaxed);
        Error e{ErrorKind::Timeout, 0,
                "fault server: fault at HVA " + hex(w->busy_address.load(std::memory_order_relaxed)) +
                    " unresolved after " + std::to_string((now - since) / 1'000'000) + " ms (server thread " +
                    std::to_string(w->index) + ")"};
        if (m_options.on_stall) m_options.on_stall(e);
    }
}

bool FaultServer::wait_idle(std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        // Queue first, then the active count (see worker_loop).
        pollfd pfd{m_uffd, POLLIN, 0};
        bool queued = ::poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN) != 0;
        if (!queued && m_active.load(std::memory_order_seq_cst) == 0) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
}

// ---- errors and statistics -------------------------------------------------------------

bool FaultServer::record_fatal(Error error) {
    std::lock_guard lock(m_fatal_lock);
    m_stopped.store(true, std::memory_order_release);
    if (m_fatal) return false;
    m_fatal = std::move(error);
    return true;
}

std::optional<Error> FaultServer::fatal_error() const {
    std::lock_guard lock(m_fatal_lock);
    return m_fatal;
}

FaultServer::Stats FaultServer::stats() const {
    Stats s;
    s.faults = m_faults.load(std::memory_order_relaxed);
    s.pages_installed = m_pages.load(std::memory_order_relaxed);
    s.fault_around_pages = m_around.load(std::memory_order_relaxed);
    s.eexist_races = m_eexist.load(std::memory_order_relaxed);
    s.stale_faults = m_stale.load(std::memory_order_relaxed);
    s.oom_refusals = m_oom.load(std::memory_order_relaxed);
    s.unaccounted_pages = m_unaccounted.load(std::memory_order_relaxed);
    s.stalls = m_stalls.load(std::memory_order_relaxed);
    for (auto& n : m_node_pages) s.node_pages.push_back(n.load(std::memory_order_relaxed));
    {
        std::shared_lock lock(m_ranges_lock);
        for (auto& [start, r] : m_ranges) s.ranges.push_back(r->stats());
    }
    s.latency = m_latency.snapshot();
    for (auto& w : m_workers) s.thread_cpus.push_back(w->cpu);
    s.wait = m_options.wait;
    s.device_fd = m_device_fd;
    return s;
}

}  // namespace pv::memory
