#include "vmm/x86/boot.h"

#include <cstring>

#include "vmm/abi/hypercall.h"
#include "vmm/abi/layout.h"
#include "vmm/loader/elf_loader.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/x86/descriptors.h"

namespace pv::x86 {
namespace {

using mm::Perm;

Status copy_to(const memory::GuestMemory& mem, uint64_t gpa, const void* data, uint64_t size) {
    PV_TRY_ASSIGN(auto span, mem.host_span(mm::GuestPhysAddr(gpa), size));
    std::memcpy(span.data(), data, size);
    return {};
}

// Identity map; at most 2 MiB pages (1 GiB pages need CPUID pdpe1gb, not checked here).
Status map(GuestPageTable& pt, uint64_t start, uint64_t size, Perm perm, const char* what) {
    auto range = mm::GuestVirtRange::try_create(mm::GuestVirtAddr(start), size);
    if (!range) return make_error(ErrorKind::Internal, std::string("bad range for ") + what);
    auto r = pt.map_region(*range, mm::GuestPhysAddr(start), perm, mm::PageSize::Size2M);
    if (!r)
        return make_error(ErrorKind::Internal, std::string("cannot map ") + what + " at " + std::to_string(start) +
                                                   ": " + mm::error_name(r.error()));
    return {};
}

}  // namespace

Status load_image(const memory::GuestMemory& mem, const loader::Image& image) {
    for (const auto& seg : image.segments) {
        auto span = mem.host_span(mm::GuestPhysAddr(seg.vaddr.value()), seg.page_span());
        if (!span)
            return make_error(ErrorKind::GuestImage,
                              "guest image segment at " + std::to_string(seg.vaddr.value()) + " is outside guest RAM");
        std::memcpy(span->data(), seg.data.data(), seg.data.size());
        std::memset(span->data() + seg.data.size(), 0, span->size() - seg.data.size());
    }
    return {};
}

Status write_boot_structures(const memory::GuestMemory& mem, const BootConfig& config) {
    if (config.vcpus == 0 || config.vcpus > layout::kMaxVcpus)
        return make_error(ErrorKind::Usage, "vCPU count must be 1.." + std::to_string(layout::kMaxVcpus));
    abi::BootInfo info{};
    if (config.workload.size() >= sizeof info.workload)
        return make_error(ErrorKind::Usage, "workload name '" + config.workload + "' is longer than 31 bytes");
    auto gdt = guest_gdt(config.vcpus);
    PV_TRY(copy_to(mem, layout::kGdtAddr, gdt.data(), gdt.size() * sizeof(uint64_t)));
    auto idt = guest_idt();
    PV_TRY(copy_to(mem, layout::kIdtAddr, idt.data(), idt.size() * sizeof(uint64_t)));
    for (uint32_t i = 0; i < config.vcpus; ++i) {
        auto t = tss(layout::kernel_stack_top(i));
        PV_TRY(copy_to(mem, layout::tss_addr(i), t.data(), t.size()));
    }
    info.magic = abi::kBootMagic;
    info.abi_version = abi::kAbiVersion;
    info.vcpu_count = config.vcpus;
    info.ram_size = mem.size();
    info.free_ram_start = layout::kFreeRamStart;
    info.free_ram_end = mem.low_end();
    info.seed = config.seed;
    std::memcpy(info.workload, config.workload.data(), config.workload.size());
    for (size_t i = 0; i < config.params.size(); ++i) info.params[i] = config.params[i];
    info.args = config.args;
    info.tsc_khz = config.tsc_khz;
    static_assert(sizeof info.vcpu_node / sizeof info.vcpu_node[0] == layout::kMaxVcpus);
    if (config.ram.size() > abi::kMaxRamRanges)
        return make_error(ErrorKind::Usage, "guest memory has " + std::to_string(config.ram.size()) +
                                                " RAM ranges; the boot RAM map holds at most " +
                                                std::to_string(abi::kMaxRamRanges));
    info.node_count = config.node_count == 0 ? 1 : config.node_count;
    info.ram_count = static_cast<uint32_t>(config.ram.size());
    for (size_t i = 0; i < config.ram.size(); ++i) info.ram[i] = config.ram[i];
    for (size_t i = 0; i < config.vcpu_node.size() && i < layout::kMaxVcpus; ++i)
        info.vcpu_node[i] = config.vcpu_node[i];
    return copy_to(mem, layout::kBootInfoAddr, &info, sizeof info);
}

Expected<GuestPageTable> build_page_tables(TablePool& pool, const loader::Image& image, uint32_t vcpus,
                                           std::span<const abi::RamRange> ram) {
    auto created = GuestPageTable::try_create(&pool);
    if (!created) return make_error(ErrorKind::Internal, "cannot allocate the guest's root page table");
    GuestPageTable pt = *created;
    for (const auto& seg : image.segments) PV_TRY(map(pt, seg.vaddr.value(), seg.page_span(), seg.perm, "image"));
    const Perm user_rw = Perm::Read | Perm::Write | Perm::User;
    PV_TRY(map(pt, layout::kBootInfoAddr, layout::kPage, Perm::Read | Perm::User, "BootInfo"));
    PV_TRY(map(pt, layout::kHypercallPagesAddr, vcpus * layout::kPage, user_rw, "hypercall pages"));
    for (uint32_t i = 0; i < vcpus; ++i) {
        uint64_t bottom = layout::user_stack_top(i) - layout::kUserStackSize;
        PV_TRY(map(pt, bottom + layout::kPage, layout::kUserStackSize - layout::kPage, user_rw, "user stack"));
    }
    PV_TRY(map(pt, layout::kGdtAddr, 2 * layout::kPage, mm::kPermRW, "GDT/IDT"));
    uint64_t tss_end = layout::tss_addr(vcpus);
    PV_TRY(map(pt, layout::kTssArrayAddr, (tss_end - layout::kTssArrayAddr + layout::kPage - 1) & ~(layout::kPage - 1),
               mm::kPermRW, "TSS"));
    PV_TRY(map(pt, layout::kKernelStacksAddr, vcpus * layout::kKernelStackSize, mm::kPermRW, "kernel stacks"));
    PV_TRY(map(pt, layout::kDeviceWindowAddr, layout::kDeviceWindowSize, user_rw, "device window"));
    for (const auto& r : ram) {
        if (r.gpa < layout::kFreeRamStart)
            return make_error(ErrorKind::Internal, "RAM map range below the fixed structures");
        // ReadOnly ranges too are mapped writable: the guest-physical level
        // (KVM_MEM_READONLY) is what refuses a write, and the VMM reports it.
        PV_TRY(map(pt, r.gpa, r.size, user_rw, "RAM"));
    }
    return pt;
}

}  // namespace pv::x86
