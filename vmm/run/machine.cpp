// Machine creation and boot (the vCPU threads are in vcpu_loop.cpp).
#include "vmm/run/machine.h"

#include <cstring>

#include "vmm/abi/layout.h"
#include "vmm/x86/boot.h"
#include "vmm/x86/descriptors.h"
#include "vmm/x86/vcpu_state.h"

namespace pv::run {
namespace {

Status validate(const RunConfig& c) {
    if (c.vcpus == 0 || c.vcpus > layout::kMaxVcpus)
        return make_error(ErrorKind::Usage, "--vcpus must be between 1 and " + std::to_string(layout::kMaxVcpus) +
                                                " (got " + std::to_string(c.vcpus) + ")");
    if (c.memory_config.zones.empty() && (c.memory < layout::kMinRamSize || c.memory % layout::kPage != 0))
        return make_error(ErrorKind::Usage, "guest memory must be a multiple of 4 KiB and at least 48 MiB");
    if (c.timeout.count() <= 0) return make_error(ErrorKind::Usage, "--timeout must be positive");
    if (c.workload.size() >= sizeof(abi::BootInfo::workload))
        return make_error(ErrorKind::Usage, "workload name '" + c.workload + "' is longer than 31 characters");
    return {};
}

}  // namespace

Machine::Machine(const RunConfig& config, kvm::Kvm kvm, loader::Image image, std::unique_ptr<MemorySystem> memsys)
    : m_config(config),
      m_kvm(std::move(kvm)),
      m_image(std::move(image)),
      m_memsys(std::move(memsys)),
      m_mem(m_memsys->mem()),
      m_per_vcpu(std::make_unique<PerVcpu[]>(config.vcpus)),
      m_services(config.vcpus, config.console_sink),
      m_dispatcher(m_services) {}

Machine::~Machine() {
    if (!m_threads.empty()) {
        stop_vm(std::nullopt, make_error(ErrorKind::Internal, "VM destroyed while running").error);
        for (auto& t : m_threads)
            if (t.joinable()) t.join();
    }
}

Expected<std::unique_ptr<Machine>> Machine::create(const RunConfig& config) {
    PV_TRY(validate(config));
    PV_TRY_ASSIGN(loader::Image image, loader::load_elf_file(config.guest_path));
    PV_TRY_ASSIGN(kvm::Kvm kvm, kvm::Kvm::open(config.kvm_device));
    if (kvm.max_vcpus() > 0 && config.vcpus > static_cast<uint32_t>(kvm.max_vcpus()))
        return make_error(ErrorKind::Usage, "KVM supports at most " + std::to_string(kvm.max_vcpus()) + " vCPUs");
    PV_TRY_ASSIGN(auto memsys, MemorySystem::create(config));
    auto created = Clock::now();
    std::unique_ptr<Machine> m(new Machine(config, std::move(kvm), std::move(image), std::move(memsys)));
    Machine* raw = m.get();
    m->m_memsys->set_hooks(
        MemoryHooks{[raw](const Error& e) { raw->stop_vm(std::nullopt, e); },
                    [raw](const Error& e) {
                        raw->stop_vm(std::nullopt,
                                     Error{ErrorKind::Timeout, 0, "guest memory fault handler stalled: " + e.message});
                    }});
    PV_TRY(m->boot(created));
    return m;
}

Status Machine::boot(Clock::time_point created) {
    m_created = created;
    PV_TRY_ASSIGN(kvm::Vm vm, m_kvm.create_vm());
    m_vm.emplace(std::move(vm));
    PV_TRY(m_mem.register_with(*m_vm));
    PV_TRY(x86::load_image(m_mem, m_image));
    x86::BootConfig boot;
    boot.vcpus = m_config.vcpus;
    boot.seed = m_config.seed;
    boot.workload = m_config.workload;
    boot.params = m_config.params;
    boot.args = m_config.workload_args;
    boot.tsc_khz = m_vm->tsc_khz();
    boot.ram = m_memsys->ram_map();
    boot.vcpu_node = m_memsys->vcpu_nodes(m_config.vcpus);
    boot.node_count = static_cast<uint32_t>(m_memsys->config().nodes.size());
    PV_TRY(x86::write_boot_structures(m_mem, boot));
    if (m_config.debug.corrupt_idt) {
        PV_TRY_ASSIGN(auto idt, m_mem.host_span(mm::GuestPhysAddr(layout::kIdtAddr), layout::kPage));
        std::memset(idt.data(), 0, idt.size());
    }
    m_pool = std::make_unique<x86::TablePool>(m_mem);
    PV_TRY_ASSIGN(x86::GuestPageTable pt, x86::build_page_tables(*m_pool, m_image, m_config.vcpus, boot.ram));
    m_pt.emplace(pt);  // a handle: root frame + pool pointer
    m_access = std::make_unique<PageTableGuestAccess>(m_mem, *m_pt);
    GuestPaging::Config pc;
    pc.vcpus = m_config.vcpus;
    const auto& fa = m_memsys->config().fault_around;
    pc.fault_around_pages = fa.enabled ? fa.pages : 1;
    pc.ram = boot.ram;
    pc.vcpu_node = boot.vcpu_node;
    pc.nodes = boot.node_count;
    // A node's zone quotas limit the guest frames pagevisor hands out there too (docs/memory-config.md).
    for (const auto& spec : memory::node_pools(m_memsys->config()))
        pc.node_quota_frames.push_back(spec.quota / layout::kPage);
    m_world = std::make_unique<WorldGate>(m_config.vcpus, [this](uint32_t v) { kick(v); });
    PV_TRY_ASSIGN(m_paging, GuestPaging::create(pc, m_mem, m_pool.get(), m_pt->root(), *m_world));
    m_access->set_query([p = m_paging.get()](mm::GuestVirtAddr va) { return p->space().query(va); });
    m_dispatcher.set_memory_calls(m_paging.get());
    PV_TRY_ASSIGN(auto stub_data, m_mem.host_span(mm::GuestPhysAddr(layout::kStubDataAddr), sizeof(abi::StubData)));
    m_dispatcher.set_stub_data(reinterpret_cast<abi::StubData*>(stub_data.data()));
    PV_TRY_ASSIGN(auto cpuid, m_kvm.supported_cpuid());
    for (uint32_t i = 0; i < m_config.vcpus; ++i) PV_TRY(setup_vcpu(i, cpuid));
    return {};
}

Status Machine::setup_vcpu(uint32_t i, const std::vector<kvm::CpuidEntry>& cpuid) {
    PV_TRY_ASSIGN(kvm::Vcpu vcpu, m_vm->create_vcpu(i));
    PV_TRY(vcpu.set_cpuid(x86::vcpu_cpuid(cpuid, i)));
    PV_TRY_ASSIGN(kvm::Sregs current, vcpu.get_sregs());
    uint64_t gdt_bytes = x86::guest_gdt(m_config.vcpus).size() * sizeof(uint64_t);
    PV_TRY(vcpu.set_sregs(x86::initial_sregs(current, i, m_pt->root().start_address().value(), gdt_bytes)));
    PV_TRY(vcpu.set_regs(x86::initial_regs(i, m_image.entry.value())));
    PV_TRY_ASSIGN(auto page, m_mem.host_span(mm::GuestPhysAddr(layout::hypercall_page(i)), layout::kPage));
    m_per_vcpu[i].page = reinterpret_cast<abi::HypercallPage*>(page.data());
    m_vcpus.push_back(std::move(vcpu));
    return {};
}

Expected<RunResult> run_vm(const RunConfig& config) {
    PV_TRY_ASSIGN(auto machine, Machine::create(config));
    return machine->run();
}

uint64_t RunResult::total_hypercalls() const {
    uint64_t n = 0;
    for (const auto& v : vcpus) n += v.hypercalls;
    return n;
}

uint64_t RunResult::total_exits() const {
    uint64_t n = 0;
    for (const auto& v : vcpus) n += v.exits;
    return n;
}

}  // namespace pv::run
