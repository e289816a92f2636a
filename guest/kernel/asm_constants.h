// Layout/ABI constants needed by the assembly files (which cannot include the
// C++ headers). rt/layout_check.cpp static_asserts that every value here equals
// its vmm/abi/layout.h counterpart, so the two cannot drift apart.
#pragma once

#define PV_EXCEPTION_STUBS_ADDR 0x400000 /* layout::kExceptionStubsAddr */
#define PV_EXCEPTION_STUB_STRIDE 16      /* layout::kExceptionStubStride */
#define PV_EXCEPTION_VECTORS 32          /* layout::kExceptionVectors */
#define PV_EXCEPTION_PORT 0xF4           /* layout::kExceptionPort */
