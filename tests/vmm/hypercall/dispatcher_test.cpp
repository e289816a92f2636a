// Tests for the hypercall dispatcher over a fake guest address space: every
// call and every error, wild pointers, a guest racing on its HypercallPage,
// and a randomized model-checked fuzz run.
#include "vmm/hypercall/dispatcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "tests/support/seed.h"
#include "vmm/paging/mem_abi.h"

namespace pv::hc {
namespace {

using abi::Call;
using abi::HcError;
constexpr uint64_t kPage = 0x1000;

struct PageFlags {
    bool present = true;
    bool user = true;
    bool writable = true;
};

// A guest-virtual address space: pages of a std::vector mapped at arbitrary
// page-aligned GVAs, each with present/user/writable flags. Accesses follow the
// GuestAccess contract (all-or-nothing, GuestFault on any bad byte or on wrap).
class FakeGuestAccess : public GuestAccess {
public:
    explicit FakeGuestAccess(size_t max_pages = 64) { m_mem.reserve(max_pages * kPage); }

    void map(uint64_t gva, PageFlags flags = {}) {
        ASSERT_EQ(gva % kPage, 0u);
        ASSERT_LT(m_mem.size(), m_mem.capacity()) << "raise max_pages";
        m_pages[gva / kPage] = Page{m_mem.size(), flags};
        m_mem.resize(m_mem.size() + kPage);
    }
    void set_flags(uint64_t gva, PageFlags flags) { m_pages.at(gva / kPage).flags = flags; }
    // Writes test data regardless of flags (the page must exist).
    void poke(uint64_t gva, const void* src, size_t n) {
        const auto* s = static_cast<const std::byte*>(src);
        for (size_t i = 0; i < n; ++i) *host(gva + i) = s[i];
    }
    std::byte* host(uint64_t gva) { return &m_mem[m_pages.at(gva / kPage).index + gva % kPage]; }
    std::vector<uint64_t> mapped_pages() const {
        std::vector<uint64_t> out;
        for (const auto& [vpn, p] : m_pages) out.push_back(vpn * kPage);
        return out;
    }

    // The model: whether an access of [gva, gva+size) is allowed.
    bool allowed(uint64_t gva, uint64_t size, bool write) const {
        if (size == 0) return true;
        if (size - 1 > UINT64_MAX - gva) return false;
        for (uint64_t vpn = gva / kPage; vpn <= (gva + (size - 1)) / kPage; ++vpn) {
            auto it = m_pages.find(vpn);
            if (it == m_pages.end()) return false;
            const PageFlags& f = it->second.flags;
            if (!f.present || !f.user || (write && !f.writable)) return false;
            if (vpn == UINT64_MAX / kPage) break;
        }
        return true;
    }

    pv::Status read(mm::GuestVirtAddr gva, std::span<std::byte> out) override {
        ++reads;
        if (on_access) on_access();
        if (!allowed(gva.value(), out.size(), false)) return make_error(ErrorKind::GuestFault, "read fault");
        for (size_t i = 0; i < out.size(); ++i) out[i] = *host(gva.value() + i);
        return {};
    }
    pv::Status write(mm::GuestVirtAddr gva, std::span<const std::byte> in) override {
        ++writes;
        if (!allowed(gva.value(), in.size(), true)) return make_error(ErrorKind::GuestFault, "write fault");
        for (size_t i = 0; i < in.size(); ++i) *host(gva.value() + i) = in[i];
        return {};
    }

    int reads = 0;
    int writes = 0;
    std::function<void()> on_access;  // runs inside every read: a guest racing at the worst moment

private:
    struct Page {
        size_t index;
        PageFlags flags;
    };
    std::vector<std::byte> m_mem;
    std::map<uint64_t, Page> m_pages;
};

class RecordingServices : public VmServices {
public:
    void console(uint32_t vcpu, std::string_view text) override {
        std::lock_guard lock(m_mutex);
        console_calls.push_back({vcpu, std::string(text)});
    }
    void report(uint32_t vcpu, std::span<const ReportValue> fields) override {
        std::lock_guard lock(m_mutex);
        reports.push_back({vcpu, std::vector<ReportValue>(fields.begin(), fields.end())});
    }
    std::vector<std::pair<uint32_t, std::string>> console_calls;
    std::vector<std::pair<uint32_t, std::vector<ReportValue>>> reports;

private:
    std::mutex m_mutex;
};

class FakeMemoryCalls : public MemoryCalls {
public:
    int64_t call(uint32_t vcpu, Call nr, const uint64_t (&args)[6], uint64_t& ret_aux) override {
        last_vcpu = vcpu;
        last_nr = nr;
        std::memcpy(last_args, args, sizeof(last_args));
        ret_aux = aux;
        ++calls;
        return ret;
    }
    uint32_t last_vcpu = 0;
    Call last_nr = Call::Nop;
    uint64_t last_args[6] = {};
    int64_t ret = 0;
    uint64_t aux = 0;
    int calls = 0;
};

// Guest layout used by the tests.
constexpr uint64_t kUserA = 0x10'0000;                   // user RW
constexpr uint64_t kUserB = kUserA + kPage;              // user RW, contiguous with A
constexpr uint64_t kUserRO = kUserA + 2 * kPage;         // user read-only
constexpr uint64_t kGap = kUserA + 3 * kPage;            // unmapped, after the read-only page
constexpr uint64_t kSupervisor = 0x20'0000;              // present, not user
constexpr uint64_t kNotPresent = 0x30'0000;              // mapped but not present
constexpr uint64_t kTopPage = UINT64_MAX - (kPage - 1);  // the last page of the address space, user RW

constexpr int64_t v(HcError e) { return static_cast<int64_t>(e); }

class DispatcherTest : public ::testing::Test {
protected:
    DispatcherTest() {
        mem.map(kUserA);
        mem.map(kUserB);
        mem.map(kUserRO, {true, true, false});
        mem.map(kSupervisor, {true, false, true});
        mem.map(kNotPresent, {false, true, true});
        mem.map(kTopPage);
    }

    // Runs one hypercall on `vcpu`; returns the outcome and leaves ret in page.
    Outcome call(uint64_t nr, std::initializer_list<uint64_t> args = {}, uint32_t width = 8, uint32_t vcpu = 0) {
        size_t i = 0;
        for (uint64_t a : args) page.args[i++] = a;
        for (; i < 6; ++i) page.args[i] = 0xdead'beef'0000'0000 | i;  // garbage in unused args
        page.nr = nr;
        const uint64_t seq_before = page.seq;
        Outcome o = dispatcher.dispatch(vcpu, nr, width, page, mem);
        EXPECT_EQ(page.seq, seq_before + 1) << "seq must advance once per call";
        return o;
    }
    int64_t ret_of(uint64_t nr, std::initializer_list<uint64_t> args = {}) {
        call(nr, args);
        return page.ret;
    }
    void put_text(uint64_t gva, std::string_view s) { mem.poke(gva, s.data(), s.size()); }

    FakeGuestAccess mem;
    RecordingServices services;
    Dispatcher dispatcher{services};
    abi::HypercallPage page{};
};

abi::ReportField field(const char* key, abi::FieldType type, uint64_t bits) {
    abi::ReportField f{};
    std::memcpy(f.key, key, std::min(std::strlen(key), sizeof(f.key)));  // NUL-padded by f{}
    f.type = type;
    f.value.u64 = bits;
    return f;
}

// ---- simple calls ------------------------------------------------------------

TEST_F(DispatcherTest, NopAndVersion) {
    page.ret_aux = 77;
    EXPECT_EQ(call(uint64_t(Call::Nop)).kind, Outcome::Kind::Resume);
    EXPECT_EQ(page.ret, 0);
    EXPECT_EQ(page.ret_aux, 0u);
    EXPECT_EQ(ret_of(uint64_t(Call::Version)), int64_t(abi::kAbiVersion));
    EXPECT_EQ(mem.reads, 0);
}

TEST_F(DispatcherTest, ExitCarriesTheCode) {
    for (int64_t code : {int64_t(0), int64_t(3), int64_t(-1), int64_t(0x1'0000'0107), INT64_MIN}) {
        Outcome o = call(uint64_t(Call::Exit), {static_cast<uint64_t>(code)});
        EXPECT_EQ(o.kind, Outcome::Kind::Exit);
        EXPECT_EQ(o.exit_code, code);
    }
}

TEST_F(DispatcherTest, VcpuStop) {
    Outcome o = call(uint64_t(Call::VcpuStop), {}, 8, 5);
    EXPECT_EQ(o.kind, Outcome::Kind::VcpuStop);
    EXPECT_EQ(dispatcher.stats(5).per_call[uint64_t(Call::VcpuStop)], 1u);
}

TEST_F(DispatcherTest, UnknownNumbersAreBadCall) {
    for (uint64_t nr : {uint64_t(6), uint64_t(15), uint64_t(32), uint64_t(1000), uint64_t(INT64_MAX), UINT64_MAX}) {
        EXPECT_EQ(call(nr).kind, Outcome::Kind::Resume);
        EXPECT_EQ(page.ret, v(HcError::BadCall)) << nr;
    }
}

TEST_F(DispatcherTest, DoorbellWidthMustBe8) {
    for (uint32_t width : {0u, 1u, 2u, 4u, 16u}) {
        for (uint64_t nr : {uint64_t(Call::Exit), uint64_t(Call::ConsoleWrite), uint64_t(Call::VcpuStop)}) {
            put_text(kUserA, "hi");
            EXPECT_EQ(call(nr, {kUserA, 2}, width).kind, Outcome::Kind::Resume);
            EXPECT_EQ(page.ret, v(HcError::Invalid));
        }
    }
    EXPECT_TRUE(services.console_calls.empty());
}

TEST_F(DispatcherTest, VcpuIndexOutOfRangeIsRefused) {
    EXPECT_EQ(call(uint64_t(Call::Exit), {1}, 8, layout::kMaxVcpus).kind, Outcome::Kind::Resume);
    EXPECT_EQ(page.ret, v(HcError::Invalid));
    EXPECT_EQ(dispatcher.stats(layout::kMaxVcpus).calls, 0u);
}

TEST_F(DispatcherTest, DispatcherUsesTheDoorbellValueNotPageNr) {
    page.args[0] = 0;
    page.nr = uint64_t(Call::Exit);  // a racing guest could have changed it
    EXPECT_EQ(dispatcher.dispatch(0, uint64_t(Call::Version), 8, page, mem).kind, Outcome::Kind::Resume);
    EXPECT_EQ(page.ret, int64_t(abi::kAbiVersion));
}

TEST_F(DispatcherTest, StatisticsArePerVcpu) {
    call(uint64_t(Call::Nop), {}, 8, 0);
    call(uint64_t(Call::Nop), {}, 8, 0);
    call(99, {}, 8, 0);
    call(uint64_t(Call::Version), {}, 8, 31);
    const Dispatcher::Stats s0 = dispatcher.stats(0);
    EXPECT_EQ(s0.calls, 3u);
    EXPECT_EQ(s0.errors, 1u);
    EXPECT_EQ(s0.per_call[0], 2u);
    EXPECT_EQ(s0.per_call[1], 0u);
    const Dispatcher::Stats s31 = dispatcher.stats(31);
    EXPECT_EQ(s31.calls, 1u);
    EXPECT_EQ(s31.errors, 0u);
    EXPECT_EQ(s31.per_call[1], 1u);
    EXPECT_EQ(dispatcher.stats(1).calls, 0u);
}

// ---- memory calls -------------------------------------------------------------

TEST_F(DispatcherTest, MemoryCallsWithoutHandlerAreBadCall) {
    for (uint64_t nr = abi::kFirstMemoryCall; nr <= abi::kLastMemoryCall; ++nr)
        EXPECT_EQ(ret_of(nr, {1, 2, 3}), v(HcError::BadCall)) << nr;
}

TEST_F(DispatcherTest, MemoryCallsReachTheHandler) {
    FakeMemoryCalls handler;
    dispatcher.set_memory_calls(&handler);
    handler.ret = 0x7000;
    handler.aux = 99;
    call(uint64_t(Call::Mmap), {1, 2, 3, 4, 5, 6}, 8, 7);
    EXPECT_EQ(page.ret, 0x7000);
    EXPECT_EQ(page.ret_aux, 99u);
    EXPECT_EQ(handler.last_vcpu, 7u);
    EXPECT_EQ(handler.last_nr, Call::Mmap);
    EXPECT_EQ(handler.last_args[5], 6u);
    handler.ret = v(HcError::NoMemory);
    call(abi::kLastMemoryCall);
    EXPECT_EQ(page.ret, v(HcError::NoMemory));
    EXPECT_EQ(handler.last_nr, static_cast<Call>(abi::kLastMemoryCall));
    EXPECT_EQ(ret_of(abi::kLastMemoryCall + 1), v(HcError::BadCall));  // outside the range: not forwarded
    EXPECT_EQ(handler.calls, 2);
    dispatcher.set_memory_calls(nullptr);
    EXPECT_EQ(ret_of(uint64_t(Call::Brk)), v(HcError::BadCall));
}

// ---- SetNoWorkWindow ----------------------------------------------------------

// The stub's test: a fault at `cr2` is skipped iff cr2 + nowork_neg_start carries.
bool stub_skips(const abi::StubData& d, uint64_t cr2) { return cr2 + d.nowork_neg_start < cr2; }

TEST_F(DispatcherTest, NoWorkWindowWithoutStubDataIsBadCall) {
    EXPECT_EQ(ret_of(uint64_t(Call::SetNoWorkWindow), {abi::kUserBase}), v(HcError::BadCall));
}

TEST_F(DispatcherTest, NoWorkWindowIsWrittenToTheStubData) {
    abi::StubData data{0x1234};
    dispatcher.set_stub_data(&data);
    EXPECT_EQ(data.nowork_neg_start, 0u) << "handing the page over clears any window";
    const uint64_t start = abi::kUserTop - kPage;
    EXPECT_EQ(ret_of(uint64_t(Call::SetNoWorkWindow), {start}), 0);
    EXPECT_EQ(data.nowork_neg_start, uint64_t{0} - start);
    for (uint64_t cr2 : {uint64_t(0), uint64_t(1), abi::kUserBase, start - 1})
        EXPECT_FALSE(stub_skips(data, cr2)) << std::hex << cr2;
    for (uint64_t cr2 : {start, start + 8, abi::kUserTop, 0xFFFF'8000'0000'0000, UINT64_MAX})
        EXPECT_TRUE(stub_skips(data, cr2)) << std::hex << cr2;
    EXPECT_EQ(ret_of(uint64_t(Call::SetNoWorkWindow), {abi::kUserBase}), 0);  // the lowest allowed start
    EXPECT_TRUE(stub_skips(data, abi::kUserBase));
    EXPECT_FALSE(stub_skips(data, abi::kUserBase - 1));
    EXPECT_EQ(ret_of(uint64_t(Call::SetNoWorkWindow), {0}), 0);  // 0 clears
    EXPECT_EQ(data.nowork_neg_start, 0u);
    for (uint64_t cr2 : {uint64_t(0), abi::kUserBase, UINT64_MAX}) EXPECT_FALSE(stub_skips(data, cr2));
    EXPECT_EQ(mem.reads + mem.writes, 0) << "the call touches no guest-virtual memory";
    EXPECT_EQ(dispatcher.stats(0).per_call[uint64_t(Call::SetNoWorkWindow)], 3u);
}

// A start outside [kUserBase, kUserTop) is refused and the old window stays.
TEST_F(DispatcherTest, NoWorkWindowOutsideUserSpaceIsInvalid) {
    abi::StubData data{};
    dispatcher.set_stub_data(&data);
    const uint64_t start = abi::kMmapBase;
    ASSERT_EQ(ret_of(uint64_t(Call::SetNoWorkWindow), {start}), 0);
    for (uint64_t bad :
         {uint64_t(1), layout::kStubDataAddr, layout::kKernelStacksAddr, layout::kImageBase, layout::kFreeRamStart,
          abi::kUserBase - 1, abi::kUserTop, uint64_t(1) << 47, uint64_t(0xFFFF'8000'0000'0000), UINT64_MAX}) {
        EXPECT_EQ(ret_of(uint64_t(Call::SetNoWorkWindow), {bad}), v(HcError::Invalid)) << std::hex << bad;
        EXPECT_EQ(data.nowork_neg_start, uint64_t{0} - start);
    }
    // Whatever the guest asks, no kernel structure (all below kUserBase) is ever in the window.
    EXPECT_FALSE(stub_skips(data, layout::kStubDataAddr));
    EXPECT_FALSE(stub_skips(data, layout::kernel_stack_top(layout::kMaxVcpus - 1) - 8));
}

// ---- ConsoleWrite -------------------------------------------------------------

TEST_F(DispatcherTest, ConsoleWriteSanitizes) {
    put_text(kUserA + 10, std::string_view("hello\n\t\x1b[2J\x00\xff!", 14));
    EXPECT_EQ(ret_of(uint64_t(Call::ConsoleWrite), {kUserA + 10, 14}), 14);
    ASSERT_EQ(services.console_calls.size(), 1u);
    EXPECT_EQ(services.console_calls[0].second, "hello\n\t\\x1b[2J\\x00\\xff!");
}

TEST_F(DispatcherTest, ConsoleWriteMaxLengthAcrossPages) {
    std::string text(abi::kMaxConsoleWrite, 'x');
    text.back() = 'y';
    put_text(kUserA + 100, text);
    EXPECT_EQ(ret_of(uint64_t(Call::ConsoleWrite), {kUserA + 100, abi::kMaxConsoleWrite}),
              int64_t(abi::kMaxConsoleWrite));
    ASSERT_EQ(services.console_calls.size(), 1u);
    EXPECT_EQ(services.console_calls[0].second, text);
    // A read-only page is fine for a read.
    put_text(kUserRO, "ro");
    EXPECT_EQ(ret_of(uint64_t(Call::ConsoleWrite), {kUserRO, 2}), 2);
}

TEST_F(DispatcherTest, ConsoleWriteTooBig) {
    EXPECT_EQ(ret_of(uint64_t(Call::ConsoleWrite), {kUserA, abi::kMaxConsoleWrite + 1}), v(HcError::TooBig));
    EXPECT_EQ(ret_of(uint64_t(Call::ConsoleWrite), {kUserA, UINT64_MAX}), v(HcError::TooBig));
    EXPECT_EQ(mem.reads, 0);
}

TEST_F(DispatcherTest, ConsoleWriteEmptyDoesNothing) {
    EXPECT_EQ(ret_of(uint64_t(Call::ConsoleWrite), {0, 0}), 0);
    EXPECT_TRUE(services.console_calls.empty());
}

TEST_F(DispatcherTest, ConsoleWriteWildPointersFault) {
    const std::pair<uint64_t, uint64_t> wild[] = {
        {0, 1},                       // null
        {kGap, 1},                    // unmapped
        {kSupervisor, 8},             // supervisor page
        {kNotPresent, 8},             // not present
        {kUserRO + kPage - 4, 8},     // crosses from a mapped page into an unmapped one
        {kUserRO + kPage - 1, 2},     // same, one byte over
        {kTopPage + kPage - 4, 8},    // wraps past 2^64
        {UINT64_MAX, 2},              // wraps past 2^64
        {kSupervisor - 1, 2},         // unmapped into supervisor
        {0x8000'0000'0000'0000, 16},  // non-canonical
    };
    for (auto [gva, len] : wild) {
        EXPECT_EQ(ret_of(uint64_t(Call::ConsoleWrite), {gva, len}), v(HcError::Fault)) << std::hex << gva;
    }
    EXPECT_TRUE(services.console_calls.empty());
}

TEST_F(DispatcherTest, ConsoleWriteAtTopOfAddressSpace) {
    put_text(kTopPage + kPage - 4, "top!");
    EXPECT_EQ(ret_of(uint64_t(Call::ConsoleWrite), {kTopPage + kPage - 4, 4}), 4);  // ends exactly at 2^64
    ASSERT_EQ(services.console_calls.size(), 1u);
    EXPECT_EQ(services.console_calls[0].second, "top!");
}

// ---- Report -------------------------------------------------------------------

TEST_F(DispatcherTest, ReportDeliversValidatedFields) {
    abi::ReportField fs[3] = {field("faults", abi::FieldType::U64, 12), field("delta", abi::FieldType::I64, 0),
                              field("ratio", abi::FieldType::F64, 0)};
    fs[1].value.i64 = -5;
    fs[2].value.f64 = 0.25;
    const uint64_t gva = kUserA + kPage - 50;  // straddles A and B
    mem.poke(gva, fs, sizeof(fs));
    EXPECT_EQ(ret_of(uint64_t(Call::Report), {gva, 3}), 3);
    ASSERT_EQ(services.reports.size(), 1u);
    const auto& got = services.reports[0].second;
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].key, "faults");
    EXPECT_EQ(got[0].u64, 12u);
    EXPECT_EQ(got[1].i64, -5);
    EXPECT_EQ(got[2].type, abi::FieldType::F64);
    EXPECT_EQ(got[2].f64, 0.25);
}

TEST_F(DispatcherTest, ReportLimits) {
    std::vector<abi::ReportField> fs(abi::kMaxReportFields, field("k", abi::FieldType::U64, 1));
    ASSERT_LE(fs.size() * sizeof(abi::ReportField), 2 * kPage);
    mem.poke(kUserA, fs.data(), fs.size() * sizeof(abi::ReportField));
    EXPECT_EQ(ret_of(uint64_t(Call::Report), {kUserA, abi::kMaxReportFields}), int64_t(abi::kMaxReportFields));
    EXPECT_EQ(ret_of(uint64_t(Call::Report), {kUserA, abi::kMaxReportFields + 1}), v(HcError::TooBig));
    EXPECT_EQ(ret_of(uint64_t(Call::Report), {kUserA, UINT64_MAX}), v(HcError::TooBig));
    EXPECT_EQ(ret_of(uint64_t(Call::Report), {0, 0}), 0);
    EXPECT_EQ(services.reports.size(), 1u);
}

TEST_F(DispatcherTest, ReportBadFieldsAreInvalidAndNothingIsReported) {
    abi::ReportField good = field("ok", abi::FieldType::U64, 1);
    std::vector<abi::ReportField> bad;
    bad.push_back(field("", abi::FieldType::U64, 1));
    bad.push_back(field("sp ace", abi::FieldType::U64, 1));
    bad.push_back(field("k", static_cast<abi::FieldType>(9), 1));
    abi::ReportField reserved = good;
    reserved.reserved = 3;
    bad.push_back(reserved);
    abi::ReportField unterminated = good;
    std::memset(unterminated.key, 'a', sizeof(unterminated.key));
    bad.push_back(unterminated);
    for (const auto& b : bad) {
        abi::ReportField fs[2] = {good, b};
        mem.poke(kUserA, fs, sizeof(fs));
        EXPECT_EQ(ret_of(uint64_t(Call::Report), {kUserA, 2}), v(HcError::Invalid));
    }
    EXPECT_TRUE(services.reports.empty());
}

TEST_F(DispatcherTest, ReportWildPointersFault) {
    abi::ReportField f = field("k", abi::FieldType::U64, 1);
    mem.poke(kUserRO + kPage - sizeof(f), &f, sizeof(f));
    EXPECT_EQ(ret_of(uint64_t(Call::Report), {kUserRO + kPage - sizeof(f), 1}), 1);  // ends at the gap: fine
    EXPECT_EQ(ret_of(uint64_t(Call::Report), {kUserRO + kPage - sizeof(f), 2}), v(HcError::Fault));
    EXPECT_EQ(ret_of(uint64_t(Call::Report), {0, 1}), v(HcError::Fault));
    EXPECT_EQ(ret_of(uint64_t(Call::Report), {kSupervisor, 1}), v(HcError::Fault));
    EXPECT_EQ(ret_of(uint64_t(Call::Report), {UINT64_MAX - 39, 2}), v(HcError::Fault));
    EXPECT_EQ(ret_of(uint64_t(Call::Report), {UINT64_MAX - 38, 1}), v(HcError::Fault));
    EXPECT_EQ(services.reports.size(), 1u);
}

// ---- a guest racing on its HypercallPage ---------------------------------------

// A second thread flips args between valid requests and invalid ones while the
// dispatcher runs. Every call must end in one of the outcomes of a consistent
// snapshot, and what is delivered must match the length that was validated
// (were a length re-read after its check, ASan would see the buffer overflow).
TEST_F(DispatcherTest, ConcurrentPageMutationIsSafe) {
    const std::string filler(2 * kPage, 'a');
    put_text(kUserA, filler);  // A and B: printable, so sanitized length == raw length
    const std::string key(abi::kReportKeyLen - 1, 'k');
    abi::ReportField f = field(key.c_str(), abi::FieldType::U64, 1);
    mem.poke(kUserRO, &f, sizeof(f));
    std::atomic<bool> stop{false};
    std::thread guest([&] {
        uint64_t i = 0;
        while (!stop.load(std::memory_order_relaxed)) {
            ++i;
            const uint64_t ptr = (i & 1) ? kGap : ((i & 4) ? kUserRO : kUserA);
            const uint64_t len = (i & 2) ? ((i & 16) ? 5000 : 1000) : ((i & 8) ? 1 : 5);
            std::atomic_ref<uint64_t>(page.args[0]).store(ptr, std::memory_order_relaxed);
            std::atomic_ref<uint64_t>(page.args[1]).store(len, std::memory_order_relaxed);
            std::atomic_ref<int64_t>(page.ret).store(-999, std::memory_order_relaxed);
        }
    });
    struct Joiner {
        std::atomic<bool>& stop;
        std::thread& t;
        ~Joiner() {
            stop = true;
            t.join();
        }
    } joiner{stop, guest};
    constexpr int kCalls = 20000;
    for (int n = 0; n < kCalls; ++n) {
        const uint64_t nr = (n & 1) ? uint64_t(Call::ConsoleWrite) : uint64_t(Call::Report);
        const size_t consoles = services.console_calls.size();
        const size_t reports = services.reports.size();
        Outcome o = dispatcher.dispatch(0, nr, 8, page, mem);
        ASSERT_EQ(o.kind, Outcome::Kind::Resume);
        if (services.console_calls.size() > consoles) {
            const std::string& text = services.console_calls.back().second;
            // The guest memory used holds no backslash, so each "\xNN" escape stands for one raw byte.
            size_t raw = 0;
            for (size_t i = 0; i < text.size(); i += text[i] == '\\' ? 4 : 1) ++raw;
            ASSERT_TRUE(raw == 1 || raw == 5 || raw == 1000) << raw;
        }
        if (services.reports.size() > reports) {
            ASSERT_EQ(services.reports.back().second.size(), 1u);
            ASSERT_EQ(services.reports.back().second[0].key, key);
        }
    }
    EXPECT_EQ(dispatcher.stats(0).calls, uint64_t(kCalls));
}

// The worst-timed race, made deterministic: the page changes while the VMM is
// copying guest memory. The call must complete with the values it validated.
TEST_F(DispatcherTest, PageChangedDuringCopyDoesNotAffectTheCall) {
    put_text(kUserA, "abcdef");
    mem.on_access = [&] {
        page.args[0] = kGap;
        page.args[1] = 100000;
    };
    page.args[0] = kUserA;
    page.args[1] = 3;
    dispatcher.dispatch(0, uint64_t(Call::ConsoleWrite), 8, page, mem);
    EXPECT_EQ(page.ret, 3);
    ASSERT_EQ(services.console_calls.size(), 1u);
    EXPECT_EQ(services.console_calls[0].second, "abc");

    abi::ReportField f = field("k", abi::FieldType::I64, 9);
    mem.poke(kUserB, &f, sizeof(f));
    page.args[0] = kUserB;
    page.args[1] = 1;
    dispatcher.dispatch(0, uint64_t(Call::Report), 8, page, mem);
    EXPECT_EQ(page.ret, 1);
    ASSERT_EQ(services.reports.size(), 1u);
    ASSERT_EQ(services.reports[0].second.size(), 1u);
    EXPECT_EQ(services.reports[0].second[0].i64, 9);
}

// "v<index>" (built with += : GCC 12 -O3 warns falsely about "literal" + std::string).
std::string vcpu_text(uint32_t vcpu) {
    std::string s = "v";
    s += std::to_string(vcpu);
    return s;
}

// Several vCPU threads share one Dispatcher (the VMM's threading model): each
// thread's results and statistics are its own.
TEST(DispatcherThreads, ParallelVcpusKeepSeparateState) {
    RecordingServices services;
    Dispatcher dispatcher(services);
    constexpr uint32_t kThreads = 4;
    constexpr int kCalls = 2000;
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (uint32_t t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            FakeGuestAccess mem(1);
            mem.map(kUserA);
            const std::string text = vcpu_text(t);
            mem.poke(kUserA, text.data(), text.size());
            abi::HypercallPage page{};
            for (int n = 0; n < kCalls; ++n) {
                page.args[0] = kUserA;
                page.args[1] = text.size();
                const uint64_t nr =
                    n % 3 == 0 ? uint64_t(Call::ConsoleWrite) : (n % 3 == 1 ? 1000 : uint64_t(Call::Nop));
                dispatcher.dispatch(t, nr, 8, page, mem);
                const int64_t want = n % 3 == 0 ? int64_t(text.size()) : (n % 3 == 1 ? v(HcError::BadCall) : 0);
                if (page.ret != want || page.seq != uint64_t(n + 1)) ++failures;
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
    size_t per_vcpu[kThreads] = {};
    for (const auto& [vcpu, text] : services.console_calls) {
        ASSERT_LT(vcpu, kThreads);
        EXPECT_EQ(text, vcpu_text(vcpu));
        ++per_vcpu[vcpu];
    }
    for (uint32_t t = 0; t < kThreads; ++t) {
        const Dispatcher::Stats s = dispatcher.stats(t);
        EXPECT_EQ(s.calls, uint64_t(kCalls));
        EXPECT_EQ(s.errors, uint64_t((kCalls + 1) / 3));
        EXPECT_EQ(s.per_call[uint64_t(Call::ConsoleWrite)], per_vcpu[t]);
        EXPECT_EQ(per_vcpu[t], size_t((kCalls + 2) / 3));
    }
}

// ---- randomized fuzz ----------------------------------------------------------

struct FuzzState {
    std::mt19937_64 rng;
    std::vector<uint64_t> pages;

    uint64_t pick(std::initializer_list<uint64_t> options) { return options.begin()[rng() % options.size()]; }
    uint64_t pointer() {
        switch (rng() % 5) {
            case 0: return pages[rng() % pages.size()] + rng() % kPage;
            case 1: return pages[rng() % pages.size()] + kPage - rng() % 64;
            case 2: return pick({0, kGap, kSupervisor, kNotPresent, UINT64_MAX, UINT64_MAX - 100, kTopPage});
            default: return rng();
        }
    }
    uint64_t length() { return pick({0, 1, 2, 40, 80, 128, 129, 4095, 4096, 4097, rng() % 5200, UINT64_MAX, rng()}); }
};

// The model of one call: the expected ret given the fake's current state.
int64_t expected_ret(uint64_t nr, const uint64_t (&a)[6], FakeGuestAccess& mem, FakeMemoryCalls* handler) {
    switch (nr) {
        case uint64_t(Call::Nop):
        case uint64_t(Call::Exit):
        case uint64_t(Call::VcpuStop): return 0;
        case uint64_t(Call::Version): return abi::kAbiVersion;
        case uint64_t(Call::ConsoleWrite):
            if (a[1] > abi::kMaxConsoleWrite) return v(HcError::TooBig);
            return mem.allowed(a[0], a[1], false) ? int64_t(a[1]) : v(HcError::Fault);
        case uint64_t(Call::Report): {
            if (a[1] > abi::kMaxReportFields) return v(HcError::TooBig);
            if (!mem.allowed(a[0], a[1] * sizeof(abi::ReportField), false)) return v(HcError::Fault);
            std::vector<abi::ReportField> fs(a[1]);
            EXPECT_TRUE(mem.read(mm::GuestVirtAddr(a[0]), std::as_writable_bytes(std::span(fs))).has_value());
            return decode_report(fs).has_value() ? int64_t(a[1]) : v(HcError::Invalid);
        }
        default:
            if (nr >= abi::kFirstMemoryCall && nr <= abi::kLastMemoryCall)
                return handler != nullptr ? handler->ret : v(HcError::BadCall);
            return v(HcError::BadCall);
    }
}

TEST_F(DispatcherTest, RandomizedFuzzMatchesModel) {
    const uint64_t seed = pv::test::test_seed(0xD15);
    SCOPED_TRACE(pv::test::seed_trace(seed));
    FuzzState st{std::mt19937_64(seed), mem.mapped_pages()};
    FakeMemoryCalls handler;
    // Some pages hold valid report fields so Report sometimes succeeds.
    for (uint64_t p : {kUserA, kUserB}) {
        for (uint64_t off = 0; off + sizeof(abi::ReportField) <= kPage; off += sizeof(abi::ReportField)) {
            abi::ReportField f = field("key.x", abi::FieldType::F64, st.rng());
            mem.poke(p + off, &f, sizeof(f));
        }
    }
    uint64_t expected_calls[layout::kMaxVcpus] = {};
    constexpr int kIterations = 20000;
    for (int i = 0; i < kIterations; ++i) {
        if (st.rng() % 50 == 0) {  // flip a page's flags or scribble on it
            const uint64_t p = st.pages[st.rng() % st.pages.size()];
            mem.set_flags(p, PageFlags{st.rng() % 4 != 0, st.rng() % 4 != 0, st.rng() % 2 != 0});
            if (st.rng() % 2) *mem.host(p + st.rng() % kPage) = std::byte(static_cast<uint8_t>(st.rng()));
        }
        FakeMemoryCalls* active = st.rng() % 2 ? &handler : nullptr;
        dispatcher.set_memory_calls(active);
        handler.ret = static_cast<int64_t>(st.pick({0, 1, 0x4000'0000, uint64_t(v(HcError::NoMemory))}));
        const uint64_t nr = st.rng() % 8 == 0 ? st.rng() : st.rng() % 40;
        uint64_t a[6];
        a[0] = st.pointer();
        a[1] = st.length();
        for (size_t k = 2; k < 6; ++k) a[k] = st.rng();
        std::memcpy(page.args, a, sizeof(a));
        const uint32_t width = st.rng() % 10 == 0 ? static_cast<uint32_t>(st.pick({0, 1, 2, 4, 16})) : 8;
        const uint32_t vcpu = static_cast<uint32_t>(st.rng() % layout::kMaxVcpus);
        const uint64_t seq = page.seq;
        Outcome o = dispatcher.dispatch(vcpu, nr, width, page, mem);
        ++expected_calls[vcpu];
        ASSERT_EQ(page.seq, seq + 1);
        ASSERT_TRUE(page.ret >= 0 || (page.ret >= v(HcError::TooBig) && page.ret <= v(HcError::BadCall))) << page.ret;
        if (width != 8) {
            ASSERT_EQ(page.ret, v(HcError::Invalid));
            ASSERT_EQ(o.kind, Outcome::Kind::Resume);
            continue;
        }
        ASSERT_EQ(page.ret, expected_ret(nr, a, mem, active)) << "nr " << nr;
        ASSERT_EQ(o.kind == Outcome::Kind::Exit, nr == uint64_t(Call::Exit));
        ASSERT_EQ(o.kind == Outcome::Kind::VcpuStop, nr == uint64_t(Call::VcpuStop));
    }
    for (uint32_t c = 0; c < layout::kMaxVcpus; ++c) EXPECT_EQ(dispatcher.stats(c).calls, expected_calls[c]);
}

}  // namespace
}  // namespace pv::hc
