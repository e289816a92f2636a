// Where the guest-virtual layer gets guest-physical frames (data pages and page
// tables): any FrameSource (the per-node frame allocator of mm/frames.h, or a
// test fake), type-erased once into a FrameProvider so the address space is not
// a template.
//
// FrameSource contract (the shape of mm/frames.h's allocator):
//   alloc(cpu, node)                 one 4 KiB frame, from `node` (or its fallback);
//                                    the grant says which node it came from
//   alloc_contiguous(node, n, align) n frames, frame number aligned to `align` frames
//   free(cpu, frame) / free_contiguous(frame, n)
//   claim(frame, n)                  exactly frames [frame, frame + n) as one allocation
//                                    (restoring a snapshot's allocation state); the node
// Errors: NoMemory when exhausted; anything else is passed through. Frames need
// not be zeroed: the address space zeroes every frame before mapping it.
// Threads: alloc(cpu)/free(cpu) may run concurrently for different cpu ids (one
// thread per cpu id at a time, as in mm/frames.h); the other calls from any thread.
#pragma once

#include <concepts>
#include <cstdint>

#include "mm/addr.h"
#include "mm/result.h"

namespace pv::paging {

// What a provider hands out: a frame and the node it belongs to.
struct Grant {
    mm::GuestFrame frame;
    uint32_t node = 0;
};

template <class F>
concept FrameSource = requires(F f, uint32_t cpu, uint32_t node, mm::GuestFrame fr, size_t n) {
    { f.alloc(cpu, node)->frame } -> std::convertible_to<mm::GuestFrame>;
    { f.alloc(cpu, node)->node } -> std::convertible_to<uint32_t>;
    { f.alloc_contiguous(node, n, n)->frame } -> std::convertible_to<mm::GuestFrame>;
    { f.free(cpu, fr) } -> std::same_as<mm::Status>;
    { f.free_contiguous(fr, n) } -> std::same_as<mm::Status>;
    { *f.claim(fr, n) } -> std::convertible_to<uint32_t>;
};

class FrameProvider {
public:
    virtual ~FrameProvider() = default;
    virtual mm::Result<Grant> alloc(uint32_t cpu, uint32_t node) = 0;
    virtual mm::Result<Grant> alloc_contiguous(uint32_t node, size_t count) = 0;  // aligned to count
    virtual mm::Status free(uint32_t cpu, mm::GuestFrame frame) = 0;
    virtual mm::Status free_contiguous(mm::GuestFrame frame, size_t count) = 0;
    // Frames [frame, frame + count) that are free, now in use (freed with free() when
    // count is 1, else free_contiguous()); returns their node. AlreadyExists if one is in
    // use, OutOfRange outside the provider's frames, NoMemory over a quota.
    virtual mm::Result<uint32_t> claim(mm::GuestFrame frame, size_t count) = 0;
    [[nodiscard]] virtual uint32_t node_count() const = 0;
    // One past the highest frame number the provider can hand out (sizes the
    // address space's ownership table, which the fault path updates without a lock).
    [[nodiscard]] virtual uint64_t frame_limit() const = 0;
};

// Adapts a FrameSource that outlives the adapter.
template <FrameSource F>
class FrameSourceAdapter final : public FrameProvider {
public:
    FrameSourceAdapter(F& source, uint32_t nodes, uint64_t frame_limit)
        : m_source(source), m_nodes(nodes), m_frame_limit(frame_limit) {}

    mm::Result<Grant> alloc(uint32_t cpu, uint32_t node) override {
        auto g = m_source.alloc(cpu, node);
        if (!g) return mm::err(g.error());
        return Grant{g->frame, g->node};
    }
    mm::Result<Grant> alloc_contiguous(uint32_t node, size_t count) override {
        auto g = m_source.alloc_contiguous(node, count, count);
        if (!g) return mm::err(g.error());
        return Grant{g->frame, g->node};
    }
    mm::Status free(uint32_t cpu, mm::GuestFrame frame) override { return m_source.free(cpu, frame); }
    mm::Status free_contiguous(mm::GuestFrame frame, size_t count) override {
        return m_source.free_contiguous(frame, count);
    }
    mm::Result<uint32_t> claim(mm::GuestFrame frame, size_t count) override {
        auto r = m_source.claim(frame, count);
        if (!r) return mm::err(r.error());
        return static_cast<uint32_t>(*r);
    }
    [[nodiscard]] uint32_t node_count() const override { return m_nodes; }
    [[nodiscard]] uint64_t frame_limit() const override { return m_frame_limit; }

private:
    F& m_source;
    uint32_t m_nodes;
    uint64_t m_frame_limit;
};

}  // namespace pv::paging
