// Layout/ABI constants needed by the assembly files (which cannot include the
// C++ headers). rt/entry.cpp static_asserts that every value here equals its
// vmm/abi/layout.h or vmm/abi/hypercall.h counterpart, so they cannot drift apart.
#pragma once

#define PV_EXCEPTION_STUBS_ADDR 0x400000 /* layout::kExceptionStubsAddr */
#define PV_EXCEPTION_STUB_STRIDE 16      /* layout::kExceptionStubStride */
#define PV_EXCEPTION_VECTORS 32          /* layout::kExceptionVectors */
#define PV_EXCEPTION_PORT 0xF4           /* layout::kExceptionPort */
#define PV_NOWORK_NEG_START 0x1F00       /* layout::kStubDataAddr + offsetof(abi::StubData, nowork_neg_start) */
#define PV_NOWORK_SKIP 3                 /* abi::kNoWorkSkip */
