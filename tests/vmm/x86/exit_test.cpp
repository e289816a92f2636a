// Exit decoding is a pure function: every exit kind, without KVM.
#include <gtest/gtest.h>

#include <cstring>

#include "vmm/abi/layout.h"
#include "vmm/x86/exit.h"

namespace pv::x86 {
namespace {

using kvm::ExitReason;
using kvm::ExitState;
using Kind = ExitAction::Kind;

ExitState mmio(uint64_t gpa, uint32_t len, bool write, uint64_t value = 0) {
    ExitState s;
    s.reason = ExitReason::Mmio;
    s.mmio.gpa = gpa;
    s.mmio.len = len;
    s.mmio.is_write = write;
    std::memcpy(s.mmio.data.data(), &value, sizeof value);
    return s;
}

ExitState io(uint16_t port, bool out, uint8_t size = 1) {
    ExitState s;
    s.reason = ExitReason::Io;
    s.io.port = port;
    s.io.is_out = out;
    s.io.size = size;
    s.io.count = 1;
    return s;
}

kvm::Regs regs_with_rip(uint64_t rip) {
    kvm::Regs r;
    r.rip = rip;
    r.rax = 0xAA;
    r.rflags = 0x202;
    return r;
}

TEST(Exit, DoorbellStoreIsAHypercall) {
    ExitAction a = decode_exit(mmio(layout::kDoorbellAddr, 8, true, 0x1234'5678'9ABC'DEF0ULL));
    EXPECT_EQ(a.kind, Kind::Hypercall);
    EXPECT_EQ(a.value, 0x1234'5678'9ABC'DEF0ULL);
    EXPECT_EQ(a.len, 8u);
}

TEST(Exit, OtherDoorbellAccessesAreUnmappedGpa) {
    for (auto s : {mmio(layout::kDoorbellAddr, 4, true), mmio(layout::kDoorbellAddr, 8, false),
                   mmio(layout::kDoorbellAddr + 8, 8, true), mmio(layout::kDeviceWindowAddr + 0x8000, 8, false)}) {
        ExitAction a = decode_exit(s);
        EXPECT_EQ(a.kind, Kind::Stop);
        EXPECT_EQ(a.error_kind, ErrorKind::GuestFault);
        EXPECT_TRUE(a.with_rip);
        EXPECT_TRUE(a.with_registers);
    }
}

TEST(Exit, UnmappedGpaMessageHasRipAndRegisters) {
    ExitAction a = decode_exit(mmio(0xd000'8000, 8, false));
    std::string m = stop_message(a, 1, regs_with_rip(0x60'27fd));
    EXPECT_EQ(m.rfind("guest accessed unmapped GPA 0xd0008000 (read, 8 bytes) at RIP 0x6027fd (vCPU 1); registers: "
                      "rax=0xaa ",
                      0),
              0u)
        << m;
    EXPECT_NE(m.find("rflags=0x202"), std::string::npos);
    EXPECT_EQ(m.find('\n'), std::string::npos);
    // Without registers (KVM_GET_REGS failed) the message is still complete.
    EXPECT_EQ(stop_message(a, 0, std::nullopt), "guest accessed unmapped GPA 0xd0008000 (read, 8 bytes) (vCPU 0)");
}

TEST(Exit, ExceptionPortOutIsAGuestException) {
    EXPECT_EQ(decode_exit(io(layout::kExceptionPort, true)).kind, Kind::GuestException);
}

TEST(Exit, OtherPortIoIsAnError) {
    for (auto s : {io(0x3f8, true), io(layout::kExceptionPort, false), io(0x80, true, 4)}) {
        ExitAction a = decode_exit(s);
        ASSERT_EQ(a.kind, Kind::Stop);
        EXPECT_EQ(a.error_kind, ErrorKind::GuestFault);
    }
    ExitAction a = decode_exit(io(0x3f8, true));
    EXPECT_EQ(stop_message(a, 0, regs_with_rip(0x401000)),
              "guest did port I/O (out, 1 bytes) to 0x3f8 at RIP 0x401000 (vCPU 0)");
}

TEST(Exit, ShutdownIsATripleFault) {
    ExitState s;
    s.reason = ExitReason::Shutdown;
    ExitAction a = decode_exit(s);
    ASSERT_EQ(a.kind, Kind::Stop);
    EXPECT_EQ(a.error_kind, ErrorKind::GuestFault);
    EXPECT_EQ(
        stop_message(a, 0, regs_with_rip(0x400010)).rfind("guest triple fault (shutdown) at RIP 0x400010 (vCPU 0)", 0),
        0u);
}

TEST(Exit, FailEntryNamesTheHardwareReason) {
    ExitState s;
    s.reason = ExitReason::FailEntry;
    s.fail_entry_reason = 0x80000021;
    ExitAction a = decode_exit(s);
    ASSERT_EQ(a.kind, Kind::Stop);
    EXPECT_EQ(a.error_kind, ErrorKind::Kvm);
    EXPECT_EQ(stop_message(a, 2, std::nullopt),
              "KVM could not enter the guest (hardware entry failure reason 0x80000021) (vCPU 2)");
}

TEST(Exit, InternalErrorNamesTheSuberror) {
    ExitState s;
    s.reason = ExitReason::InternalError;
    s.internal_suberror = 1;
    ExitAction a = decode_exit(s);
    ASSERT_EQ(a.kind, Kind::Stop);
    EXPECT_EQ(a.error_kind, ErrorKind::Kvm);
    EXPECT_NE(a.message.find("suberror 1: emulation failure"), std::string::npos);
}

TEST(Exit, SystemEvent) {
    ExitState s;
    s.reason = ExitReason::SystemEvent;
    s.system_event_type = 2;
    ExitAction a = decode_exit(s);
    ASSERT_EQ(a.kind, Kind::Stop);
    EXPECT_EQ(a.message, "guest raised system event reset");
    s.system_event_type = 99;
    EXPECT_EQ(decode_exit(s).message, "guest raised system event type 99");
}

TEST(Exit, HltStops) {
    ExitState s;
    s.reason = ExitReason::Hlt;
    ExitAction a = decode_exit(s);
    ASSERT_EQ(a.kind, Kind::Stop);
    EXPECT_EQ(a.error_kind, ErrorKind::GuestFault);
    EXPECT_NE(a.message.find("HLT"), std::string::npos);
}

TEST(Exit, InterruptedAsksTheLoopToCheck) {
    ExitState s;
    s.reason = ExitReason::Interrupted;
    EXPECT_EQ(decode_exit(s).kind, Kind::Interrupted);
}

TEST(Exit, UnknownReasonIsInternal) {
    ExitState s;
    s.reason = ExitReason::Unknown;
    s.raw_reason = 77;
    ExitAction a = decode_exit(s);
    ASSERT_EQ(a.kind, Kind::Stop);
    EXPECT_EQ(a.error_kind, ErrorKind::Internal);
    EXPECT_NE(a.message.find("77"), std::string::npos);
}

TEST(Exception, PageFaultHasAddressAndErrorCode) {
    abi::ExceptionFrame f{};
    f.vector = 14;
    f.cr2 = 0;
    f.error_code = 4;
    f.rip = 0x60282a;
    EXPECT_EQ(describe_exception(f, 0),
              "guest exception #PF (page fault) at RIP 0x60282a, address 0x0, error code 0x4 (vCPU 0)");
}

TEST(Exception, NamesAndErrorCodes) {
    abi::ExceptionFrame f{};
    f.vector = 6;
    f.rip = 0x1000;
    EXPECT_EQ(describe_exception(f, 3), "guest exception #UD (invalid opcode) at RIP 0x1000 (vCPU 3)");
    f.vector = 13;
    f.error_code = 0x18;
    EXPECT_EQ(describe_exception(f, 0),
              "guest exception #GP (general protection) at RIP 0x1000, error code 0x18 (vCPU 0)");
    // A vector the stubs never produce (the frame is guest memory): still a clean message.
    f.vector = 0xFFFF'FFFF'FFFF'FFFFULL;
    EXPECT_EQ(describe_exception(f, 0), "guest exception vector 18446744073709551615 at RIP 0x1000 (vCPU 0)");
    EXPECT_EQ(exception_name(0), "#DE (divide error)");
    EXPECT_EQ(exception_name(31), "vector 31");
}

}  // namespace
}  // namespace pv::x86
