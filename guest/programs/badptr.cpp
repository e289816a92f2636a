// badptr: hypercalls with wild pointers, lengths and malformed reports. Every
// case must be rejected with the HcError the ABI specifies (and valid calls
// must still work); one line per case, a report with the totals, exit 0 iff
// every case matched. The wild addresses rely on the layout: page 0 and the
// GDT are supervisor/unmapped, the page after the image and the page above a
// vCPU's stack top (the next stack's guard page) are unmapped, and the device
// window has page-table entries but no RAM.
#include "guest/programs/programs.h"
#include "guest/rt/console.h"
#include "guest/rt/format.h"
#include "guest/rt/report.h"
#include "guest/rt/runtime.h"
#include "vmm/abi/layout.h"

namespace pv::guest {

namespace {

using abi::HcError;

struct Tally {
    uint64_t cases = 0;
    uint64_t failures = 0;

    void check(const char* what, int64_t got, int64_t expected) {
        ++cases;
        const bool ok = got == expected;
        if (!ok) ++failures;
        char got_text[24];
        char want_text[24];
        printf("badptr: %-44s -> %-8s %s (expected %s)\n", what, describe(got, got_text), ok ? "ok  " : "FAIL",
               describe(expected, want_text));
    }
    // The HcError name of a negative result, the number of a successful one.
    static const char* describe(int64_t ret, char (&buf)[24]) {
        if (ret < 0) return hc_error_name(ret);
        fmt::format_to(buf, sizeof(buf), "%ld", ret);
        return buf;
    }
    void check(const char* what, int64_t got, HcError expected) { check(what, got, hc_code(expected)); }
};

uint64_t addr(const void* p) { return reinterpret_cast<uint64_t>(p); }

char g_big_text[abi::kMaxConsoleWrite + 1];
abi::ReportField g_fields[abi::kMaxReportFields + 1];

void console_cases(Tally& t) {
    const uint64_t stack_top = layout::user_stack_top(current_vcpu());
    const uint64_t image_end = addr(pv_image_end);
    struct Wild {
        const char* what;
        uint64_t gva;
        uint64_t len;
        HcError expected;
    };
    const Wild cases[] = {
        {"console: null pointer", 0, 16, HcError::Fault},
        {"console: GDT page (supervisor)", layout::kGdtAddr, 16, HcError::Fault},
        {"console: kernel text (supervisor)", layout::kExceptionStubsAddr, 16, HcError::Fault},
        {"console: unmapped 0x7000'0000'0000", 0x7000'0000'0000ULL, 16, HcError::Fault},
        {"console: non-canonical 0x8000'0000'0000'0000", 0x8000'0000'0000'0000ULL, 16, HcError::Fault},
        {"console: device window (no RAM)", layout::kDeviceWindowAddr, 8, HcError::Fault},
        {"console: runs off the image end", image_end - 8, 16, HcError::Fault},
        {"console: runs off the stack top", stack_top - 8, 16, HcError::Fault},
        {"console: pointer near 2^64 (wraps)", UINT64_MAX - 7, 16, HcError::Fault},
        {"console: len 2^64-1", addr(g_big_text), UINT64_MAX, HcError::TooBig},
        {"console: len kMaxConsoleWrite+1", addr(g_big_text), abi::kMaxConsoleWrite + 1, HcError::TooBig},
    };
    for (const Wild& c : cases) t.check(c.what, hypercall(abi::Call::ConsoleWrite, c.gva, c.len), c.expected);

    static const char kValid[] = "badptr: (a valid console write)\n";
    const uint64_t n = sizeof(kValid) - 1;
    t.check("console: valid write", hypercall(abi::Call::ConsoleWrite, addr(kValid), n), int64_t(n));
}

void set_key(abi::ReportField& f, const char* key) {
    for (uint64_t i = 0; i < abi::kReportKeyLen; ++i) f.key[i] = '\0';
    for (uint64_t i = 0; key[i] != '\0' && i < abi::kReportKeyLen; ++i) f.key[i] = key[i];
}

abi::ReportField valid_field() {
    abi::ReportField f{};
    set_key(f, "badptr.probe");
    f.type = abi::FieldType::U64;
    f.reserved = 0;
    f.value.u64 = 1;
    return f;
}

int64_t report_one(const abi::ReportField& f) {
    g_fields[0] = f;
    return hypercall(abi::Call::Report, addr(&g_fields[0]), 1);
}

void report_pointer_cases(Tally& t) {
    for (abi::ReportField& f : g_fields) f = valid_field();
    t.check("report: null pointer", hypercall(abi::Call::Report, 0, 1), HcError::Fault);
    t.check("report: GDT page (supervisor)", hypercall(abi::Call::Report, layout::kGdtAddr, 1), HcError::Fault);
    t.check("report: pointer near 2^64 (wraps)", hypercall(abi::Call::Report, UINT64_MAX - 39, 1), HcError::Fault);
    t.check("report: count kMaxReportFields+1", hypercall(abi::Call::Report, addr(g_fields), abi::kMaxReportFields + 1),
            HcError::TooBig);
    t.check("report: count 2^64-1", hypercall(abi::Call::Report, addr(g_fields), UINT64_MAX), HcError::TooBig);

    // The last field of the image (in pv_tail_page, its last page) is valid; the
    // second one lies in the unmapped page after it.
    auto* tail = reinterpret_cast<abi::ReportField*>(pv_tail_page + layout::kPage - sizeof(abi::ReportField));
    *tail = valid_field();
    t.check("report: runs off the image end", hypercall(abi::Call::Report, addr(tail), 2), HcError::Fault);
}

void report_field_cases(Tally& t) {
    abi::ReportField f = valid_field();
    set_key(f, "");
    t.check("report: empty key", report_one(f), HcError::Invalid);

    f = valid_field();
    for (char& c : f.key) c = 'a';
    t.check("report: key without NUL", report_one(f), HcError::Invalid);

    f = valid_field();
    set_key(f, "bad key!");
    t.check("report: key with bad characters", report_one(f), HcError::Invalid);

    f = valid_field();
    f.type = static_cast<abi::FieldType>(0);
    t.check("report: type 0", report_one(f), HcError::Invalid);
    f.type = static_cast<abi::FieldType>(4);
    t.check("report: type 4", report_one(f), HcError::Invalid);

    f = valid_field();
    f.reserved = 1;
    t.check("report: reserved != 0", report_one(f), HcError::Invalid);

    g_fields[0] = valid_field();
    g_fields[1] = valid_field();
    set_key(g_fields[1], "");
    t.check("report: second of two fields bad", hypercall(abi::Call::Report, addr(g_fields), 2), HcError::Invalid);
}

void call_number_cases(Tally& t) {
    t.check("call: Nop", hypercall(abi::Call::Nop), 0);
    t.check("call: Version", hypercall(abi::Call::Version), int64_t(abi::kAbiVersion));
    t.check("call: number 7 (undefined)", hypercall_raw(7), HcError::BadCall);
    t.check("SetFaultHandler: non-canonical handler", hypercall(abi::Call::SetFaultHandler, 1ULL << 47),
            HcError::Invalid);
    t.check("call: number 15 (undefined)", hypercall_raw(15), HcError::BadCall);
    t.check("call: number 32 (undefined)", hypercall_raw(32), HcError::BadCall);
    t.check("call: number 2^63", hypercall_raw(1ULL << 63), HcError::BadCall);
    t.check("call: number 2^64-1", hypercall_raw(UINT64_MAX), HcError::BadCall);
}

}  // namespace

int64_t run_badptr(uint32_t vcpu, const abi::BootInfo&) {
    if (vcpu != 0) vcpu_stop();
    for (char& c : g_big_text) c = '.';
    Tally t;
    console_cases(t);
    report_pointer_cases(t);
    report_field_cases(t);
    call_number_cases(t);

    Report<2> report;
    report.add_u64("badptr.cases", t.cases);
    report.add_u64("badptr.failures", t.failures);
    if (int64_t r = report.send(); r != 2) {
        printf("badptr: the final report was rejected (%s)\n", hc_error_name(r));
        return 1;
    }
    printf("badptr: %lu cases, %lu failures\n", t.cases, t.failures);
    return t.failures == 0 ? 0 : 1;
}

}  // namespace pv::guest
