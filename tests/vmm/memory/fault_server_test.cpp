// FaultServer with plain host threads touching registered anonymous memory (no
// KVM). Every toucher runs under a timeout guard: a hang aborts the test binary
// with a message instead of blocking CI.
// Not testable here: the error when userfaultfd is unavailable (root on these
// machines always gets it; the EPERM/ENOSYS messages are only read).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <numeric>
#include <random>
#include <thread>

#include "tests/support/seed.h"
#include "vmm/memory/fault_server.h"

namespace pv::memory {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kPage = kFaultPageSize;

// Runs fn on a fresh thread (never a server thread); aborts if it hangs.
template <class F>
void guarded(F&& fn, std::chrono::seconds limit = std::chrono::seconds(20)) {
    std::promise<void> done;
    auto fut = done.get_future();
    std::thread t([&] {
        fn();
        done.set_value();
    });
    if (fut.wait_for(limit) != std::future_status::ready) {
        std::fprintf(stderr, "FATAL: a thread touching registered memory hung for %lld s\n",
                     static_cast<long long>(limit.count()));
        std::abort();
    }
    t.join();
}

class Mapping {
public:
    explicit Mapping(uint64_t pages) : m_size(pages * kPage) {
        void* p = ::mmap(nullptr, m_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) std::abort();
        m_base = static_cast<unsigned char*>(p);
    }
    ~Mapping() { ::munmap(m_base, m_size); }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    [[nodiscard]] mm::HostVirtAddr addr() const { return mm::host_addr(m_base); }
    [[nodiscard]] uint64_t size() const { return m_size; }
    [[nodiscard]] uint64_t pages() const { return m_size / kPage; }
    [[nodiscard]] volatile unsigned char* page(uint64_t i) const { return m_base + i * kPage; }

private:
    unsigned char* m_base = nullptr;
    uint64_t m_size = 0;
};

// First touch of page i is a read that must see zeros; then it stores a tag.
bool first_touch(const Mapping& m, uint64_t i, unsigned char tag) {
    volatile unsigned char* p = m.page(i);
    bool zero = p[0] == 0 && p[kPage / 2] == 0 && p[kPage - 1] == 0;
    p[0] = tag;
    p[kPage - 1] = tag;
    return zero;
}

FaultServer::Options options(FaultServer::FaultAround fa, uint32_t window = 16) {
    FaultServer::Options o;
    o.fault_around = fa;
    o.fault_around_pages = window;
    return o;
}

std::unique_ptr<FaultServer> make_server(FaultServer::Options o) {
    auto s = FaultServer::create(std::move(o));
    if (!s) {
        ADD_FAILURE() << s.error().to_string();
        return nullptr;
    }
    return std::move(*s);
}

// Statistics once every fault taken so far has been accounted.
FaultServer::Stats settled(const FaultServer& server) {
    EXPECT_TRUE(server.wait_idle(std::chrono::seconds(10)));
    return server.stats();
}

// A per-node quota, exact under concurrency.
struct QuotaCharger {
    explicit QuotaCharger(int64_t q) : quota(q) {}
    int64_t quota;
    std::atomic<int64_t> used{0};
    std::atomic<uint64_t> refusals{0};
    FrameCharger charger() {
        return FrameCharger{[this](uint32_t, uint64_t pages) {
                                int64_t cur = used.load();
                                do {
                                    if (cur + static_cast<int64_t>(pages) > quota) {
                                        refusals.fetch_add(1);
                                        return false;
                                    }
                                } while (!used.compare_exchange_weak(cur, cur + static_cast<int64_t>(pages)));
                                return true;
                            },
                            [this](uint32_t, uint64_t pages) { used.fetch_sub(static_cast<int64_t>(pages)); }};
    }
};

// ---- basic resolution ------------------------------------------------------------

TEST(FaultServer, ZeroOnFirstTouchDataKeptOneFaultPerPage) {
    auto server = make_server(options(FaultServer::FaultAround::Off));
    ASSERT_TRUE(server);
    Mapping m(64);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{7, 2, nullptr}).has_value());
    bool all_zero = true;
    guarded([&] {
        for (uint64_t i = 0; i < m.pages(); ++i) all_zero &= first_touch(m, i, static_cast<unsigned char>(i + 1));
    });
    EXPECT_TRUE(all_zero);
    for (uint64_t i = 0; i < m.pages(); ++i) {
        EXPECT_EQ(m.page(i)[0], static_cast<unsigned char>(i + 1));
        EXPECT_EQ(m.page(i)[kPage - 1], static_cast<unsigned char>(i + 1));
    }
    auto st = settled(*server);
    EXPECT_EQ(st.faults, m.pages());
    EXPECT_EQ(st.pages_installed, m.pages());
    EXPECT_EQ(st.fault_around_pages, 0u);
    EXPECT_EQ(st.node_pages[2], m.pages());
    ASSERT_EQ(st.ranges.size(), 1u);
    EXPECT_EQ(st.ranges[0].id, 7u);
    EXPECT_EQ(st.ranges[0].pages, m.pages());
    EXPECT_EQ(st.ranges[0].faults, m.pages());
    EXPECT_FALSE(server->stopped());
}

TEST(FaultServer, ZeroPageModeAndDeviceFd) {
    auto o = options(FaultServer::FaultAround::Sequential, 8);
    o.zero_fill = FaultServer::ZeroFill::ZeroPage;
    o.open = FaultServer::Open::Device;
    auto server = make_server(std::move(o));
    ASSERT_TRUE(server);
    EXPECT_TRUE(settled(*server).device_fd);
    Mapping m(32);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{}).has_value());
    bool all_zero = true;
    guarded([&] {
        for (uint64_t i = 0; i < m.pages(); ++i) all_zero &= first_touch(m, i, 0x5a);
    });
    EXPECT_TRUE(all_zero);
    for (uint64_t i = 0; i < m.pages(); ++i) EXPECT_EQ(m.page(i)[0], 0x5a);
    EXPECT_EQ(settled(*server).pages_installed, m.pages());
}

TEST(FaultServer, SyscallFdIsNotDevice) {
    auto o = options(FaultServer::FaultAround::Off);
    o.open = FaultServer::Open::Syscall;
    auto server = make_server(std::move(o));
    ASSERT_TRUE(server);
    EXPECT_FALSE(settled(*server).device_fd);
}

// ---- fault-around ---------------------------------------------------------------------

TEST(FaultServer, SequentialFaultAroundTakesOneFaultPerWindow) {
    constexpr uint32_t kWindow = 16;
    auto server = make_server(options(FaultServer::FaultAround::Sequential, kWindow));
    ASSERT_TRUE(server);
    Mapping m(256);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{}).has_value());
    bool all_zero = true;
    guarded([&] {
        for (uint64_t i = 0; i < m.pages(); ++i) all_zero &= first_touch(m, i, 1);
    });
    EXPECT_TRUE(all_zero);
    auto st = settled(*server);
    // The first fault has no predecessor (one page); the rest go window by window.
    const uint64_t expected = 1 + (m.pages() - 1 + kWindow - 1) / kWindow;
    EXPECT_EQ(st.faults, expected);
    EXPECT_EQ(st.pages_installed, m.pages());
    EXPECT_EQ(st.fault_around_pages, m.pages() - st.faults);
}

TEST(FaultServer, TwoSequentialStreamsInOneRangeKeepTheirFaultAround) {
    constexpr uint32_t kWindow = 16;
    constexpr uint64_t kHalf = 1 + 8 * kWindow;  // windows end exactly at the other stream's start
    auto o = options(FaultServer::FaultAround::Sequential, kWindow);
    o.threads = 2;
    auto server = make_server(std::move(o));
    ASSERT_TRUE(server);
    Mapping m(2 * kHalf);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{}).has_value());
    std::atomic<bool> all_zero{true};
    guarded([&] {
        auto stream = [&](uint64_t first) {
            for (uint64_t i = first; i < first + kHalf; ++i)
                if (!first_touch(m, i, 1)) all_zero = false;
        };
        std::thread a(stream, 0), b(stream, kHalf);
        a.join();
        b.join();
    });
    EXPECT_TRUE(all_zero.load());
    auto st = settled(*server);
    EXPECT_EQ(st.pages_installed, m.pages());
    EXPECT_EQ(st.faults, 2 * (1 + (kHalf - 1) / kWindow));  // as if each stream were alone
}

TEST(FaultServer, RandomOrderGetsLittleFaultAround) {
    const uint64_t seed = pv::test::test_seed(11);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    auto server = make_server(options(FaultServer::FaultAround::Sequential, 16));
    ASSERT_TRUE(server);
    Mapping m(256);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{}).has_value());
    std::vector<uint64_t> order(m.pages());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
    // Reference model: a fault is sequential when it continues one of the 4
    // most recent streams (the end of a previous window); new streams replace
    // the slots round robin.
    uint64_t model_faults = 0;
    {
        std::vector<bool> present(m.pages());
        std::vector<uint64_t> next(4, UINT64_MAX);
        size_t cursor = 0;
        for (uint64_t p : order) {
            if (present[p]) continue;
            ++model_faults;
            auto slot = std::find(next.begin(), next.end(), p);
            uint64_t n = 1;
            if (slot != next.end())
                while (n < 16 && p + n < m.pages() && !present[p + n]) ++n;
            for (uint64_t k = 0; k < n; ++k) present[p + k] = true;
            if (slot == next.end()) slot = next.begin() + static_cast<std::ptrdiff_t>(cursor++ % next.size());
            *slot = p + n;
        }
    }
    bool all_zero = true;
    guarded([&] {
        for (uint64_t p : order) all_zero &= first_touch(m, p, 3);
    });
    EXPECT_TRUE(all_zero);
    auto st = settled(*server);
    EXPECT_EQ(st.faults, model_faults);
    EXPECT_GE(st.faults, m.pages() * 8 / 10);
    EXPECT_EQ(st.pages_installed, m.pages());
}

TEST(FaultServer, AlwaysModeResolvesWindowsForRandomOrder) {
    const uint64_t seed = pv::test::test_seed(12);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    auto server = make_server(options(FaultServer::FaultAround::Always, 8));
    ASSERT_TRUE(server);
    Mapping m(128);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{}).has_value());
    std::vector<uint64_t> order(m.pages());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
    bool ok = true;
    guarded([&] {
        // A page installed by an earlier window is zero until its own first write.
        for (uint64_t p : order) ok &= first_touch(m, p, static_cast<unsigned char>(p));
    });
    EXPECT_TRUE(ok);
    for (uint64_t p = 0; p < m.pages(); ++p) EXPECT_EQ(m.page(p)[0], static_cast<unsigned char>(p));
    auto st = settled(*server);
    EXPECT_LT(st.faults, m.pages());
    EXPECT_EQ(st.pages_installed, m.pages());  // windows skip resident pages: nothing installed twice
}

// ---- concurrency ---------------------------------------------------------------------------

TEST(FaultServer, TwoThreadsTouchConcurrently) {
    auto o = options(FaultServer::FaultAround::Sequential, 16);
    o.threads = 2;
    QuotaCharger quota(1 << 20);
    o.charger = quota.charger();
    auto server = make_server(std::move(o));
    ASSERT_TRUE(server);
    Mapping m(512);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{1, 1, nullptr}).has_value());
    std::atomic<bool> all_zero{true};
    guarded([&] {
        // Interleaved pages: both threads race for the same windows.
        auto touch = [&](uint64_t parity) {
            for (uint64_t i = parity; i < m.pages(); i += 2) {
                volatile unsigned char* p = m.page(i);
                if (p[8] != 0) all_zero = false;
                p[8] = static_cast<unsigned char>(0x10 + parity);
            }
        };
        std::thread a(touch, 0), b(touch, 1);
        a.join();
        b.join();
    });
    EXPECT_TRUE(all_zero.load());
    for (uint64_t i = 0; i < m.pages(); ++i) EXPECT_EQ(m.page(i)[8], 0x10 + i % 2);
    auto st = settled(*server);
    EXPECT_EQ(st.pages_installed, m.pages());
    EXPECT_EQ(st.node_pages[1], m.pages());
    ASSERT_EQ(st.ranges.size(), 1u);
    EXPECT_EQ(st.ranges[0].charged_pages, m.pages());
    EXPECT_EQ(quota.used.load(), static_cast<int64_t>(m.pages()));  // refunds balance the EEXIST races
    EXPECT_EQ(st.latency.count, st.faults);
}

// ---- page source -------------------------------------------------------------------------------

class PatternSource : public PageSource {
public:
    Status read_page(uint64_t offset, std::span<std::byte, kFaultPageSize> page) override {
        calls.fetch_add(1);
        if (fail_at && offset == *fail_at) return make_error(ErrorKind::Io, "disk on fire");
        if (delay.count() > 0) std::this_thread::sleep_for(delay);
        for (size_t i = 0; i < page.size(); ++i) page[i] = pattern(offset, i);
        return {};
    }
    static std::byte pattern(uint64_t offset, size_t i) { return std::byte(((offset >> 12) * 31 + i) & 0xff); }
    std::atomic<uint64_t> calls{0};
    std::optional<uint64_t> fail_at;
    std::chrono::milliseconds delay{0};
};

TEST(FaultServer, PageSourceFillsPages) {
    auto server = make_server(options(FaultServer::FaultAround::Sequential, 4));
    ASSERT_TRUE(server);
    PatternSource source;
    Mapping m(40);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{9, 0, &source}).has_value());
    bool ok = true;
    guarded([&] {
        for (uint64_t i = 0; i < m.pages(); ++i)
            for (size_t b = 0; b < kPage; b += 97)
                ok &= m.page(i)[b] == static_cast<unsigned char>(PatternSource::pattern(i * kPage, b));
    });
    EXPECT_TRUE(ok);
    EXPECT_EQ(source.calls.load(), m.pages());
    EXPECT_LT(settled(*server).faults, m.pages());
}

TEST(FaultServer, PageSourceErrorIsFatalAndReleasesTheThread) {
    std::promise<Error> fatal;
    auto o = options(FaultServer::FaultAround::Off);
    o.on_fatal = [&](const Error& e) { fatal.set_value(e); };
    auto server = make_server(std::move(o));
    ASSERT_TRUE(server);
    PatternSource source;
    source.fail_at = 2 * kPage;
    Mapping m(4);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{5, 0, &source}).has_value());
    guarded([&] { (void)m.page(2)[0]; });
    auto fut = fatal.get_future();
    ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
    Error e = fut.get();
    EXPECT_EQ(e.kind, ErrorKind::Io);
    EXPECT_NE(e.message.find("page source of range id 5 at offset 0x2000: disk on fire"), std::string::npos)
        << e.message;
    EXPECT_TRUE(server->stopped());
}

// ---- out of memory ------------------------------------------------------------------------------

class FaultServerOom : public ::testing::TestWithParam<FaultServer::FaultAround> {};

TEST_P(FaultServerOom, RefusalStopsWithDefinedErrorAndNoHang) {
    constexpr int64_t kQuota = 8;
    QuotaCharger quota(kQuota);
    std::atomic<int> fatal_calls{0};
    std::promise<Error> fatal;
    auto o = options(GetParam(), 16);
    o.charger = quota.charger();
    o.on_fatal = [&](const Error& e) {
        if (fatal_calls.fetch_add(1) == 0) fatal.set_value(e);
    };
    auto server = make_server(std::move(o));
    ASSERT_TRUE(server);
    Mapping m(32);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{4, 3, nullptr}).has_value());
    bool all_zero = true;
    guarded([&] {
        for (uint64_t i = 0; i < m.pages(); ++i) all_zero &= first_touch(m, i, 0x77);
    });
    EXPECT_TRUE(all_zero);  // released threads still see first-touch contents, never garbage
    auto fut = fatal.get_future();
    ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
    Error e = fut.get();
    EXPECT_EQ(e.kind, ErrorKind::GuestOutOfMemory);
    EXPECT_NE(e.message.find("guest out of memory on node 3 (range id 4"), std::string::npos) << e.message;
    EXPECT_TRUE(server->stopped());
    ASSERT_TRUE(server->fatal_error());
    EXPECT_EQ(server->fatal_error()->message, e.message);
    EXPECT_EQ(fatal_calls.load(), 1);
    auto st = settled(*server);
    EXPECT_EQ(quota.used.load(), kQuota);  // fault-around never exhausts the node before a single page would
    EXPECT_EQ(st.oom_refusals, 1u);
    EXPECT_EQ(st.ranges[0].charged_pages, static_cast<uint64_t>(kQuota));
    EXPECT_EQ(st.unaccounted_pages, m.pages() - kQuota);
    EXPECT_EQ(st.pages_installed, m.pages());
}

INSTANTIATE_TEST_SUITE_P(FaultAround, FaultServerOom,
                         ::testing::Values(FaultServer::FaultAround::Off, FaultServer::FaultAround::Sequential));

// ---- watchdog -------------------------------------------------------------------------------------

TEST(FaultServer, WatchdogReportsASlowFault) {
    std::promise<Error> stall;
    std::atomic<int> stalls{0};
    auto o = options(FaultServer::FaultAround::Off);
    o.watchdog_timeout = 40ms;
    o.on_stall = [&](const Error& e) {
        if (stalls.fetch_add(1) == 0) stall.set_value(e);
    };
    auto server = make_server(std::move(o));
    ASSERT_TRUE(server);
    PatternSource source;
    source.delay = 400ms;
    Mapping m(2);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{0, 0, &source}).has_value());
    bool ok = false;
    guarded([&] { ok = m.page(1)[5] == static_cast<unsigned char>(PatternSource::pattern(kPage, 5)); });
    EXPECT_TRUE(ok);  // reported, then resolved normally
    auto fut = stall.get_future();
    ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
    Error e = fut.get();
    EXPECT_EQ(e.kind, ErrorKind::Timeout);
    EXPECT_NE(e.message.find("unresolved after"), std::string::npos) << e.message;
    EXPECT_EQ(stalls.load(), 1);  // once per stuck fault
    EXPECT_EQ(settled(*server).stalls, 1u);
    EXPECT_FALSE(server->stopped());
}

// ---- ranges ----------------------------------------------------------------------------------------

TEST(FaultServer, UnregisterWhileIdleThenMemoryIsPlain) {
    auto server = make_server(options(FaultServer::FaultAround::Off));
    ASSERT_TRUE(server);
    Mapping m(16);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{2, 0, nullptr}).has_value());
    guarded([&] {
        for (uint64_t i = 0; i < 4; ++i) first_touch(m, i, 9);
    });
    ASSERT_TRUE(server->wait_idle(10s));
    auto st = server->unregister_range(m.addr());
    ASSERT_TRUE(st.has_value()) << st.error().to_string();
    EXPECT_EQ(st->pages, 4u);
    EXPECT_EQ(st->charged_pages, 4u);
    EXPECT_EQ(st->id, 2u);
    EXPECT_TRUE(settled(*server).ranges.empty());
    guarded([&] {
        for (uint64_t i = 0; i < m.pages(); ++i) m.page(i)[1] = 1;  // kernel-handled now
    });
    EXPECT_EQ(settled(*server).faults, 4u);
    EXPECT_EQ(m.page(0)[0], 9);
    auto again = server->unregister_range(m.addr());
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().kind, ErrorKind::Invalid);
    // The range can be registered again (touched pages stay, the rest fault).
    Mapping fresh(4);
    ASSERT_TRUE(server->register_range(fresh.addr(), fresh.size(), RangeInfo{}).has_value());
    guarded([&] { first_touch(fresh, 3, 1); });
    EXPECT_EQ(settled(*server).faults, 5u);
}

TEST(FaultServer, RegisterRejectsBadRanges) {
    auto server = make_server(options(FaultServer::FaultAround::Off));
    ASSERT_TRUE(server);
    Mapping m(8);
    auto expect_invalid = [&](mm::HostVirtAddr a, uint64_t size, RangeInfo info, const char* what) {
        auto r = server->register_range(a, size, info);
        ASSERT_FALSE(r.has_value()) << what;
        EXPECT_NE(r.error().message.find(what), std::string::npos) << r.error().message;
    };
    expect_invalid(m.addr(), 0, {}, "empty, unaligned or wrapping");
    expect_invalid(m.addr() + 1, kPage, {}, "empty, unaligned or wrapping");
    expect_invalid(m.addr(), kPage + 1, {}, "empty, unaligned or wrapping");
    expect_invalid(mm::HostVirtAddr(UINT64_MAX - kPage + 1), 2 * kPage, {}, "empty, unaligned or wrapping");
    expect_invalid(m.addr(), kPage, RangeInfo{0, FaultServer::kMaxNodes, nullptr}, "node 64");
    ASSERT_TRUE(server->register_range(m.addr() + 2 * kPage, 4 * kPage, {}).has_value());
    expect_invalid(m.addr(), 3 * kPage, {}, "overlaps");
    expect_invalid(m.addr() + 5 * kPage, 2 * kPage, {}, "overlaps");
    expect_invalid(m.addr() + 3 * kPage, kPage, {}, "overlaps");
    EXPECT_TRUE(server->register_range(m.addr(), 2 * kPage, {}).has_value());  // adjacent is fine
    // Not mapped at all.
    void* hole = ::mmap(nullptr, kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(hole, MAP_FAILED);
    ::munmap(hole, kPage);
    auto r = server->register_range(mm::host_addr(hole), kPage, {});
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::Resource);
}

TEST(FaultServer, CreateRejectsBadOptions) {
    auto o = options(FaultServer::FaultAround::Off);
    o.threads = 0;
    EXPECT_FALSE(FaultServer::create(o).has_value());
    o.threads = 1;
    o.fault_around_pages = FaultServer::kMaxFaultAround + 1;
    auto r = FaultServer::create(o);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, ErrorKind::Invalid);
    o.fault_around_pages = 16;
    o.cpus = {-5};
    EXPECT_FALSE(FaultServer::create(o).has_value());
}

TEST(FaultServer, DestroyUnregistersRemainingRanges) {
    Mapping m(4);
    {
        auto server = make_server(options(FaultServer::FaultAround::Off));
        ASSERT_TRUE(server);
        ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{}).has_value());
        guarded([&] { first_touch(m, 0, 4); });
    }
    guarded([&] { m.page(3)[0] = 1; });  // would hang if still registered with nobody serving
    EXPECT_EQ(m.page(0)[0], 4);
}

// ---- placement, busy polling, statistics ----------------------------------------------------

TEST(FaultServer, PinnedBusyPollingServer) {
    auto o = options(FaultServer::FaultAround::Off);
    o.wait = FaultServer::Wait::BusyPoll;
    o.cpus = {0};
    auto server = make_server(std::move(o));
    ASSERT_TRUE(server);
    auto st0 = settled(*server);
    EXPECT_EQ(st0.thread_cpus, std::vector<int>{0});
    EXPECT_EQ(st0.wait, FaultServer::Wait::BusyPoll);
    Mapping m(8);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{}).has_value());
    bool all_zero = true;
    guarded([&] {
        for (uint64_t i = 0; i < m.pages(); ++i) all_zero &= first_touch(m, i, 2);
    });
    EXPECT_TRUE(all_zero);
    EXPECT_EQ(settled(*server).faults, m.pages());
}

TEST(FaultServer, LatencyHistogramIsConsistent) {
    auto server = make_server(options(FaultServer::FaultAround::Off));
    ASSERT_TRUE(server);
    Mapping m(50);
    ASSERT_TRUE(server->register_range(m.addr(), m.size(), RangeInfo{}).has_value());
    guarded([&] {
        for (uint64_t i = 0; i < m.pages(); ++i) first_touch(m, i, 1);
    });
    auto h = settled(*server).latency;
    EXPECT_EQ(h.count, m.pages());
    EXPECT_GT(h.max_ns, 0u);
    EXPECT_LE(h.p50_ns(), h.p99_ns());
    EXPECT_LE(h.p99_ns(), h.max_ns);
    EXPECT_LE(h.mean_ns(), h.max_ns);
    EXPECT_GE(h.sum_ns, h.max_ns);
}

TEST(LatencyHistogram, BucketsAndQuantilesFollowTheModel) {
    const uint64_t seed = pv::test::test_seed(13);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    EXPECT_EQ(LatencyHistogram::bucket_of(0), 0u);
    EXPECT_EQ(LatencyHistogram::bucket_of(1), 0u);
    EXPECT_EQ(LatencyHistogram::bucket_of(2), 1u);
    EXPECT_EQ(LatencyHistogram::bucket_of(1023), 9u);
    EXPECT_EQ(LatencyHistogram::bucket_of(1024), 10u);
    EXPECT_EQ(LatencyHistogram::bucket_of(UINT64_MAX), 63u);
    LatencyHistogram h;
    EXPECT_EQ(h.snapshot().p50_ns(), 0u);
    std::mt19937_64 rng(seed);
    std::vector<uint64_t> samples;
    for (int i = 0; i < 1000; ++i) {
        uint64_t v = rng() >> (rng() % 64);
        samples.push_back(v);
        h.record(v);
    }
    std::sort(samples.begin(), samples.end());
    auto s = h.snapshot();
    EXPECT_EQ(s.count, samples.size());
    EXPECT_EQ(s.max_ns, samples.back());
    for (double q : {0.5, 0.9, 0.99, 1.0}) {
        uint64_t exact = samples[static_cast<size_t>(q * samples.size()) - 1];
        uint64_t approx = s.quantile_ns(q);
        EXPECT_GE(approx, exact) << q;      // bucket upper bound
        EXPECT_LE(approx / 2, exact) << q;  // within one bucket
        EXPECT_LE(approx, s.max_ns) << q;
    }
}

}  // namespace
}  // namespace pv::memory
