// Per-guest-NUMA-node host frame pools: where the host memory behind each guest
// node comes from (host nodes + a policy applied with mbind), how much of it
// the guest may use (a quota in 4 KiB pages), and what happens when a node is
// exhausted (Preferred borrows from other guest nodes' pools in an explicit
// order; Bind and the others fail with "guest out of memory on node N").
//
// The pieces (docs/numa.md has the whole picture):
//   HostNodeSet     a set of host node ids, laid out as the kernel's nodemask
//   HostTopology    the host's nodes (size, free memory, CPUs) from libnuma
//   PoolConfig      the host pool of one guest node (validated by validate_pools)
//   NodeAccounting  thread-safe per-guest-node frame counters with quotas and
//                   fallback; charge() is on the fault path and takes no lock
//   apply_policy    mbind() of a host mapping according to a PoolConfig
//   query_policy    get_mempolicy() of a host address (tests, diagnostics)
//   verify_placement move_pages() query of the host node of each page
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mm/addr.h"
#include "vmm/base/error.h"

namespace pv::memory {

using GuestNodeId = uint32_t;
using HostNodeId = uint32_t;

// A set of host NUMA node ids in [0, kMaxNodes). Stored as the kernel's
// nodemask (an array of unsigned long bits) so it can be passed to mbind and
// get_mempolicy as is.
class HostNodeSet {
public:
    static constexpr uint32_t kMaxNodes = 1024;  // the kernel's largest MAX_NUMNODES

    HostNodeSet() = default;
    // Every id must be < kMaxNodes (asserted: for literals; parse() validates text).
    static HostNodeSet of(std::initializer_list<HostNodeId> ids);
    // "0", "0-3", "0,2-3" (QEMU's host-nodes= syntax also accepts ';' between
    // items). Usage error with the text quoted on anything else.
    static Expected<HostNodeSet> parse(std::string_view text);

    void add(HostNodeId id);
    [[nodiscard]] bool contains(HostNodeId id) const;
    [[nodiscard]] bool empty() const;
    [[nodiscard]] uint32_t count() const;
    [[nodiscard]] std::vector<HostNodeId> ids() const;
    // "0-3,5" ("none" when empty).
    [[nodiscard]] std::string to_string() const;

    // For the mempolicy syscalls: the mask and the maxnode argument that
    // covers it (the kernel reads maxnode - 1 bits).
    [[nodiscard]] const unsigned long* mask() const { return m_bits.data(); }
    [[nodiscard]] unsigned long* mask() { return m_bits.data(); }
    static constexpr unsigned long kMaxNodeArg = kMaxNodes + 1;

    friend bool operator==(const HostNodeSet&, const HostNodeSet&) = default;

private:
    static constexpr uint32_t kBitsPerWord = 8 * sizeof(unsigned long);
    std::array<unsigned long, kMaxNodes / kBitsPerWord> m_bits{};
};

// The Linux memory policies pagevisor uses (QEMU's policy= names).
enum class NumaPolicy : uint8_t {
    Default,     // the process's policy (local allocation); no host nodes
    Bind,        // only these host nodes; the guest node never borrows
    Preferred,   // this one host node first; the guest node may borrow (fallback)
    Interleave,  // round-robin over these host nodes
};
const char* to_string(NumaPolicy policy);
// "default", "bind", "preferred", "interleave"; Usage error otherwise.
Expected<NumaPolicy> parse_numa_policy(std::string_view text);

struct HostNodeInfo {
    HostNodeId id = 0;
    uint64_t total_bytes = 0;
    uint64_t free_bytes = 0;  // when the topology was read
    std::vector<uint32_t> cpus;
};

// The host's NUMA nodes. detect() reads them through libnuma; on a kernel
// without NUMA support it reports one node 0 covering all memory and CPUs,
// with numa_supported() false (then only NumaPolicy::Default can be applied).
// synthetic() builds a topology from a description, for tests and for
// planning on a host other than this one; its free memory never changes.
class HostTopology {
public:
    static Expected<HostTopology> detect();
    // Node ids must be unique and < HostNodeSet::kMaxNodes (asserted).
    static HostTopology synthetic(std::vector<HostNodeInfo> nodes);

    [[nodiscard]] bool numa_supported() const { return m_numa_supported; }
    [[nodiscard]] const std::vector<HostNodeInfo>& nodes() const { return m_nodes; }
    [[nodiscard]] HostNodeSet node_set() const;
    [[nodiscard]] const HostNodeInfo* find(HostNodeId id) const;
    // Free memory of a node now (re-read for a detected topology). Invalid
    // error for an unknown node.
    [[nodiscard]] Expected<uint64_t> free_bytes(HostNodeId id) const;
    // Invalid error naming `what` and the first node of `set` the host lacks.
    [[nodiscard]] Status check_nodes(const HostNodeSet& set, std::string_view what) const;

private:
    std::vector<HostNodeInfo> m_nodes;  // sorted by id
    bool m_numa_supported = false;
    bool m_live = false;  // free_bytes() re-reads the kernel's numbers
};

// The host pool of one guest node.
struct PoolConfig {
    GuestNodeId guest_node = 0;
    HostNodeSet host_nodes;  // empty for Default, exactly one node for Preferred
    NumaPolicy policy = NumaPolicy::Default;
    uint64_t quota_pages = 0;  // 4 KiB pages; 0 = unlimited (bounded by the host)
    // Other guest nodes whose pools this one borrows from, in order, when its
    // quota is exhausted. Only for Preferred (Bind never falls back).
    std::vector<GuestNodeId> fallback;
};

inline constexpr uint32_t kMaxGuestNodes = 64;

// Usage error (one line, naming the guest node) unless: 1..kMaxGuestNodes
// pools whose guest node ids are exactly 0..n-1; host nodes exist in
// `topology` (none for Default, one for Preferred, at least one otherwise);
// fallback only for Preferred, naming other existing guest nodes, no repeats;
// policies other than Default only where the host supports NUMA.
[[nodiscard]] Status validate_pools(const std::vector<PoolConfig>& pools, const HostTopology& topology);

// Why a charge was refused. Cheap to return on the fault path; to_error()
// builds the message only when it is reported.
struct ChargeError {
    enum class Kind : uint8_t {
        OutOfMemory,  // the node's quota (and every fallback's) is exhausted
        InvalidNode,  // no such guest node
    };
    Kind kind = Kind::OutOfMemory;
    GuestNodeId node = 0;  // the node that was asked
    uint64_t pages = 0;
    // OutOfMemory -> Resource "guest out of memory on node N (P pages requested)";
    // InvalidNode -> Invalid "charge to guest node N, which does not exist".
    [[nodiscard]] Error to_error() const;
};
using ChargeResult = mm::Result<GuestNodeId, ChargeError>;

struct NodeStats {
    GuestNodeId node = 0;
    uint64_t used_pages = 0;        // charged against this node's pool (own + lent to others)
    uint64_t quota_pages = 0;       // 0 = unlimited
    uint64_t free_pages = 0;        // quota - used, or the host nodes' free memory
    uint64_t own_pages = 0;         // this node's charges that its own pool paid
    uint64_t borrowed_pages = 0;    // this node's charges that fallback pools paid
    uint64_t fallback_charges = 0;  // number of this node's charges a fallback pool paid
    uint64_t refused_charges = 0;   // number of this node's charges refused (OutOfMemory)
};

// [{"node":0,"used_pages":..,"quota_pages":..,"free_pages":..,"own_pages":..,
//   "borrowed_pages":..,"fallback_charges":..,"refused_charges":..}, ...] for --metrics.
nlohmann::json stats_to_json(const std::vector<NodeStats>& stats);

// Per-guest-node accounting of host frames in use, with quotas and fallback.
//
// A charge for guest node N is paid in full by one pool: N's own, or (policy
// Preferred) the first pool in N's fallback order with room. The charge is
// recorded as N's own pages or as N's pages borrowed from that fallback
// position, so uncharge(N, pages) needs only N: it repays N's borrowings first
// (the last fallback first, the farthest memory), then N's own pages. This
// matches callers that know a frame's guest node but not who paid for it.
//
// Invariants (check_invariants, exact when no charge is in flight): for every
// node, used = own + sum of what other nodes borrowed from it; used <= quota
// when there is a quota; no counter is negative; fallback orders name other
// existing nodes.
//
// Concurrency: lock-free, no global lock. Each node has its own cache line(s)
// of atomic counters; charge is a compare-exchange loop on the paying pool's
// `used` that re-checks the quota against the value it replaces, so concurrent
// charges never overshoot a quota and totals are exact. charge raises `used`
// before own/borrowed and uncharge lowers own/borrowed before `used`, so
// used >= own + lent holds at every instant and `used` never underflows.
// Relaxed ordering suffices: the counters publish no other memory. Stats read
// counters one at a time (each exact, the set not a snapshot). create and
// moves must not race with anything.
//
// Unlimited pools never refuse: host exhaustion shows up when the page is
// populated (UFFDIO_COPY/ZEROPAGE fails with ENOMEM); the caller then uncharges
// and reports ChargeError{OutOfMemory, node}.to_error() itself.
class NodeAccounting {
public:
    // Validates the pools (validate_pools) against `topology`.
    static Expected<NodeAccounting> create(std::vector<PoolConfig> pools, HostTopology topology);

    NodeAccounting(NodeAccounting&&) noexcept = default;
    NodeAccounting& operator=(NodeAccounting&&) noexcept = default;
    NodeAccounting(const NodeAccounting&) = delete;
    NodeAccounting& operator=(const NodeAccounting&) = delete;
    ~NodeAccounting() = default;

    // Charges `pages` frames for guest node `node`; returns the node whose pool
    // paid. pages == 0 succeeds and charges nothing.
    [[nodiscard]] ChargeResult charge(GuestNodeId node, uint64_t pages);
    // Returns `pages` frames charged for guest node `node` (the node given to
    // charge, whoever paid). Invalid error for an unknown node; Internal error
    // (a pagevisor bug) when `node` holds fewer pages: nothing changes, except
    // under a concurrent uncharge race, where what could be repaid is and the
    // message says how many pages were missing.
    [[nodiscard]] Status uncharge(GuestNodeId node, uint64_t pages);

    [[nodiscard]] size_t node_count() const { return m_pools.size(); }
    [[nodiscard]] const PoolConfig& pool(GuestNodeId node) const;  // node < node_count()
    [[nodiscard]] const HostTopology& topology() const { return m_topology; }
    // Pages charged against the pool of `node` (own + lent); node < node_count().
    [[nodiscard]] uint64_t used_pages(GuestNodeId node) const;
    // Pages held by charges for `node` (own + borrowed); node < node_count().
    [[nodiscard]] uint64_t held_pages(GuestNodeId node) const;
    [[nodiscard]] Expected<uint64_t> free_pages(GuestNodeId node) const;
    [[nodiscard]] Expected<NodeStats> stats(GuestNodeId node) const;
    [[nodiscard]] Expected<std::vector<NodeStats>> stats() const;

    [[nodiscard]] bool check_invariants() const;

private:
    struct alignas(64) Counters {
        std::atomic<uint64_t> used{0};
        std::atomic<uint64_t> own{0};
        std::atomic<uint64_t> fallback_charges{0};
        std::atomic<uint64_t> refused_charges{0};
        // borrowed[k]: pages of this node's charges paid by its k-th fallback pool.
        std::array<std::atomic<uint64_t>, kMaxGuestNodes> borrowed{};
    };
    NodeAccounting(std::vector<PoolConfig> pools, HostTopology topology);
    bool try_charge(GuestNodeId payer, uint64_t pages);
    uint64_t repay(GuestNodeId node, uint64_t pages);

    std::vector<PoolConfig> m_pools;  // indexed by guest node id
    HostTopology m_topology;
    std::unique_ptr<Counters[]> m_counters;
};

// mbind()s the host range [start, start + size) per `pool`: Bind ->
// MPOL_BIND with MPOL_MF_STRICT | MPOL_MF_MOVE (pages already there move or
// the call fails), Preferred -> MPOL_PREFERRED, Interleave -> MPOL_INTERLEAVE
// (both with MPOL_MF_MOVE, best effort), Default -> MPOL_DEFAULT. start and
// size must be page aligned, size > 0, and the host nodes usable by this
// process. Errors: Invalid (alignment, empty or unusable node set, range not
// mapped), Resource (EIO: pages could not be moved; ENOMEM; EPERM; no NUMA
// support in the kernel), each one line naming the range, policy and nodes.
[[nodiscard]] Status apply_policy(mm::HostVirtAddr start, uint64_t size, const PoolConfig& pool);

struct MemPolicy {
    NumaPolicy policy = NumaPolicy::Default;
    HostNodeSet nodes;
};
// The policy of the mapping containing `addr` (get_mempolicy with
// MPOL_F_ADDR). Unsupported kernel modes (local, preferred-many) are an
// Internal error naming the mode.
[[nodiscard]] Expected<MemPolicy> query_policy(mm::HostVirtAddr addr);

// The host node of each of `pages` pages from `start` (page aligned), via
// move_pages(pid 0, nodes NULL). Each entry is a node id >= 0, or a negative
// errno for that page: kPageNotPresent (-ENOENT) for a page never touched,
// -EFAULT for an unmapped or zero page. Does not fault anything in.
inline constexpr int kPageNotPresent = -2;  // -ENOENT
[[nodiscard]] Expected<std::vector<int>> verify_placement(mm::HostVirtAddr start, uint64_t pages);

}  // namespace pv::memory
