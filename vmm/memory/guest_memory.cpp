// GuestMemory: the MemorySet over GPA and its realisation (memslots, host
// mappings, userfaultfd registrations). Contract in guest_memory.h.
#include "vmm/memory/guest_memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <utility>

#include "mm/memory_set.h"
#include "vmm/abi/layout.h"
#include "vmm/base/big_reader_lock.h"
#include "vmm/kvm/vm.h"
#include "vmm/memory/fault_server.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace pv::memory {
namespace {

constexpr uint64_t kPage = layout::kPage;
constexpr size_t kMaxAreas = 4096;

std::string hex(uint64_t v) {
    char buf[24];
    (void)std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

// GPA ranges never reach 2^64 (the guest's physical address width is far below).
uint64_t end_of(mm::GuestPhysRange r) { return r.start().value() + r.size(); }

std::string range_text(mm::GuestPhysRange r) { return "[" + hex(r.start().value()) + ", " + hex(end_of(r)) + ")"; }

uint64_t resident_pages(const std::byte* host, uint64_t size) {
    if (host == nullptr || size == 0) return 0;
    std::vector<unsigned char> vec(size / kPage);
    if (::mincore(const_cast<std::byte*>(host), size, vec.data()) != 0) return 0;
    uint64_t n = 0;
    for (unsigned char c : vec) n += c & 1;
    return n;
}

}  // namespace

std::string_view to_string(AreaKind kind) {
    switch (kind) {
        case AreaKind::Eager: return "eager";
        case AreaKind::Demand: return "demand";
        case AreaKind::ReadOnly: return "read-only";
        case AreaKind::Hole: return "hole";
    }
    return "?";
}

struct PhysFlags {
    bool read_only = false;
    bool operator==(const PhysFlags&) const = default;
};

struct Realizer;

// The MemorySet backend: a value describing one area piece.
struct PhysBackend {
    using Addr = mm::GuestPhysAddr;
    using Flags = PhysFlags;
    using PageTable = Realizer;

    AreaKind kind = AreaKind::Eager;
    uint32_t node = 0;
    uint32_t id = 0;
    std::byte* host = nullptr;  // of the piece's start

    mm::Status map(Addr start, uint64_t size, Flags flags, Realizer& r) const;
    mm::Status unmap(Addr start, uint64_t size, Realizer& r) const;
    mm::Status protect(Addr start, uint64_t size, Flags flags, Realizer& r) const;
    PhysBackend split_at(uint64_t offset) {
        PhysBackend right = *this;
        if (host != nullptr) right.host = host + offset;
        return right;
    }
    bool can_merge_with(const PhysBackend&, uint64_t) const { return false; }
};

// One memslot-backed piece of RAM.
struct Piece {
    uint64_t end = 0;
    int slot = -1;  // -1: no VM yet
    bool read_only = false;
    PhysBackend backend;
};

// What the backends act on: the VM's memslots, the fault server's ranges,
// the node accounting. Errors are kept in `error` (the backend returns BadState).
struct Realizer {
    const kvm::Vm* vm = nullptr;
    DemandHooks hooks;
    std::map<uint64_t, Piece> pieces;        // by GPA start
    std::map<uint64_t, RangeInfo> uffd;      // registered host ranges: start -> info
    std::map<uint64_t, uint64_t> uffd_size;  // start -> size
    std::vector<bool> slots;                 // memslot ids in use
    std::optional<Error> error;

    mm::Status fail(Error e) {
        if (!error) error = std::move(e);
        return mm::err(mm::Error::BadState);
    }

    int take_slot() {
        for (size_t i = 0; i < slots.size(); ++i)
            if (!slots[i]) {
                slots[i] = true;
                return static_cast<int>(i);
            }
        slots.push_back(true);
        return static_cast<int>(slots.size() - 1);
    }
    void put_slot(int s) {
        if (s >= 0) slots[static_cast<size_t>(s)] = false;
    }

    Status create_slot(uint64_t start, Piece& p) {
        if (vm == nullptr) return {};
        int s = take_slot();
        auto r = vm->set_user_memory_region(static_cast<uint32_t>(s), mm::GuestPhysAddr(start), p.end - start,
                                            mm::host_addr(p.backend.host), p.read_only);
        if (!r) {
            put_slot(s);
            return mm::Unexpected<Error>{r.error().with_context("memslot for GPA " + hex(start))};
        }
        p.slot = s;
        return {};
    }
    void delete_slot(Piece& p) {
        if (vm != nullptr && p.slot >= 0) (void)vm->delete_memory_region(static_cast<uint32_t>(p.slot));
        put_slot(p.slot);
        p.slot = -1;
    }

    Status register_uffd(std::byte* host, uint64_t size, const PhysBackend& b) {
        if (size == 0) return {};
        RangeInfo info{b.id, b.node, nullptr};
        PV_TRY(hooks.server->register_range(mm::host_addr(host), size, info));
        uffd[mm::host_addr(host).value()] = info;
        uffd_size[mm::host_addr(host).value()] = size;
        return {};
    }

    // Unregisters the uffd range containing [host, host+size) and re-registers what is left of it.
    Status cut_uffd(const std::byte* host, uint64_t size) {
        uint64_t h = mm::host_addr(host).value();
        auto it = uffd.upper_bound(h);
        if (it == uffd.begin()) return {};
        --it;
        uint64_t start = it->first, len = uffd_size[start];
        if (h + size > start + len) return {};
        RangeInfo info = it->second;
        PV_TRY(hooks.server->unregister_range(mm::HostVirtAddr(start)));
        uffd.erase(start);
        uffd_size.erase(start);
        PhysBackend b{AreaKind::Demand, info.node, info.id, nullptr};
        auto* base = reinterpret_cast<std::byte*>(start);
        PV_TRY(register_uffd(base, h - start, b));
        return register_uffd(reinterpret_cast<std::byte*>(h + size), start + len - (h + size), b);
    }

    void uncharge_resident(const PhysBackend& b, const std::byte* host, uint64_t size) const {
        if (b.kind != AreaKind::Demand || hooks.accounting == nullptr) return;
        uint64_t n = std::min(resident_pages(host, size), hooks.accounting->held_pages(b.node));
        if (n != 0) (void)hooks.accounting->uncharge(b.node, n);
    }

    // The piece containing [start, start + size).
    std::map<uint64_t, Piece>::iterator piece_of(uint64_t start, uint64_t size) {
        auto it = pieces.upper_bound(start);
        if (it == pieces.begin()) return pieces.end();
        --it;
        return start + size <= it->second.end ? it : pieces.end();
    }

    // Replaces the piece at `it` by its parts outside [start, end) and, unless
    // `drop`, the part inside with `read_only`.
    Status recut(std::map<uint64_t, Piece>::iterator it, uint64_t start, uint64_t end, bool drop, bool read_only) {
        const uint64_t a = it->first;
        Piece old = it->second;
        delete_slot(it->second);
        pieces.erase(it);
        auto add = [&](uint64_t s, uint64_t e, bool ro) -> Status {
            if (s == e) return {};
            Piece p = old;
            p.slot = -1;
            p.end = e;
            p.read_only = ro;
            if (p.backend.host != nullptr) p.backend.host = old.backend.host + (s - a);
            PV_TRY(create_slot(s, p));
            pieces[s] = p;
            return {};
        };
        PV_TRY(add(a, start, old.read_only));
        if (!drop) PV_TRY(add(start, end, read_only));
        return add(end, old.end, old.read_only);
    }
};

mm::Status PhysBackend::map(Addr start, uint64_t size, Flags flags, Realizer& r) const {
    if (kind == AreaKind::Hole) return {};
    if (kind == AreaKind::Demand) {
        if (auto s = r.register_uffd(host, size, *this); !s) return r.fail(s.error());
    }
    Piece p{start.value() + size, -1, flags.read_only, *this};
    if (auto s = r.create_slot(start.value(), p); !s) {
        if (kind == AreaKind::Demand) (void)r.cut_uffd(host, size);
        return r.fail(s.error());
    }
    r.pieces[start.value()] = p;
    return {};
}

mm::Status PhysBackend::unmap(Addr start, uint64_t size, Realizer& r) const {
    if (kind == AreaKind::Hole) return {};
    auto it = r.piece_of(start.value(), size);
    if (it == r.pieces.end())
        return r.fail(Error{ErrorKind::Internal, 0, "no memslot piece covers GPA " + hex(start.value())});
    r.uncharge_resident(*this, host, size);
    if (auto s = r.recut(it, start.value(), start.value() + size, true, false); !s) return r.fail(s.error());
    if (kind == AreaKind::Demand) {
        if (auto s = r.cut_uffd(host, size); !s) return r.fail(s.error());
    }
    ::madvise(host, size, MADV_DONTNEED);
    ::mprotect(host, size, PROT_NONE);
    return {};
}

mm::Status PhysBackend::protect(Addr start, uint64_t size, Flags flags, Realizer& r) const {
    if (kind == AreaKind::Hole) return {};
    auto it = r.piece_of(start.value(), size);
    if (it == r.pieces.end())
        return r.fail(Error{ErrorKind::Internal, 0, "no memslot piece covers GPA " + hex(start.value())});
    if (auto s = r.recut(it, start.value(), start.value() + size, false, flags.read_only); !s) return r.fail(s.error());
    return {};
}

struct Reservation {
    void* base = nullptr;
    size_t length = 0;
};

struct GuestMemory::State {
    mutable BigReaderLock lock;  // read on every vCPU's fault path: readers share no cache line
    std::vector<std::byte> storage;
    std::optional<mm::MemorySet<PhysBackend>> set;
    mutable Realizer realizer;
    std::vector<Reservation> reservations;
    std::map<uint32_t, std::string> names;
    uint32_t next_id = 0;

    ~State() {
        std::unique_lock guard(lock);
        for (auto& [start, p] : realizer.pieces) {
            realizer.uncharge_resident(p.backend, p.backend.host, p.end - start);
            realizer.delete_slot(p);
        }
        if (realizer.hooks.server != nullptr)
            for (auto& [start, info] : realizer.uffd)
                (void)realizer.hooks.server->unregister_range(mm::HostVirtAddr(start));
        for (auto& r : reservations) ::munmap(r.base, r.length);
    }

    [[nodiscard]] AreaInfo info(const mm::MemoryArea<PhysBackend>& a) const {
        auto it = realizer.pieces.find(a.start().value());
        bool ro = it != realizer.pieces.end() && it->second.read_only;
        auto n = names.find(a.backend().id);
        return AreaInfo{
            a.backend().id,  n == names.end() ? "" : n->second, a.range(), a.backend().kind, a.backend().node, ro,
            a.backend().host};
    }

    // A new host mapping for `spec` with a guard page on each side, filled per its kind.
    Expected<std::byte*> reserve(const AreaSpec& spec) {
        const uint64_t len = spec.gpa.size();
        size_t total = len + 2 * kPage;
        void* base = ::mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED)
            return errno_error(ErrorKind::Resource, "cannot reserve " + hex(len) + " bytes of host memory");
        reservations.push_back({base, total});
        auto filled = fill(static_cast<std::byte*>(base) + kPage, spec);
        if (!filled) release_last_reservation();
        return filled;
    }

    static Expected<std::byte*> fill(std::byte* host, const AreaSpec& spec) {
        const uint64_t len = spec.gpa.size();
        if (::mprotect(host, len, PROT_READ | PROT_WRITE) != 0)
            return errno_error(ErrorKind::Resource, "cannot map " + hex(len) + " bytes of host memory");
        // Guest RAM is not worth a core dump, and a fork must not copy-on-write
        // share pages KVM maps into the guest (QEMU does the same).
        ::madvise(host, len, MADV_DONTDUMP);
        ::madvise(host, len, MADV_DONTFORK);
        if (spec.policy && spec.policy->policy != NumaPolicy::Default)
            PV_TRY(apply_policy(mm::host_addr(host), len, *spec.policy));
        if (spec.kind == AreaKind::ReadOnly) {
            std::memcpy(host, spec.contents.data(), spec.contents.size());
            ::mprotect(host, len, PROT_READ);
        } else if (spec.kind == AreaKind::Eager && spec.prefault) {
            if (::madvise(host, len, MADV_POPULATE_WRITE) != 0)
                for (uint64_t off = 0; off < len; off += kPage) static_cast<volatile std::byte*>(host)[off] = {};
        }
        return host;
    }

    void release_last_reservation() {
        ::munmap(reservations.back().base, reservations.back().length);
        reservations.pop_back();
    }
};

GuestMemory::GuestMemory(std::unique_ptr<State> state) : m_state(std::move(state)) {}
GuestMemory::GuestMemory(GuestMemory&& o) noexcept = default;
GuestMemory& GuestMemory::operator=(GuestMemory&& o) noexcept = default;
GuestMemory::~GuestMemory() = default;

Expected<GuestMemory> GuestMemory::create_empty(DemandHooks hooks) {
    auto state = std::make_unique<State>();
    state->storage.resize(kMaxAreas * mm::MemorySet<PhysBackend>::node_bytes() +
                          mm::MemorySet<PhysBackend>::node_align());
    std::span<std::byte> storage(state->storage);
    auto set = mm::MemorySet<PhysBackend>::try_create(storage);
    if (!set) return make_error(ErrorKind::Internal, "cannot create the guest-physical memory set");
    state->set.emplace(std::move(*set));
    state->realizer.hooks = hooks;
    return GuestMemory(std::move(state));
}

Expected<GuestMemory> GuestMemory::create(uint64_t size) {
    if (size < layout::kMinRamSize || size % layout::kPage != 0)
        return make_error(ErrorKind::Invalid, "guest RAM size " + hex(size) + " is not a page multiple >= 48 MiB");
    PV_TRY_ASSIGN(GuestMemory mem, create_empty());
    uint64_t low = std::min(size, layout::kLowRamLimit);
    AreaSpec spec;
    spec.name = "ram-low";
    spec.gpa = mm::GuestPhysRange::from_start_size(mm::GuestPhysAddr(0), low);
    PV_TRY(mem.map(spec));
    if (size > low) {
        spec.name = "ram-high";
        spec.gpa = mm::GuestPhysRange::from_start_size(mm::GuestPhysAddr(layout::k4GiB), size - low);
        PV_TRY(mem.map(spec));
    }
    return mem;
}

Status GuestMemory::map(const AreaSpec& spec) {
    if (!m_state) return make_error(ErrorKind::Internal, "guest memory was moved from");
    State& s = *m_state;
    std::unique_lock guard(s.lock);
    const std::string what = "guest memory area '" + spec.name + "' " + range_text(spec.gpa);
    if (spec.gpa.is_empty() || !spec.gpa.start().is_page_aligned() || spec.gpa.size() % kPage != 0)
        return make_error(ErrorKind::Invalid, what + " is empty or not page aligned");
    if (s.set->overlaps(spec.gpa)) return make_error(ErrorKind::Invalid, what + " overlaps another area");
    if (spec.kind == AreaKind::Demand && s.realizer.hooks.server == nullptr)
        return make_error(ErrorKind::Invalid, what + " is demand-paged but there is no fault server");
    if (spec.contents.size() > spec.gpa.size())
        return make_error(ErrorKind::Invalid, what + " is smaller than its contents");
    if (spec.kind == AreaKind::ReadOnly && s.realizer.vm != nullptr && !s.realizer.vm->supports_readonly_memory())
        return make_error(ErrorKind::Kvm, what + ": KVM lacks KVM_CAP_READONLY_MEM");
    std::byte* host = nullptr;
    if (spec.kind != AreaKind::Hole) {
        auto h = s.reserve(spec);
        if (!h) return mm::Unexpected<Error>{h.error().with_context(what)};
        host = *h;
    }
    const uint32_t id = s.next_id++;
    PhysBackend b{spec.kind, spec.node, id, host};
    s.realizer.error.reset();
    auto r = s.set->map(mm::MemoryArea<PhysBackend>(spec.gpa, PhysFlags{spec.kind == AreaKind::ReadOnly}, b),
                        s.realizer, false);
    if (!r) {
        if (host != nullptr) s.release_last_reservation();
        if (s.realizer.error) return mm::Unexpected<Error>{s.realizer.error->with_context(what)};
        return make_error(ErrorKind::Internal, what + ": " + mm::error_name(r.error()));
    }
    s.names[id] = spec.name;
    return {};
}

Status GuestMemory::unmap(mm::GuestPhysRange range) {
    if (!m_state) return make_error(ErrorKind::Internal, "guest memory was moved from");
    State& s = *m_state;
    std::unique_lock guard(s.lock);
    s.realizer.error.reset();
    auto r = s.set->unmap(range.start(), range.size(), s.realizer);
    if (r) return {};
    if (s.realizer.error)
        return mm::Unexpected<Error>{s.realizer.error->with_context("unmapping guest memory " + range_text(range))};
    return make_error(ErrorKind::Invalid,
                      "cannot unmap guest memory " + range_text(range) + ": " + mm::error_name(r.error()));
}

Status GuestMemory::protect(mm::GuestPhysRange range, bool read_only) {
    if (!m_state) return make_error(ErrorKind::Internal, "guest memory was moved from");
    State& s = *m_state;
    std::unique_lock guard(s.lock);
    s.realizer.error.reset();
    auto update = [&](const PhysFlags& f) {
        return f.read_only == read_only ? mm::FlagsUpdate<PhysFlags>::keep()
                                        : mm::FlagsUpdate<PhysFlags>::to(PhysFlags{read_only});
    };
    auto r = s.set->protect(range.start(), range.size(), update, s.realizer);
    if (r) return {};
    if (s.realizer.error)
        return mm::Unexpected<Error>{s.realizer.error->with_context("protecting guest memory " + range_text(range))};
    return make_error(ErrorKind::Invalid,
                      "cannot protect guest memory " + range_text(range) + ": " + mm::error_name(r.error()));
}

Status GuestMemory::register_with(const kvm::Vm& vm) const {
    if (!m_state) return make_error(ErrorKind::Internal, "guest memory was moved from");
    State& s = *m_state;
    std::unique_lock guard(s.lock);
    if (s.realizer.vm != nullptr) return make_error(ErrorKind::Internal, "guest memory is already registered");
    s.realizer.vm = &vm;
    for (auto& [start, p] : s.realizer.pieces) {
        if (p.read_only && !vm.supports_readonly_memory())
            return make_error(ErrorKind::Kvm, "read-only guest memory at " + hex(start) +
                                                  " needs KVM_CAP_READONLY_MEM, which this KVM lacks");
        PV_TRY(s.realizer.create_slot(start, p));
    }
    return {};
}

Status GuestMemory::zap_translations() const {
    if (!m_state) return make_error(ErrorKind::Internal, "guest memory was moved from");
    State& s = *m_state;
    std::unique_lock guard(s.lock);
    if (s.realizer.vm == nullptr) return {};
    // Deleting a memslot makes KVM zap the shadow pages (or EPT entries) of the
    // guest memory in it, page tables included; the new slot has the same
    // range, host memory and flags.
    for (auto& [start, p] : s.realizer.pieces) {
        s.realizer.delete_slot(p);
        PV_TRY(s.realizer.create_slot(start, p));
    }
    return {};
}

uint64_t GuestMemory::size() const {
    if (!m_state) return 0;
    std::shared_lock guard(m_state->lock);
    uint64_t n = 0;
    for (const auto& a : *m_state->set)
        if (a.backend().kind != AreaKind::Hole && a.backend().kind != AreaKind::ReadOnly) n += a.size();
    return n;
}

uint64_t GuestMemory::low_end() const {
    if (!m_state) return 0;
    std::shared_lock guard(m_state->lock);
    uint64_t end = 0;
    for (const auto& a : *m_state->set) {
        if (a.backend().kind == AreaKind::Hole || a.start().value() != end || a.start().value() >= layout::k4GiB) break;
        end = end_of(a.range());
    }
    return end;
}

std::vector<GuestMemory::Region> GuestMemory::regions() const {
    if (!m_state) return {};
    std::shared_lock guard(m_state->lock);
    std::vector<Region> out;
    for (const auto& a : *m_state->set)
        if (a.backend().kind != AreaKind::Hole) out.push_back({a.range(), a.backend().host});
    return out;
}

std::vector<AreaInfo> GuestMemory::areas() const {
    if (!m_state) return {};
    std::shared_lock guard(m_state->lock);
    std::vector<AreaInfo> out;
    for (const auto& a : *m_state->set) out.push_back(m_state->info(a));
    return out;
}

std::optional<AreaInfo> GuestMemory::find_area(mm::GuestPhysAddr gpa) const {
    if (!m_state) return std::nullopt;
    std::shared_lock guard(m_state->lock);
    const auto* a = m_state->set->find(gpa);
    if (a == nullptr) return std::nullopt;
    return m_state->info(*a);
}

std::vector<AreaStats> GuestMemory::stats() const {
    if (!m_state) return {};
    std::shared_lock guard(m_state->lock);
    std::vector<AreaStats> out;
    for (const auto& a : *m_state->set) out.push_back({m_state->info(a), resident_pages(a.backend().host, a.size())});
    return out;
}

bool GuestMemory::contains(mm::GuestPhysAddr gpa, uint64_t len) const { return host_span(gpa, len).has_value(); }

bool GuestMemory::check_invariants() const {
    if (!m_state) return true;
    std::shared_lock guard(m_state->lock);
    const State& s = *m_state;
    if (!s.set->check_invariants()) return false;
    // Every RAM area is covered exactly by pieces with its backend; holes have none.
    size_t ram_pieces = 0;
    for (const auto& a : *s.set) {
        if (a.backend().kind == AreaKind::Hole) {
            if (s.realizer.pieces.count(a.start().value()) != 0) return false;
            continue;
        }
        uint64_t at = a.start().value();
        while (at < end_of(a.range())) {
            auto it = s.realizer.pieces.find(at);
            if (it == s.realizer.pieces.end() || it->second.backend.id != a.backend().id) return false;
            if ((s.realizer.vm != nullptr) != (it->second.slot >= 0)) return false;
            at = it->second.end;
            ++ram_pieces;
        }
        if (at != end_of(a.range())) return false;
    }
    return ram_pieces == s.realizer.pieces.size();
}

void GuestMemory::prefault(mm::GuestPhysAddr gpa, uint64_t len) const {
    auto span = host_span(gpa, len);
    if (!span || span->empty()) return;
    (void)::madvise(span->data(), span->size(), MADV_POPULATE_WRITE);  // a hint: a failure changes nothing
}

Expected<std::span<std::byte>> GuestMemory::host_span(mm::GuestPhysAddr gpa, uint64_t len) const {
    if (!m_state) return make_error(ErrorKind::GuestFault, "guest memory was moved from");
    std::shared_lock guard(m_state->lock);
    auto range = mm::GuestPhysRange::try_create(gpa, len);
    const auto* a = m_state->set->find(gpa);
    if (!range || a == nullptr || a->backend().kind == AreaKind::Hole || !a->range().contains(*range))
        return make_error(ErrorKind::GuestFault,
                          "guest-physical range [" + hex(gpa.value()) + ", +" + hex(len) + ") is not in guest RAM");
    return std::span<std::byte>(a->backend().host + (gpa - a->start()), len);
}

}  // namespace pv::memory
