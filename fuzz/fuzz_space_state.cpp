// fuzz_space_state: restoring a guest-virtual address space from a snapshot
// (GuestAddressSpace::restore_state, docs/snapshot-format.md "MemorySetAreas")
// over an arbitrary page table in guest memory.
//
// Setup (once): real GuestMemory (layout::kMinRamSize); the guest frame allocator
// (mm::FrameAllocator, two nodes) over frames [0x100, 0x800); the page table's
// candidate tables are frames 0x100..0x10f, zeroed for every input.
// Input: [u8 root (mod 16)] [u8 mode] [u8 writes] then `writes` x {u8 table,
// u16 entry, u64 value} into the candidate tables, then the state:
//  - mode bit 0 clear: the rest of the input is the state, raw (the decoder);
//  - mode bit 0 set: the rest is a list of areas {u8 start page (x 2 MiB from
//    kUserBase), u8 pages, u8 flags, u8 kind, u8 node, u8 huge} encoded with a
//    correct header, so inputs reach the table walk and the frame claims.
// Properties: restore_state either fails with a one-line Invalid error naming
// the address space state, or succeeds with check_invariants() true and a
// save_state() of the right size; nothing touches memory outside guest RAM
// (ASan), nothing hangs (libFuzzer -timeout), the allocator's invariants hold
// afterwards and after the space is destroyed.
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "mm/frames.h"
#include "vmm/abi/layout.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/paging/address_space.h"

namespace {

using pv::fuzz::ByteReader;
using Frames = mm::FrameAllocator<std::mutex>;

constexpr uint64_t kPage = 0x1000;
constexpr uint64_t kRam = pv::layout::kMinRamSize;  // the smallest guest GuestMemory accepts
constexpr uint64_t kFirstFrame = 0x100;
constexpr uint64_t kFrames = 0x700;
constexpr uint64_t kTables = 16;

pv::memory::GuestMemory& guest_memory() {
    static auto* mem = [] {
        auto m = pv::memory::GuestMemory::create(kRam);
        PV_FUZZ_CHECK(m.has_value(), m ? "" : m.error().to_string());
        return new pv::memory::GuestMemory(std::move(*m));
    }();
    return *mem;
}

template <class T>
void put(std::vector<std::byte>& out, T v) {
    size_t at = out.size();
    out.resize(at + sizeof v);
    std::memcpy(out.data() + at, &v, sizeof v);
}

std::vector<std::byte> structured_state(ByteReader& in) {
    std::vector<std::byte> body;
    uint64_t count = 0;
    while (!in.empty() && count < 24) {
        uint64_t start = pv::abi::kUserBase + uint64_t(in.byte()) * (2 << 20);
        uint64_t pages = 1 + in.byte();
        put(body, start);
        put(body, pages * kPage);
        put(body, uint64_t(0));  // delta
        uint8_t flags = in.byte();
        uint8_t kind = in.byte();
        uint8_t node = in.byte();
        uint8_t huge = in.byte();
        put(body, node == 0xFF ? uint32_t(0xFFFF'FFFF) : uint32_t(node % 3));
        put(body, uint8_t(flags & 0x1F));
        put(body, uint8_t(kind % 4));
        put(body, uint8_t(huge & 1));
        put(body, uint8_t(0));
        ++count;
    }
    std::vector<std::byte> out;
    put(out, uint32_t(0x53415650));  // "PVAS"
    put(out, uint32_t(1));
    put(out, count);
    put(out, pv::abi::kBrkBase);
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    ByteReader in(data, size);
    auto& mem = guest_memory();
    auto tables = mem.host_span(mm::GuestPhysAddr(kFirstFrame * kPage), kTables * kPage);
    PV_FUZZ_CHECK(tables.has_value(), "table frames");
    std::memset(tables->data(), 0, tables->size());
    auto* entries = reinterpret_cast<uint64_t*>(tables->data());
    const mm::GuestFrame root(kFirstFrame + in.byte() % kTables);
    const uint8_t mode = in.byte();
    for (unsigned n = in.byte(); n > 0; --n) {
        unsigned table = in.byte() % kTables;
        unsigned entry = in.take<uint16_t>() % 512;
        entries[table * 512 + entry] = in.u64();
    }
    std::vector<std::byte> state;
    if ((mode & 1) != 0) {
        state = structured_state(in);
    } else {
        auto raw = in.bytes(SIZE_MAX);
        state.resize(raw.size());
        if (!raw.empty()) std::memcpy(state.data(), raw.data(), raw.size());
    }

    std::vector<std::byte> meta(Frames::metadata_bytes(2, 2, kFrames, 1));
    Frames frames;
    PV_FUZZ_CHECK(frames.init(meta, 2, 2, 1).has_value(), "frame allocator init");
    PV_FUZZ_CHECK(frames.add_range(0, mm::GuestFrameRange{mm::GuestFrame(kFirstFrame), kFrames / 2}).has_value(),
                  "range");
    PV_FUZZ_CHECK(
        frames.add_range(1, mm::GuestFrameRange{mm::GuestFrame(kFirstFrame + kFrames / 2), kFrames / 2}).has_value(),
        "range");
    pv::paging::FrameSourceAdapter<Frames> provider(frames, 2, kRam / kPage);
    pv::paging::HostAccess access = [&mem](mm::GuestPhysAddr gpa, uint64_t len) { return mem.host_span(gpa, len); };
    pv::paging::AddressSpaceConfig config;
    config.vcpus = 2;
    config.max_areas = 64;
    auto space = pv::paging::GuestAddressSpace::create(config, access, provider, nullptr, root);
    if (!space) return 0;  // a root the walker already calls corrupt
    (*space)->set_shootdown([] {});
    auto s = (*space)->restore_state(state);
    if (s) {
        PV_FUZZ_CHECK((*space)->check_invariants(), "invariants of a restored space");
        auto saved = (*space)->save_state();
        PV_FUZZ_CHECK(saved.size() >= 24 && (saved.size() - 24) % 32 == 0, "save_state size");
    } else {
        const auto& e = s.error();
        PV_FUZZ_CHECK(e.kind == pv::ErrorKind::Invalid, e.to_string());
        PV_FUZZ_CHECK(pv::fuzz::is_one_line(e.message), e.message);
        PV_FUZZ_CHECK(e.message.rfind("address space state: ", 0) == 0, e.message);
    }
    PV_FUZZ_CHECK(frames.check_invariants(), "frame allocator invariants after restore");
    space->reset();
    PV_FUZZ_CHECK(frames.check_invariants(), "frame allocator invariants after teardown");
    return 0;
}
