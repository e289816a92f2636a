// GuestAddressSpace: the state a snapshot carries beyond guest memory (the
// areas and the break) and its restoration over a restored page table.
//
// Encoding (little-endian; docs/snapshot-format.md, record MemorySetAreas):
//   u32 magic "PVAS", u32 version (1), u64 area count, u64 break,
//   then per area, in address order: u64 start, u64 size, u64 delta (Linear),
//   u32 node, u8 flags (mm::Perm bits), u8 kind (0 Linear, 1 Demand, 2 Guard),
//   u8 huge, u8 populate.
#include <cstring>
#include <string>

#include "vmm/paging/address_space.h"
#include "vmm/x86/exit.h"

namespace pv::paging {

namespace {

using x86::hex;

constexpr uint32_t kStateMagic = 0x53415650;  // "PVAS"
constexpr uint32_t kStateVersion = 1;
constexpr size_t kHeaderBytes = 24;
constexpr size_t kAreaBytes = 32;

const mm::GuestVirtRange kUserRange =
    mm::GuestVirtRange::from_start_size(mm::GuestVirtAddr(abi::kUserBase), abi::kUserTop - abi::kUserBase);

template <class T>
std::byte* put(std::byte* at, T v) {
    std::memcpy(at, &v, sizeof v);
    return at + sizeof v;
}

template <class T>
T get(const std::byte* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

Error bad_error(const std::string& what) { return Error{ErrorKind::Invalid, 0, "address space state: " + what}; }
mm::Unexpected<Error> bad(const std::string& what) { return mm::Unexpected<Error>{bad_error(what)}; }

struct DecodedArea {
    mm::GuestVirtRange range;
    mm::Perm flags;
    GvaBackend backend;
};

}  // namespace

std::vector<std::byte> GuestAddressSpace::save_state() const {
    Exclusive lock(*this);
    size_t count = 0;
    for ([[maybe_unused]] const auto& a : *m_set) ++count;
    std::vector<std::byte> out(kHeaderBytes + count * kAreaBytes);
    std::byte* at = out.data();
    at = put(at, kStateMagic);
    at = put(at, kStateVersion);
    at = put(at, static_cast<uint64_t>(count));
    at = put(at, m_brk);
    for (const auto& a : *m_set) {
        const GvaBackend& b = a.backend();
        at = put(at, a.range().start().value());
        at = put(at, a.range().size());
        at = put(at, b.delta);
        at = put(at, b.node);
        at = put(at, static_cast<uint8_t>(a.flags()));
        at = put(at, static_cast<uint8_t>(b.kind));
        at = put(at, static_cast<uint8_t>(b.huge ? 1 : 0));
        at = put(at, static_cast<uint8_t>(b.populate ? 1 : 0));
    }
    return out;
}

Status GuestAddressSpace::restore_state(std::span<const std::byte> state) {
    // ---- decode and validate (the snapshot file is untrusted) ----
    if (state.size() < kHeaderBytes) return bad("truncated (" + std::to_string(state.size()) + " bytes)");
    const std::byte* p = state.data();
    if (get<uint32_t>(p) != kStateMagic) return bad("bad magic");
    if (uint32_t v = get<uint32_t>(p + 4); v != kStateVersion)
        return bad("version " + std::to_string(v) + ", this pagevisor reads " + std::to_string(kStateVersion));
    const uint64_t count = get<uint64_t>(p + 8);
    const uint64_t brk = get<uint64_t>(p + 16);
    if (count > m_config.max_areas)
        return bad(std::to_string(count) + " areas, at most " + std::to_string(m_config.max_areas));
    if (state.size() != kHeaderBytes + count * kAreaBytes)
        return bad("size " + std::to_string(state.size()) + " does not match " + std::to_string(count) + " areas");
    if (brk < abi::kBrkBase || brk > abi::kBrkLimit) return bad("break " + hex(brk) + " outside the heap range");
    std::vector<DecodedArea> areas;
    areas.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
        const std::byte* a = p + kHeaderBytes + i * kAreaBytes;
        const uint64_t start = get<uint64_t>(a);
        const uint64_t size = get<uint64_t>(a + 8);
        const uint64_t delta = get<uint64_t>(a + 16);
        const uint32_t node = get<uint32_t>(a + 24);
        const auto flags = static_cast<mm::Perm>(get<uint8_t>(a + 28));
        const uint8_t kind = get<uint8_t>(a + 29);
        const uint8_t huge = get<uint8_t>(a + 30);
        const uint8_t populate = get<uint8_t>(a + 31);
        const std::string where = "area " + std::to_string(i) + " at " + hex(start);
        if (size == 0 || !mm::is_aligned(start, mm::kPageSize) || !mm::is_aligned(size, mm::kPageSize) ||
            !mm::checked_add(start, size))
            return bad(where + ": bad range (size " + hex(size) + ")");
        auto r = mm::GuestVirtRange::from_start_size(mm::GuestVirtAddr(start), size);
        if (!mm::x86::is_canonical(r.start()) || !mm::x86::is_canonical(r.last()))
            return bad(where + ": not a canonical range");
        if ((static_cast<uint8_t>(flags) & ~static_cast<uint8_t>(mm::kPermAll)) != 0 || kind > 2 || huge > 1 ||
            populate > 1)
            return bad(where + ": bad flags");
        if (node != kAnyNode && node >= m_frames.node_count())
            return bad(where + ": no guest node " + std::to_string(node));
        GvaBackend b;
        switch (kind) {
            case 0: b = GvaBackend::linear(r.start(), mm::GuestPhysAddr(start + delta), huge != 0); break;
            case 1: b = GvaBackend::demand(node, populate != 0, huge != 0); break;  // populate: a no-op while restoring
            default: b = GvaBackend::guard(); break;
        }
        if (kUserRange.overlaps(r)) {
            // Guest areas: what mmap and brk make (Demand, user-accessible, inside the user range).
            if (!kUserRange.contains(r) || b.kind != GvaBackend::Kind::Demand || !mm::has(flags, mm::Perm::User))
                return bad(where + ": not a guest area the memory calls can make");
        } else if (b.kind == GvaBackend::Kind::Demand) {
            return bad(where + ": a demand area outside the user range");
        }
        areas.push_back(DecodedArea{r, flags, b});
    }

    // ---- re-create the areas, then own what the page table uses ----
    std::optional<Error> failure;
    {
        Exclusive lock(*this);
        if (m_set->begin() != m_set->end()) return bad("the address space already has areas");
        m_ctx.set_origin(0, 0);
        m_ctx.set_restoring(true);
        for (const DecodedArea& a : areas) {
            if (auto s = m_set->map(Set::Area(a.range, a.flags, a.backend), m_ctx, false); !s) {
                failure = bad_error("area at " + hex(a.range.start().value()) + ": " + mm::error_name(s.error()));
                break;
            }
        }
        m_ctx.set_restoring(false);
        if (!failure) {
            m_tables.reset_pool();
            auto walk = m_pt.for_each_table([&](mm::GuestFrame f) {
                if (auto s = m_tables.adopt_table(f); !s) {
                    failure = bad_error("page-table frame " + hex(f.number()) + ": " + mm::error_name(s.error()));
                    return false;
                }
                return true;
            });
            if (!walk && !failure) failure = bad_error("the page table is corrupt");
        }
        if (!failure) {
            auto walk = m_pt.for_each_mapping(kUserRange, [&](const mm::x86::Mapping& m) {
                const Set::Area* a = m_set->find(m.base);
                const std::string where = "leaf at " + hex(m.base.value());
                if (a == nullptr || !a->range().contains(m.range())) {
                    failure = bad_error(where + " lies outside every area");
                    return false;
                }
                if (a->backend().kind != GvaBackend::Kind::Demand || m.size == mm::PageSize::Size1G) {
                    failure = bad_error(where + ": not a page pagevisor maps there");
                    return false;
                }
                const uint64_t pages = mm::bytes(m.size) / mm::kPageSize;
                const auto frame = mm::GuestFrame::containing(m.phys);
                auto node = m_frames.claim(frame, pages);
                if (!node) {
                    failure = bad_error(where + ": frame " + hex(frame.number()) + ": " + mm::error_name(node.error()));
                    return false;
                }
                if (auto s = m_ctx.adopt(frame, pages, *node); !s) {
                    (void)(pages == 1 ? m_frames.free(0, frame) : m_frames.free_contiguous(frame, pages));
                    failure = bad_error(where + ": frame " + hex(frame.number()) + ": " + mm::error_name(s.error()));
                    return false;
                }
                return true;
            });
            if (!walk && !failure) failure = bad_error("the page table is corrupt");
        }
        if (!failure) m_brk = brk;
    }
    if (failure) return mm::Unexpected<Error>{*failure};
    if (!check_invariants()) return bad("the restored page table does not match the areas");
    return {};
}

}  // namespace pv::paging
