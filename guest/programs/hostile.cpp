// hostile: a guest that attacks pagevisor (issue 10). params[1] selects the
// scenario; params[0] keeps its meaning, a count (0 -> the scenario's default).
//   0 flood     every vCPU makes p0 (20000) hypercalls with random numbers and wild
//               arguments: 0, ~0, near-top addresses, kernel structures, the doorbell,
//               the hypercall page itself, unaligned and page-crossing pointers, huge
//               and wrapping lengths, valid buffers. Never Exit/VcpuStop. Reports
//               hostile.calls/ok/errors/bad_result (results that are neither >= 0 nor
//               a defined HcError); exits 0 iff bad_result == 0.
//   1 pagetable vCPU 0 mmaps 2 GiB and touches one page per 2 MiB (p0 pages, 1024), so
//               pagevisor's page tables outgrow the boot pool and come from guest RAM;
//               then writes garbage over EVERY page of the RAM window (the RAM map,
//               identity-mapped user RW), page tables included: random words, all
//               ones, entries pointing outside guest RAM, into the boot table pool, at
//               themselves and at their neighbours (loops), zeros. Then hypercalls with
//               pointers into the region, memory calls on it (mprotect, munmap of a
//               part, mmap fixed over it, a new mmap) and finally touches it again.
//               Every call result must be >= 0 or a defined error. Reports
//               hostile.pt.phase (1 scribbled, 2 pointer calls, 3 memory calls, 4
//               touched), .scribbled, .calls, .bad_result after each phase. The guest
//               may wreck itself: garbage pointing at its own supervisor tables makes
//               pagevisor's edits land there. So it exits 0 (bad_result == 0), gets
//               a segmentation fault (the runtime's handler, exit 139) or is stopped
//               with a one-line guest-fault error (exit 6: triple fault, unmapped GPA,
//               segmentation fault). pagevisor must survive every seed.
//   2 race      vCPU 1 reads and writes a region in a loop while vCPU 0, for p0 (300)
//               generations, mprotects part of it read-only and back, munmaps it and
//               maps it again (Fixed and hinted, alternately). vCPU 1's faults go to
//               this program's handler, which resumes vCPU 1's loop (it re-registers
//               with SetFaultHandler: the ABI re-arms delivery then). Checks: data in a
//               fresh mapping is zero or this generation's (never stale), and after
//               munmap returned on vCPU 0, vCPU 1's next write faults. Reports
//               hostile.race.*; exits 0 iff no check failed.
//   5 tables    as 1, but the garbage is targeted: every present entry of every RAM
//               page that looks like one of pagevisor's page tables (present, user,
//               pointing into the RAM map) is redirected into the boot table pool or at
//               another such page (shared subtables). Same outcomes as 1.
//   3 oom       mmaps 4 MiB chunks (lazy) up to twice the RAM and touches every page in
//               order, reporting progress per chunk: pagevisor stops the guest when
//               frames run out (exit 9, "guest out of memory"); the program exits 3 if
//               it never runs out.
//   4 populate  mmaps 4 MiB chunks with Populate until one fails with NoMemory; touches
//               every page mapped; munmaps one chunk and populates it again (must
//               work), then touches a lazy chunk past the end: pagevisor stops the
//               guest (exit 9). Reports hostile.oom.*.
#include "guest/programs/programs.h"
#include "guest/programs/touch_order.h"
#include "guest/rt/console.h"
#include "guest/rt/memory.h"
#include "guest/rt/report.h"
#include "guest/rt/runtime.h"
#include "guest/rt/sync.h"
#include "vmm/abi/layout.h"

// ---- a minimal setjmp/longjmp, so a fault handler can resume a loop ----
// Saves the callee-saved registers, the stack pointer and the return address.
extern "C" [[gnu::returns_twice]] mm::uint64_t hostile_setjmp(mm::uint64_t* buf);
extern "C" [[noreturn]] void hostile_longjmp(mm::uint64_t* buf, mm::uint64_t value);
asm(R"(
    .pushsection .text
    .globl hostile_setjmp
    .type hostile_setjmp, @function
hostile_setjmp:
    mov %rbx, 0(%rdi)
    mov %rbp, 8(%rdi)
    mov %r12, 16(%rdi)
    mov %r13, 24(%rdi)
    mov %r14, 32(%rdi)
    mov %r15, 40(%rdi)
    lea 8(%rsp), %rdx
    mov %rdx, 48(%rdi)
    mov (%rsp), %rdx
    mov %rdx, 56(%rdi)
    xor %eax, %eax
    ret
    .size hostile_setjmp, .-hostile_setjmp
    .globl hostile_longjmp
    .type hostile_longjmp, @function
hostile_longjmp:
    mov 0(%rdi), %rbx
    mov 8(%rdi), %rbp
    mov 16(%rdi), %r12
    mov 24(%rdi), %r13
    mov 32(%rdi), %r14
    mov 40(%rdi), %r15
    mov 48(%rdi), %rsp
    mov %rsi, %rax
    jmp *56(%rdi)
    .size hostile_longjmp, .-hostile_longjmp
    .popsection
)");

extern "C" [[noreturn, gnu::force_align_arg_pointer, gnu::used]] void hostile_fault_entry(mm::uint64_t address,
                                                                                          mm::uint64_t rip,
                                                                                          mm::uint64_t access,
                                                                                          mm::uint64_t reason);

namespace pv::guest {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t k2M = 2ULL << 20;
constexpr uint64_t kRW = abi::kProtRead | abi::kProtWrite;

volatile uint64_t* word(uint64_t addr) { return reinterpret_cast<volatile uint64_t*>(addr); }

// >= 0, an HcError, or (memory calls 16..19) an abi::MemError.
bool defined_result(uint64_t nr, int64_t ret) {
    if (ret >= 0 || (ret >= -6 && ret <= -1)) return true;
    return nr >= abi::kFirstMemoryCall && nr <= static_cast<uint64_t>(abi::Call::Brk) && ret >= -19 && ret <= -16;
}

// ======================= 0: hypercall flood =======================

Atomic<uint64_t> g_calls{0};
Atomic<uint64_t> g_ok{0};
Atomic<uint64_t> g_errors{0};
Atomic<uint64_t> g_bad{0};
Atomic<uint32_t> g_finished{0};

char g_buffer[4096];

uint64_t wild_value(uint64_t& state, uint32_t vcpu) {
    state = touch::splitmix64(state);
    const uint64_t r = state;
    switch (r % 16) {
        case 0: return 0;
        case 1: return ~0ULL;
        case 2: return ~0ULL - (r >> 52);                                   // near the top: wraps with any length
        case 3: return layout::kGdtAddr + (r >> 60);                        // supervisor-only structures
        case 4: return layout::kDoorbellAddr + ((r >> 40) & 0xfff);         // no RAM behind it
        case 5: return layout::hypercall_page(vcpu) + ((r >> 40) & 0xfff);  // the call's own page
        case 6: return reinterpret_cast<uint64_t>(g_buffer) + ((r >> 40) & 0x1fff);  // valid, or off the end
        case 7: return 1ULL << ((r >> 32) % 64);                                     // huge lengths
        case 8: return (r >> 40) & 0xffff;                                           // small lengths
        case 9: return 0x8000'0000'0000ULL + (r >> 20);                              // non-canonical
        case 10: return layout::kFreeRamStart + ((r >> 30) & 0xfff'ffff);            // RAM (mapped when in the RAM map)
        case 11: return reinterpret_cast<uint64_t>(&boot_info()) + ((r >> 40) & 0xfff);  // read-only page
        default: return r;
    }
}

void flood(uint32_t vcpu, uint64_t n, uint64_t seed) {
    uint64_t state = seed ^ (0x9e37'79b9'7f4a'7c15ULL * (vcpu + 1));
    uint64_t ok = 0, errors = 0, bad = 0;
    for (uint64_t i = 0; i < n; ++i) {
        state = touch::splitmix64(state);
        uint64_t nr = state % 40;  // every defined call and many undefined ones
        if (nr == static_cast<uint64_t>(abi::Call::Exit) || nr == static_cast<uint64_t>(abi::Call::VcpuStop)) nr = 0;
        uint64_t a[6];
        for (auto& x : a) x = wild_value(state, vcpu);
        // Keep the console quiet: an accepted length becomes 0 (badptr checks the console's
        // pointer validation); oversized lengths stay and must be refused.
        if (nr == static_cast<uint64_t>(abi::Call::ConsoleWrite) && a[1] <= abi::kMaxConsoleWrite) a[1] = 0;
        const int64_t ret = hypercall_raw(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        if (!defined_result(nr, ret)) ++bad;
        if (ret >= 0)
            ++ok;
        else
            ++errors;
    }
    g_calls.fetch_add(n);
    g_ok.fetch_add(ok);
    g_errors.fetch_add(errors);
    g_bad.fetch_add(bad);
    g_finished.fetch_add(1, MemoryOrder::Release);
}

int64_t run_flood(uint32_t vcpu, const abi::BootInfo& boot) {
    const uint64_t n = boot.params[0] != 0 ? boot.params[0] : 20000;
    flood(vcpu, n, boot.seed);
    if (vcpu != 0) vcpu_stop();
    while (g_finished.load(MemoryOrder::Acquire) < boot.vcpu_count) cpu_relax();
    Report<8> report;
    report.add_u64("hostile.calls", g_calls.load());
    report.add_u64("hostile.ok", g_ok.load());
    report.add_u64("hostile.errors", g_errors.load());
    report.add_u64("hostile.bad_result", g_bad.load());
    if (report.send() < 0) return 1;
    printf("hostile: %lu wild hypercalls on %u vCPU(s): %lu succeeded, %lu refused, %lu undefined results\n",
           g_calls.load(), boot.vcpu_count, g_ok.load(), g_errors.load(), g_bad.load());
    return g_bad.load() == 0 ? 0 : 1;
}

// ======================= 1: garbage in the page tables =======================

// The value of word i of RAM-window page `page` (its guest-physical address).
// Half the pages (by a hash of the page and the seed) hold one kind of garbage
// throughout, so some tables look valid to a walk all the way; the others hold
// runs of 64 words of each kind.
uint64_t garbage(uint64_t page, uint64_t i, uint64_t seed, uint64_t& state) {
    state = touch::splitmix64(state);
    const uint64_t r = state;
    constexpr uint64_t kFlags = 0x7;  // present, writable, user
    const uint64_t page_hash = touch::splitmix64(page ^ seed);
    const uint64_t kind = (page_hash & 1) != 0 ? page_hash >> 1 : page / kPage + i / 64;
    switch (kind % 8) {
        case 0: return r;                                                          // random words
        case 1: return ~0ULL;                                                      // all ones
        case 2: return (0x100'0000'0000ULL + (r & 0xff'ffff'f000ULL)) | kFlags;    // far outside guest RAM
        case 3: return (layout::kPageTablePoolAddr + (r % 512) * kPage) | kFlags;  // into the boot table pool
        case 4: return page | kFlags;                                              // at itself: a loop
        case 5: return (page + ((r & 1) ? kPage : -kPage)) | kFlags;               // a neighbour: chains
        case 6: return (page | kFlags | (1U << 7));                                // a huge page at itself
        default: return 0;                                                         // empty
    }
}

uint64_t scribble_ram_window(uint64_t seed) {
    const abi::BootInfo& boot = boot_info();
    uint64_t state = seed ^ 0x5EED'0F'6A7BA6EULL, pages = 0;
    for (uint32_t k = 0; k < boot.ram_count && k < abi::kMaxRamRanges; ++k) {
        const abi::RamRange& range = boot.ram[k];
        if (range.kind == abi::RamKind::ReadOnly) continue;  // a write would stop the guest (by design)
        for (uint64_t page = range.gpa; page < range.gpa + range.size; page += kPage, ++pages)
            for (uint64_t i = 0; i < kPage / 8; ++i) *word(page + i * 8) = garbage(page, i, seed, state);
    }
    return pages;
}

// Whether a RAM-window page looks like one of pagevisor's page tables: some
// present entries, every present one user+present pointing into the RAM map.
bool looks_like_table(uint64_t page) {
    const abi::BootInfo& boot = boot_info();
    uint64_t present = 0;
    for (uint64_t i = 0; i < kPage / 8; ++i) {
        const uint64_t e = *word(page + i * 8);
        if (e == 0) continue;
        if ((e & 0x5) != 0x5) return false;
        const uint64_t target = e & 0x000f'ffff'ffff'f000ULL;
        bool in_ram = false;
        for (uint32_t k = 0; k < boot.ram_count && k < abi::kMaxRamRanges; ++k)
            in_ram |= target >= boot.ram[k].gpa && target - boot.ram[k].gpa < boot.ram[k].size;
        if (!in_ram) return false;
        ++present;
    }
    return present > 0;
}

// Targeted garbage: every present entry of every table-looking page is
// redirected into the boot table pool (the guest's own supervisor tables and
// free pool frames) or at another table-looking page (shared subtables).
uint64_t redirect_tables(uint64_t seed) {
    const abi::BootInfo& boot = boot_info();
    uint64_t state = seed, tables = 0, previous = 0;
    for (uint32_t k = 0; k < boot.ram_count && k < abi::kMaxRamRanges; ++k) {
        const abi::RamRange& range = boot.ram[k];
        if (range.kind == abi::RamKind::ReadOnly) continue;
        for (uint64_t page = range.gpa; page < range.gpa + range.size; page += kPage) {
            if (!looks_like_table(page)) continue;
            ++tables;
            for (uint64_t i = 0; i < kPage / 8; ++i) {
                if (*word(page + i * 8) == 0) continue;
                state = touch::splitmix64(state);
                const uint64_t pool = layout::kPageTablePoolAddr + (state % 512) * kPage;
                *word(page + i * 8) = ((state >> 32) % 4 == 0 && previous != 0 ? previous : pool) | 0x7;
            }
            previous = page;
        }
    }
    return tables;
}

struct CallCheck {
    uint64_t calls = 0;
    uint64_t bad = 0;
    void note(uint64_t nr, int64_t ret) {
        ++calls;
        if (!defined_result(nr, ret)) {
            ++bad;
            printf("hostile: call %lu returned an undefined result %ld\n", nr, ret);
        }
    }
    // Progress, so a test sees how far the guest got if the garbage ends it early.
    void report(uint64_t phase, uint64_t scribbled) const {
        Report<4> r;
        r.add_u64("hostile.pt.phase", phase);
        r.add_u64("hostile.pt.scribbled", scribbled);
        r.add_u64("hostile.pt.calls", calls);
        r.add_u64("hostile.pt.bad_result", bad);
        (void)r.send();
    }
};

// Hypercalls with pointers into the region: pagevisor walks the garbage to
// resolve them (read-only walks).
void pointer_calls_into(uint64_t base, uint64_t len, CallCheck& c) {
    using abi::Call;
    for (uint64_t off = 0; off < len; off += 97 * k2M + kPage) {
        c.note(uint64_t(Call::ConsoleWrite), hypercall(Call::ConsoleWrite, base + off, 0));
        c.note(uint64_t(Call::ConsoleWrite), hypercall(Call::ConsoleWrite, base + off + 8, 1));
        c.note(uint64_t(Call::Report), hypercall(Call::Report, base + off, 1));
        c.note(uint64_t(Call::Report), hypercall(Call::Report, base + off - 8, 2));
    }
}

// Memory calls over the region: pagevisor edits the garbage (each may also
// wreck the guest's own mappings, through garbage pointing at them).
void memory_calls_on(uint64_t base, uint64_t len, CallCheck& c, uint64_t scribbled) {
    using abi::Call;
    const int64_t results[] = {
        mem_protect(base, len, abi::kProtRead),
        mem_protect(base + k2M, 64 * k2M, kRW),
        mem_unmap(base + len / 2, len / 4),
        mem_map(base + len / 2, len / 4, kRW, abi::kMapFixed),
        mem_map(base + len / 2, 16 * kPage, kRW, abi::kMapFixed | abi::kMapPopulate),
        mem_map(0, 16 * kPage, kRW, abi::kMapPopulate),
        mem_protect(base, len, kRW),
        mem_unmap(base, len / 4),
    };
    const Call calls[] = {Call::Mprotect, Call::Mprotect, Call::Munmap,   Call::Mmap,
                          Call::Mmap,     Call::Mmap,     Call::Mprotect, Call::Munmap};
    for (size_t i = 0; i < sizeof results / sizeof results[0]; ++i) c.note(uint64_t(calls[i]), results[i]);
    c.report(3, scribbled);
}

int64_t run_pagetable(uint32_t vcpu, const abi::BootInfo& boot, bool targeted) {
    if (vcpu != 0) vcpu_stop();
    const uint64_t pages = boot.params[0] != 0 ? boot.params[0] : 1024;
    const uint64_t len = pages * k2M;
    const int64_t p = mem_map(0, len, kRW, 0);
    if (p < 0) {
        printf("hostile: mmap of %lu bytes failed (%ld)\n", len, p);
        return 1;
    }
    const uint64_t base = static_cast<uint64_t>(p);
    for (uint64_t i = 0; i < pages; ++i) *word(base + i * k2M) = i + 1;  // one page table per 2 MiB
    CallCheck c;
    const uint64_t scribbled = targeted ? redirect_tables(boot.seed) : scribble_ram_window(boot.seed);
    c.report(1, scribbled);
    printf("hostile: garbage over %lu RAM pages%s\n", scribbled, targeted ? " that look like page tables" : "");
    pointer_calls_into(base, len, c);
    c.report(2, scribbled);
    memory_calls_on(base, len, c, scribbled);
    printf("hostile: %lu calls on and into the garbage, %lu undefined results\n", c.calls, c.bad);
    // The region again, through the garbage: works, or a segmentation fault / a stop.
    uint64_t sum = 0;
    for (uint64_t i = 0; i < pages; ++i) sum += *word(base + i * k2M);
    c.report(4, scribbled);
    printf("hostile: the region survived (%lu)\n", sum);
    return c.bad == 0 ? 0 : 1;
}

// ======================= 2: munmap racing access =======================

constexpr uint64_t kRacePages = 16;

// Shared by both vCPUs and by vCPU 1's fault handler, which resumes vCPU 1's
// loop with a longjmp: every field is an Atomic (relaxed for vCPU 1's own
// counters) so no value lives only in a register the longjmp discards.
struct RaceState {
    Atomic<uint64_t> gen{0};       // generation: a new mapping each
    Atomic<uint64_t> addr{0};      // the mapping of generation `gen`
    Atomic<uint64_t> unmapped{0};  // generation whose munmap has returned on vCPU 0
    Atomic<uint64_t> acked{0};     // generation whose post-munmap write vCPU 1 has checked
    Atomic<uint32_t> done{0};      // vCPU 0 finished; vCPU 1 ends
    Atomic<uint32_t> finished{0};  // vCPU 1 ended
    // vCPU 1 (its loop and its fault handler).
    Atomic<uint64_t> checked{0};       // last generation checked (vCPU 1 waits for the next)
    Atomic<uint64_t> step{0};          // which word vCPU 1 accesses next
    Atomic<uint64_t> lo{0}, hi{0};     // the range vCPU 1 may fault in
    Atomic<uint64_t> expect_fault{0};  // generation whose post-munmap write is in progress
    Atomic<uint64_t> accesses{0};
    Atomic<uint64_t> faults{0};
    Atomic<uint64_t> verified{0};    // post-munmap writes that faulted
    Atomic<uint64_t> stale{0};       // post-munmap writes that did not fault
    Atomic<uint64_t> stale_data{0};  // words in a mapping from another generation
    Atomic<uint64_t> wild_faults{0};
    // vCPU 0.
    Atomic<uint64_t> call_errors{0};
    Atomic<uint64_t> moved{0};  // hinted mmaps that returned another address
};
RaceState g_race;
mm::uint64_t g_resume[8];  // vCPU 1's recovery point (hostile_setjmp)

void bump(Atomic<uint64_t>& a) { a.store(a.load(MemoryOrder::Relaxed) + 1, MemoryOrder::Relaxed); }

void race_call(int64_t ret, const char* what) {
    if (ret >= 0) return;
    bump(g_race.call_errors);
    printf("hostile: race: %s failed (%ld)\n", what, ret);
}

// vCPU 0: waits (boundedly) until vCPU 1's counter `a` has grown by `n`.
void wait_for(const Atomic<uint64_t>& a, uint64_t n) {
    const uint64_t start = a.load(MemoryOrder::Relaxed);
    for (uint64_t spin = 0; spin < (1ULL << 26) && a.load(MemoryOrder::Relaxed) - start < n; ++spin) cpu_relax();
}

// vCPU 0: one generation of changes under vCPU 1's feet, each once vCPU 1 is
// busy with the mapping: part of it read-only (vCPU 1's writes there fault),
// read-write again, unmapped (handshake: vCPU 1's next write must fault), mapped
// again, at the same address (Fixed) or wherever the hint lands.
void race_generation(uint64_t gen, uint64_t& addr, uint64_t& state) {
    constexpr uint64_t kLen = kRacePages * kPage;
    wait_for(g_race.accesses, 2 * kRacePages);
    state = touch::splitmix64(state);
    const uint64_t first = state % kRacePages, count = 1 + (state >> 8) % (kRacePages - first);
    race_call(mem_protect(addr + first * kPage, count * kPage, abi::kProtRead), "mprotect read-only");
    wait_for(g_race.faults, 1);
    race_call(mem_protect(addr, kLen, kRW), "mprotect read-write");
    wait_for(g_race.accesses, kRacePages);
    race_call(mem_unmap(addr, kLen), "munmap");
    g_race.unmapped.store(gen, MemoryOrder::Release);
    while (g_race.acked.load(MemoryOrder::Acquire) != gen) cpu_relax();
    const bool fixed = gen % 2 == 0;
    const int64_t p = mem_map(addr, kLen, kRW, fixed ? abi::kMapFixed : 0);
    race_call(p, fixed ? "mmap fixed" : "mmap hinted");
    if (p < 0) return;
    if (static_cast<uint64_t>(p) != addr) bump(g_race.moved);
    addr = static_cast<uint64_t>(p);
}

// vCPU 1, after munmap returned on vCPU 0: this write must fault (the handler
// then acknowledges the generation and resumes the loop).
void race_check_unmapped(uint64_t gen, uint64_t addr) {
    RaceState& s = g_race;
    s.expect_fault.store(gen, MemoryOrder::Relaxed);
    compiler_barrier();
    *word(addr + (s.step.load(MemoryOrder::Relaxed) % kRacePages) * kPage) = (gen << 32) | 0xdead;
    compiler_barrier();
    s.expect_fault.store(0, MemoryOrder::Relaxed);
    bump(s.stale);
    printf("hostile: race: write to 0x%lx after munmap did not fault (generation %lu)\n", addr, gen);
    s.checked.store(gen, MemoryOrder::Relaxed);
    s.acked.store(gen, MemoryOrder::Release);
}

// vCPU 1: one access to the current mapping; data must be 0 or this generation's.
void race_access(uint64_t gen, uint64_t addr) {
    RaceState& s = g_race;
    const uint64_t j = s.step.load(MemoryOrder::Relaxed);
    s.step.store(j + 1, MemoryOrder::Relaxed);
    const uint64_t at = addr + (j % kRacePages) * kPage + (j / kRacePages % 512) * 8;
    compiler_barrier();
    const uint64_t v = *word(at);
    if (v != 0 && (v >> 32) != gen) {
        bump(s.stale_data);
        printf("hostile: race: stale data 0x%lx at 0x%lx in generation %lu\n", v, at, gen);
    }
    *word(at) = (gen << 32) | (j & 0xffff'ffffULL);
    compiler_barrier();
    bump(s.accesses);
}

[[noreturn]] void race_reader() {
    RaceState& s = g_race;
    (void)hostile_setjmp(g_resume);  // the fault handler resumes here
    while (s.done.load(MemoryOrder::Acquire) == 0) {
        const uint64_t gen = s.gen.load(MemoryOrder::Acquire);
        if (gen == s.checked.load(MemoryOrder::Relaxed)) {
            cpu_relax();
            continue;
        }
        const uint64_t addr = s.addr.load(MemoryOrder::Acquire);
        s.lo.store(addr, MemoryOrder::Relaxed);
        s.hi.store(addr + kRacePages * kPage, MemoryOrder::Relaxed);
        if (s.unmapped.load(MemoryOrder::Acquire) == gen)
            race_check_unmapped(gen, addr);
        else
            race_access(gen, addr);
    }
    s.finished.store(1, MemoryOrder::Release);
    vcpu_stop();
}

int64_t run_race(uint32_t vcpu, const abi::BootInfo& boot) {
    if (boot.vcpu_count < 2) {
        printf("hostile: race needs 2 vCPUs\n");
        return 2;
    }
    if (vcpu == 1) {
        (void)hypercall(abi::Call::SetFaultHandler, reinterpret_cast<uint64_t>(&hostile_fault_entry));
        race_reader();
    }
    if (vcpu != 0) vcpu_stop();
    const uint64_t gens = boot.params[0] != 0 ? boot.params[0] : 300;
    int64_t p = mem_map(0, kRacePages * kPage, kRW, 0);
    if (p < 0) return 1;
    uint64_t addr = static_cast<uint64_t>(p), state = boot.seed;
    for (uint64_t gen = 1; gen <= gens && g_race.call_errors.load() == 0; ++gen) {
        g_race.addr.store(addr, MemoryOrder::Release);
        g_race.gen.store(gen, MemoryOrder::Release);
        race_generation(gen, addr, state);
    }
    g_race.done.store(1, MemoryOrder::Release);
    while (g_race.finished.load(MemoryOrder::Acquire) == 0) cpu_relax();
    const RaceState& s = g_race;
    Report<12> report;
    report.add_u64("hostile.race.gens", s.gen.load());
    report.add_u64("hostile.race.accesses", s.accesses.load());
    report.add_u64("hostile.race.faults", s.faults.load());
    report.add_u64("hostile.race.verified", s.verified.load());
    report.add_u64("hostile.race.stale", s.stale.load());
    report.add_u64("hostile.race.stale_data", s.stale_data.load());
    report.add_u64("hostile.race.wild", s.wild_faults.load());
    report.add_u64("hostile.race.call_err", s.call_errors.load());
    report.add_u64("hostile.race.moved", s.moved.load());
    if (report.send() < 0) return 1;
    printf(
        "hostile: race: %lu generations, %lu accesses, %lu faults, %lu post-munmap writes faulted, %lu did not, "
        "%lu stale words\n",
        s.gen.load(), s.accesses.load(), s.faults.load(), s.verified.load(), s.stale.load(), s.stale_data.load());
    const bool ok = s.stale.load() == 0 && s.stale_data.load() == 0 && s.wild_faults.load() == 0 &&
                    s.call_errors.load() == 0 && s.verified.load() == s.gen.load();
    return ok ? 0 : 1;
}

// ======================= 3, 4: past the end of memory =======================

constexpr uint64_t kChunk = 4ULL << 20;

void report_progress(uint64_t chunks, uint64_t touched, uint64_t failures) {
    Report<4> report;
    report.add_u64("hostile.oom.chunks", chunks);
    report.add_u64("hostile.oom.touched", touched);
    report.add_u64("hostile.oom.mapfail", failures);
    (void)report.send();
}

uint64_t touch_chunk(uint64_t base, uint64_t& touched) {
    for (uint64_t off = 0; off < kChunk; off += kPage, ++touched) *word(base + off) = base + off;
    return touched;
}

int64_t run_oom_lazy(const abi::BootInfo& boot) {
    const uint64_t limit = 2 * boot.ram_size / kChunk + 1;
    uint64_t touched = 0;
    for (uint64_t chunk = 0; chunk < limit; ++chunk) {
        const int64_t p = mem_map(0, kChunk, kRW, 0);
        if (p < 0) {
            report_progress(chunk, touched, 1);
            printf("hostile: lazy mmap failed (%ld) after %lu chunks\n", p, chunk);
            return 3;
        }
        report_progress(chunk, touched, 0);
        touch_chunk(static_cast<uint64_t>(p), touched);
    }
    printf("hostile: touched %lu pages, twice the RAM, and never ran out\n", touched);
    return 3;
}

int64_t run_oom_populate(const abi::BootInfo& boot) {
    const uint64_t limit = 2 * boot.ram_size / kChunk + 1;
    uint64_t touched = 0, chunks = 0, last = 0;
    int64_t failed = 0;
    for (; chunks < limit; ++chunks) {
        const int64_t p = mem_map(0, kChunk, kRW, abi::kMapPopulate);
        if (p < 0) {
            failed = p;
            break;
        }
        last = static_cast<uint64_t>(p);
        touch_chunk(last, touched);
    }
    report_progress(chunks, touched, failed != 0);
    if (failed != static_cast<int64_t>(abi::MemError::NoMemory) || chunks == 0) {
        printf("hostile: populate chunks: %lu, then %ld (expected NoMemory)\n", chunks, failed);
        return 3;
    }
    // Memory is full: give one chunk back and take it again, then ask for more lazily.
    if (mem_unmap(last, kChunk) != 0 || mem_map(last, kChunk, kRW, abi::kMapFixed | abi::kMapPopulate) < 0) {
        printf("hostile: could not re-populate a freed chunk\n");
        return 3;
    }
    touch_chunk(last, touched);
    const int64_t p = mem_map(0, kChunk, kRW, 0);
    if (p < 0) return 3;
    report_progress(chunks, touched, 1);
    printf("hostile: %lu chunks populated, the next refused; touching a lazy chunk past the end\n", chunks);
    touch_chunk(static_cast<uint64_t>(p), touched);
    printf("hostile: the lazy chunk past the end was served (%lu pages)\n", touched);
    return 3;
}

}  // namespace

int64_t run_hostile(uint32_t vcpu, const abi::BootInfo& boot) {
    switch (boot.params[1]) {
        case 0: return run_flood(vcpu, boot);
        case 1:
        case 5: return run_pagetable(vcpu, boot, boot.params[1] == 5);
        case 2: return run_race(vcpu, boot);
        case 3:
        case 4:
            if (vcpu != 0) vcpu_stop();
            return boot.params[1] == 3 ? run_oom_lazy(boot) : run_oom_populate(boot);
        default:
            if (vcpu != 0) vcpu_stop();
            printf("hostile: unknown scenario %lu (p1: 0 flood, 1 pagetable, 2 race, 3 oom, 4 populate, 5 tables)\n",
                   boot.params[1]);
            return 2;
    }
}

}  // namespace pv::guest

// The race scenario's fault handler (vCPU 1): counts the fault, checks that it
// lies in the region, re-registers (which re-arms delivery on this vCPU) and
// resumes vCPU 1's loop.
extern "C" void hostile_fault_entry(mm::uint64_t address, mm::uint64_t rip, mm::uint64_t access, mm::uint64_t reason) {
    using namespace pv::guest;
    RaceState& s = g_race;
    bump(s.faults);
    if (address < s.lo.load(MemoryOrder::Relaxed) || address >= s.hi.load(MemoryOrder::Relaxed)) {
        bump(s.wild_faults);
        printf("hostile: race: unexpected fault at 0x%lx (access %lu, reason %lu, RIP 0x%lx)\n", address, access,
               reason, rip);
    }
    if (const uint64_t gen = s.expect_fault.load(MemoryOrder::Relaxed); gen != 0) {
        bump(s.verified);
        s.expect_fault.store(0, MemoryOrder::Relaxed);
        s.checked.store(gen, MemoryOrder::Relaxed);
        s.acked.store(gen, MemoryOrder::Release);
    }
    (void)hypercall(pv::abi::Call::SetFaultHandler, reinterpret_cast<uint64_t>(&hostile_fault_entry));
    hostile_longjmp(g_resume, 1);
}
