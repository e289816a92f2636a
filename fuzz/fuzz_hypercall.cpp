// fuzz_hypercall: the hypercall dispatcher (vmm/hypercall/dispatcher.h) over a
// fake guest address space built from the input, then a sequence of doorbells.
//
// Input: [n_pages] then n_pages x {page-number selector u64, flags byte,
// content length byte, content}, then calls until the input ends:
// {vcpu byte, call-number selector, width byte, 6 argument selectors, flags}.
// An argument selector is a tag byte: raw u64, a small integer, or "page i +
// offset" so that pointers often land in (or next to) mapped pages.
// Properties: dispatch() never crashes and touches guest memory only through
// the fake (ASan); seq advances by exactly one per call; ret is >= 0 or a
// defined HcError; console text reaching VmServices is sanitized (printable,
// '\n', '\t' only) and no longer than kMaxConsoleWrite*4; reports have at most
// kMaxReportFields fields with valid keys; the per-vCPU statistics count every
// call on a valid vCPU and none on an invalid one; the no-work window
// (SetNoWorkWindow, sometimes without stub data: BadCall) is always off or
// starts inside the user range [kUserBase, kUserTop).
#include <map>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "vmm/hypercall/dispatcher.h"
#include "vmm/paging/mem_abi.h"

namespace {

using pv::fuzz::ByteReader;
constexpr uint64_t kPage = 0x1000;

struct PageFlags {
    bool present = true;
    bool user = true;
    bool writable = true;
};

// All-or-nothing accesses, GuestFault on any bad byte or on wrap (GuestAccess contract).
class FakeGuest final : public pv::hc::GuestAccess {
public:
    void map(uint64_t vpn, PageFlags flags, std::string_view content) {
        auto [it, inserted] = m_pages.try_emplace(vpn);
        if (!inserted) return;
        it->second.flags = flags;
        it->second.bytes.assign(kPage, std::byte{0});
        std::memcpy(it->second.bytes.data(), content.data(), std::min<size_t>(content.size(), kPage));
        m_vpns.push_back(vpn);
    }
    [[nodiscard]] const std::vector<uint64_t>& vpns() const { return m_vpns; }

    pv::Status read(mm::GuestVirtAddr gva, std::span<std::byte> out) override {
        if (!allowed(gva.value(), out.size(), false)) return pv::make_error(pv::ErrorKind::GuestFault, "read fault");
        for (size_t i = 0; i < out.size(); ++i) out[i] = *host(gva.value() + i);
        return {};
    }
    pv::Status write(mm::GuestVirtAddr gva, std::span<const std::byte> in) override {
        if (!allowed(gva.value(), in.size(), true)) return pv::make_error(pv::ErrorKind::GuestFault, "write fault");
        for (size_t i = 0; i < in.size(); ++i) *host(gva.value() + i) = in[i];
        return {};
    }

private:
    struct Page {
        PageFlags flags;
        std::vector<std::byte> bytes;
    };
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
    std::byte* host(uint64_t gva) { return &m_pages.at(gva / kPage).bytes[gva % kPage]; }

    std::map<uint64_t, Page> m_pages;
    std::vector<uint64_t> m_vpns;
};

class CheckingServices final : public pv::hc::VmServices {
public:
    void console(uint32_t vcpu, std::string_view text) override {
        PV_FUZZ_CHECK(vcpu < pv::layout::kMaxVcpus, "console from an invalid vCPU");
        PV_FUZZ_CHECK(text.size() <= pv::abi::kMaxConsoleWrite * 4, "console text longer than the limit allows");
        for (char c : text) {
            auto u = static_cast<unsigned char>(c);
            PV_FUZZ_CHECK((u >= 0x20 && u <= 0x7e) || c == '\n' || c == '\t', "unsanitized console byte");
        }
    }
    void report(uint32_t vcpu, std::span<const pv::hc::ReportValue> fields) override {
        PV_FUZZ_CHECK(vcpu < pv::layout::kMaxVcpus, "report from an invalid vCPU");
        PV_FUZZ_CHECK(fields.size() <= pv::abi::kMaxReportFields, "too many report fields");
        for (const auto& f : fields) {
            PV_FUZZ_CHECK(!f.key.empty() && f.key.size() < pv::abi::kReportKeyLen, "bad report key length");
        }
    }
};

class FuzzMemoryCalls final : public pv::hc::MemoryCalls {
public:
    int64_t call(uint32_t vcpu, pv::abi::Call nr, const uint64_t (&)[6], uint64_t& ret_aux) override {
        auto n = static_cast<uint64_t>(nr);
        PV_FUZZ_CHECK(vcpu < pv::layout::kMaxVcpus, "memory call from an invalid vCPU");
        PV_FUZZ_CHECK(n >= pv::abi::kFirstMemoryCall && n <= pv::abi::kLastMemoryCall, "non-memory call routed");
        ret_aux = n;
        return (n & 1) ? -2 : int64_t(n);
    }
};

uint64_t take_page_number(ByteReader& in) {
    uint64_t raw = in.u64();
    switch (raw & 3) {
        case 0: return (raw >> 2) & 0xff;                      // low pages: often contiguous
        case 1: return UINT64_MAX / kPage - ((raw >> 2) & 3);  // the top of the address space
        default: return raw >> 12;                             // anywhere
    }
}

uint64_t take_arg(ByteReader& in, const FakeGuest& guest) {
    uint8_t tag = in.byte();
    switch (tag % 4) {
        case 0: return in.u64();
        case 1: return tag >> 2;
        case 2: {
            if (guest.vpns().empty()) return 0;
            uint64_t vpn = guest.vpns()[(tag >> 2) % guest.vpns().size()];
            return vpn * kPage + uint64_t(in.take<uint16_t>() % (2 * kPage));
        }
        default: return uint64_t(in.take<uint16_t>()) * (tag >> 2);  // lengths, counts
    }
}

uint64_t take_call_number(ByteReader& in) {
    uint8_t tag = in.byte();
    if (tag < 0xf0) return tag % 34;  // every defined call, the reserved range, and a few past it
    return in.u64();
}

bool is_valid_ret(int64_t ret) { return ret >= 0 || (ret >= -6 && ret <= -1); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    ByteReader in(data, size);
    FakeGuest guest;
    const unsigned n_pages = in.byte() % 17;
    for (unsigned i = 0; i < n_pages; ++i) {
        uint64_t vpn = take_page_number(in);
        uint8_t f = in.byte();
        PageFlags flags{(f & 1) == 0, (f & 2) == 0, (f & 4) == 0};
        size_t len = size_t(in.byte()) * 16;
        guest.map(vpn, flags, in.bytes(len));
    }

    CheckingServices services;
    pv::hc::Dispatcher dispatcher(services);
    FuzzMemoryCalls memory_calls;
    pv::abi::HypercallPage page{};
    pv::abi::StubData stub_data{};
    uint64_t counted[pv::layout::kMaxVcpus] = {};
    for (unsigned step = 0; !in.empty() && step < 256; ++step) {
        uint32_t vcpu = in.byte() % (pv::layout::kMaxVcpus + 4);
        uint64_t nr = take_call_number(in);
        uint8_t w = in.byte();
        uint32_t width = w < 0xe0 ? 8 : w % 9;  // mostly the valid 8-byte store
        for (auto& a : page.args) a = take_arg(in, guest);
        uint8_t flags = in.byte();
        if (flags & 1) dispatcher.set_memory_calls((flags & 2) ? &memory_calls : nullptr);
        if (flags & 4) dispatcher.set_stub_data((flags & 8) ? &stub_data : nullptr);
        page.nr = nr;
        const uint64_t seq = page.seq;
        pv::hc::Outcome out = dispatcher.dispatch(vcpu, nr, width, page, guest);
        PV_FUZZ_CHECK(page.seq == seq + 1, "seq must advance exactly once per call");
        PV_FUZZ_CHECK(is_valid_ret(page.ret), "ret is neither a result nor an HcError: " + std::to_string(page.ret));
        if (out.kind != pv::hc::Outcome::Kind::Resume) PV_FUZZ_CHECK(page.ret >= 0, "stopping call failed");
        if (vcpu < pv::layout::kMaxVcpus) ++counted[vcpu];
        if (stub_data.nowork_neg_start != 0) {
            const uint64_t start = uint64_t{0} - stub_data.nowork_neg_start;
            PV_FUZZ_CHECK(start >= pv::abi::kUserBase && start < pv::abi::kUserTop,
                          "no-work window starts outside the user range");
        }
    }
    for (uint32_t v = 0; v < pv::layout::kMaxVcpus + 4; ++v) {
        uint64_t expect = v < pv::layout::kMaxVcpus ? counted[v] : 0;
        PV_FUZZ_CHECK(dispatcher.stats(v).calls == expect, "statistics miscounted calls of vCPU " + std::to_string(v));
    }
    return 0;
}
