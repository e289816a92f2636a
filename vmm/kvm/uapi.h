// <linux/kvm.h> plus the constants newer than Debian's 6.1 UAPI headers that
// pagevisor uses. Include only from vmm/kvm/*.cpp. Anything defined here is
// guarded by #ifndef and backed by a run-time capability check.
#pragma once

#include <linux/kvm.h>

#ifndef KVM_SYSTEM_EVENT_SEV_TERM
#define KVM_SYSTEM_EVENT_SEV_TERM 6
#endif
#ifndef KVM_SYSTEM_EVENT_TDX_FATAL
#define KVM_SYSTEM_EVENT_TDX_FATAL 7  // Linux 6.16
#endif
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39  // Linux 6.8
#endif

// <linux/stddef.h>'s __DECLARE_FLEX_ARRAY wraps the array in a struct with an
// empty member, which is 1 byte in C++: sizeof(kvm_cpuid2) becomes 12 and the
// entries start at offset 12, so both the ioctl numbers and the layout are
// wrong in C++. Use this header (the C layout) and place entries after it.
struct PvKvmCpuid2Header {
    __u32 nent;
    __u32 padding;
};
static_assert(sizeof(PvKvmCpuid2Header) == 8);
#define PV_KVM_GET_SUPPORTED_CPUID _IOWR(KVMIO, 0x05, PvKvmCpuid2Header)
#define PV_KVM_SET_CPUID2 _IOW(KVMIO, 0x90, PvKvmCpuid2Header)
