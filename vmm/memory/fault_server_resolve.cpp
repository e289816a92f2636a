// FaultServer's fault path: choose a window, charge it, fetch its data and
// install it with one UFFDIO_COPY (or UFFDIO_ZEROPAGE). See fault_server.h for
// the policies (fault-around, EEXIST fallback, out of memory).
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>

#include "vmm/memory/fault_server.h"
#include "vmm/memory/fault_server_internal.h"

namespace pv::memory {

void FaultServer::handle_fault(Worker& w, uint64_t address, uint64_t read_ns, uint32_t tid, bool write) {
    m_faults.fetch_add(1, std::memory_order_relaxed);
    w.busy_address.store(address, std::memory_order_relaxed);
    w.busy_since_ns.store(read_ns, std::memory_order_release);
    FaultRecord record{read_ns, address, 0, 0, tid, write, 0};
    {
        std::shared_lock lock(m_ranges_lock);
        if (Range* r = find_locked(address)) {
            record.range_id = r->info.id;
            record.node = r->info.node;
            resolve_locked(w, *r, (address - r->start) / kFaultPageSize);
        } else {
            // Unregistered after the event was queued: the thread was woken by
            // UFFDIO_UNREGISTER already; waking again is harmless.
            m_stale.fetch_add(1, std::memory_order_relaxed);
            wake(address & ~(kFaultPageSize - 1));
        }
    }
    record.latency_ns = now_ns() - read_ns;
    m_latency.record(record.latency_ns);
    w.busy_since_ns.store(0, std::memory_order_release);
    if (m_options.on_fault) m_options.on_fault(record);
    // Outside the range lock, so the callback may unregister ranges; before the
    // wake, so the VMM marks its guest stopped before the faulting thread runs on.
    if (w.fatal_pending) {
        w.fatal_pending = false;
        if (auto e = fatal_error(); e && m_options.on_fatal) m_options.on_fatal(*e);
    }
    if (w.wake_address != 0) {
        wake(w.wake_address);
        w.wake_address = 0;
    }
}

void FaultServer::resolve_locked(Worker& w, Range& r, uint64_t page) {
    r.faults.fetch_add(1, std::memory_order_relaxed);
    if (stopped()) return resolve_stopped(w, r, page);
    Window win = choose_window(r, page);
    bool charged = charge(r, win.pages);
    if (!charged && win.pages > 1) {  // fault-around must never be what exhausts a node
        win.pages = 1;
        charged = charge(r, 1);
    }
    if (!charged) {
        m_oom.fetch_add(1, std::memory_order_relaxed);
        w.fatal_pending = record_fatal(Error{ErrorKind::GuestOutOfMemory, 0,
                                             "guest out of memory on node " + std::to_string(r.info.node) +
                                                 " (range id " + std::to_string(r.info.id) + ", fault at HVA " +
                                                 fault_hex(r.start + page * kFaultPageSize) + ")"});
        return resolve_stopped(w, r, page);
    }
    auto src = source_data(w, r, win);
    if (!src) {
        refund(r, win.pages);
        w.fatal_pending = record_fatal(src.error());
        return resolve_stopped(w, r, page);
    }
    int64_t n = install_window(r, win, *src);
    if (n <= 0) {
        refund(r, win.pages);
        return copy_failed(w, r, page, n);
    }
    account(r, static_cast<uint64_t>(n), true);
}

// Installs the charged window, falling back to its first page on EEXIST;
// refunds pages charged but not installed except when nothing was (n <= 0: the
// caller refunds win.pages). Returns what copy_pages() returns.
int64_t FaultServer::install_window(Range& r, Window& win, const std::byte* src) {
    const bool around = m_options.fault_around != FaultAround::Off;
    const uint64_t planned = win.pages;
    // The stream moves before the copy wakes the toucher: its next fault may
    // reach another server thread before this one returns from the ioctl.
    if (around) win.stream = r.advance_stream(win.stream, win.first + planned);
    int64_t n = copy_pages(r, win, src, true);
    if (n == 0 && win.pages > 1) {  // some page of the window got populated: the faulting page alone
        m_eexist.fetch_add(1, std::memory_order_relaxed);
        refund(r, win.pages - 1);
        win.pages = 1;
        n = copy_pages(r, win, src, true);
    }
    if (n > 0 && static_cast<uint64_t>(n) < win.pages) {  // partial: stopped at a populated page
        m_eexist.fetch_add(1, std::memory_order_relaxed);
        refund(r, win.pages - static_cast<uint64_t>(n));
        win.pages = static_cast<uint64_t>(n);
    }
    if (around && n >= 0 && static_cast<uint64_t>(n) != planned)
        r.advance_stream(win.stream, win.first + (n > 0 ? static_cast<uint64_t>(n) : 1));
    return n;
}

// After a fatal error: install the faulting page uncharged so no thread hangs.
// Its contents are the correct first-touch contents (zero or the source's),
// zero if the source fails.
void FaultServer::resolve_stopped(Worker& w, Range& r, uint64_t page) {
    const Window win{page, 1, -1};
    const std::byte* src = m_zero.data();
    if (r.info.source == nullptr && m_options.zero_fill == ZeroFill::ZeroPage) src = nullptr;
    if (r.info.source != nullptr) {
        if (auto s = source_data(w, r, win)) src = *s;
    }
    const bool defer_wake = w.fatal_pending;
    int64_t n = copy_pages(r, win, src, !defer_wake);
    if (n > 0) account(r, 1, false);
    if (n == 0) m_eexist.fetch_add(1, std::memory_order_relaxed);
    if (defer_wake || n <= 0) w.wake_address = r.start + page * kFaultPageSize;
}

void FaultServer::copy_failed(Worker& w, Range& r, uint64_t page, int64_t n) {
    const uint64_t address = r.start + page * kFaultPageSize;
    if (n == 0) {  // another thread or window installed it first
        m_eexist.fetch_add(1, std::memory_order_relaxed);
        wake(address);
        return;
    }
    const int e = static_cast<int>(-n);
    std::string msg = e == ENOMEM ? "guest out of memory on node " + std::to_string(r.info.node) +
                                        ": the host has no memory for a page at HVA " + fault_hex(address)
                                  : "fault server: UFFDIO_COPY at HVA " + fault_hex(address) + " failed";
    w.fatal_pending = record_fatal(Error{e == ENOMEM ? ErrorKind::GuestOutOfMemory : ErrorKind::Resource, e, msg});
    // The thread refaults and is then served by resolve_stopped().
    w.wake_address = address;
}

FaultServer::Window FaultServer::choose_window(const Range& r, uint64_t page) const {
    const uint64_t cap = window_capacity(m_options);
    if (m_options.fault_around == FaultAround::Off || cap <= 1) return {page, 1, -1};
    const int stream = r.stream_of(page);
    if (m_options.fault_around == FaultAround::Sequential && stream < 0) return {page, 1, -1};
    return {page, clip_to_missing(r, page, std::min(cap, r.page_count() - page)), stream};
}

// Leading run of pages not resident, starting with the faulting page. mincore
// reads page tables only: it never faults on the registered memory.
uint64_t FaultServer::clip_to_missing(const Range& r, uint64_t first, uint64_t pages) const {
    unsigned char vec[kMaxFaultAround];
    if (pages <= 1 ||
        ::mincore(reinterpret_cast<void*>(r.start + first * kFaultPageSize), pages * kFaultPageSize, vec) != 0)
        return 1;
    uint64_t n = 1;
    while (n < pages && (vec[n] & 1) == 0) ++n;
    return n;
}

bool FaultServer::charge(const Range& r, uint64_t pages) {
    if (!m_options.charger.charge) return true;
    return m_options.charger.charge(r.info.node, pages);
}

void FaultServer::refund(const Range& r, uint64_t pages) {
    if (pages != 0 && m_options.charger.charge && m_options.charger.uncharge)
        m_options.charger.uncharge(r.info.node, pages);
}

// Data to install for `win`: the zero buffer, the source's pages in the
// worker's buffer, or nullptr for UFFDIO_ZEROPAGE.
Expected<const std::byte*> FaultServer::source_data(Worker& w, const Range& r, Window win) const {
    if (r.info.source == nullptr)
        return m_options.zero_fill == ZeroFill::ZeroPage ? static_cast<const std::byte*>(nullptr) : m_zero.data();
    for (uint64_t i = 0; i < win.pages; ++i) {
        const uint64_t offset = (win.first + i) * kFaultPageSize;
        std::span<std::byte, kFaultPageSize> page(w.buffer.data() + i * kFaultPageSize, kFaultPageSize);
        if (auto st = r.info.source->read_page(offset, page); !st)
            return mm::Unexpected<Error>{st.error().with_context("fault server: page source of range id " +
                                                                 std::to_string(r.info.id) + " at offset " +
                                                                 fault_hex(offset))};
    }
    return static_cast<const std::byte*>(w.buffer.data());
}

// Pages installed from win.first on (0: the first one was already populated), or -errno.
int64_t FaultServer::copy_pages(const Range& r, Window win, const std::byte* src, bool wake_thread) const {
    const uint64_t dst = r.start + win.first * kFaultPageSize;
    const uint64_t len = win.pages * kFaultPageSize;
    for (int attempt = 0; attempt < 8; ++attempt) {  // EAGAIN without progress: the mm is changing
        int64_t done = 0;
        int rc = 0;
        if (src == nullptr) {
            uffdio_zeropage z{};
            z.range = {dst, len};
            z.mode = wake_thread ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE;
            rc = ::ioctl(m_uffd, UFFDIO_ZEROPAGE, &z);
            done = z.zeropage;
        } else {
            uffdio_copy c{};
            c.dst = dst;
            c.src = reinterpret_cast<uint64_t>(src);
            c.len = len;
            c.mode = wake_thread ? 0 : UFFDIO_COPY_MODE_DONTWAKE;
            rc = ::ioctl(m_uffd, UFFDIO_COPY, &c);
            done = c.copy;
        }
        if (rc == 0) return static_cast<int64_t>(win.pages);
        const int e = errno;
        if (done > 0) return done / static_cast<int64_t>(kFaultPageSize);
        if (e == EEXIST) return 0;
        if (e != EAGAIN) return -e;
    }
    return -EAGAIN;
}

void FaultServer::account(Range& r, uint64_t pages, bool charged) {
    m_pages.fetch_add(pages, std::memory_order_relaxed);
    if (pages > 1) m_around.fetch_add(pages - 1, std::memory_order_relaxed);
    r.pages.fetch_add(pages, std::memory_order_relaxed);
    if (charged)
        r.charged.fetch_add(pages, std::memory_order_relaxed);
    else
        m_unaccounted.fetch_add(pages, std::memory_order_relaxed);
    m_node_pages[r.info.node].fetch_add(pages, std::memory_order_relaxed);
}

void FaultServer::wake(uint64_t address) const {
    uffdio_range range{address, kFaultPageSize};
    ::ioctl(m_uffd, UFFDIO_WAKE, &range);  // fails only for a range outside the mm: nothing to wake then
}

}  // namespace pv::memory
