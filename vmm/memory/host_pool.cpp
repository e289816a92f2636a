// Host NUMA pools: topology, pool validation, lock-free accounting, and the
// mempolicy syscalls (mbind, get_mempolicy, move_pages) behind one file.
#include "vmm/memory/host_pool.h"

#include <numa.h>
#include <numaif.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <limits>

#include <nlohmann/json.hpp>

namespace pv::memory {
namespace {

static_assert(kPageNotPresent == -ENOENT);

std::string hex(uint64_t v) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, 16);
    (void)ec;  // 16 hex digits always fit
    return "0x" + std::string(buf, end);
}

std::string node_str(uint64_t id) { return std::to_string(id); }

// Parses one decimal node id (no sign, no spaces).
bool parse_id(std::string_view s, uint32_t& out) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && p == s.data() + s.size() && out < HostNodeSet::kMaxNodes;
}

bool parse_item(std::string_view item, HostNodeSet& set) {
    uint32_t lo = 0;
    uint32_t hi = 0;
    size_t dash = item.find('-');
    if (dash == std::string_view::npos) {
        if (!parse_id(item, lo)) return false;
        hi = lo;
    } else if (!parse_id(item.substr(0, dash), lo) || !parse_id(item.substr(dash + 1), hi) || lo > hi) {
        return false;
    }
    for (uint32_t id = lo; id <= hi; ++id) set.add(id);
    return true;
}

}  // namespace

// ---- HostNodeSet -------------------------------------------------------------

HostNodeSet HostNodeSet::of(std::initializer_list<HostNodeId> ids) {
    HostNodeSet s;
    for (HostNodeId id : ids) s.add(id);
    return s;
}

Expected<HostNodeSet> HostNodeSet::parse(std::string_view text) {
    HostNodeSet set;
    std::string_view rest = text;
    while (true) {
        size_t sep = rest.find_first_of(",;");
        if (!parse_item(rest.substr(0, sep), set))
            return make_error(ErrorKind::Usage, "invalid host node list '" + std::string(text) +
                                                    "' (expected ids < 1024 like 0, 0-3 or 0,2-3)");
        if (sep == std::string_view::npos) break;
        rest = rest.substr(sep + 1);
    }
    return set;
}

void HostNodeSet::add(HostNodeId id) {
    MM_ASSERT(id < kMaxNodes);
    m_bits[id / kBitsPerWord] |= 1UL << (id % kBitsPerWord);
}

bool HostNodeSet::contains(HostNodeId id) const {
    return id < kMaxNodes && (m_bits[id / kBitsPerWord] >> (id % kBitsPerWord) & 1UL) != 0;
}

bool HostNodeSet::empty() const { return count() == 0; }

uint32_t HostNodeSet::count() const {
    uint32_t n = 0;
    for (unsigned long w : m_bits) n += static_cast<uint32_t>(std::popcount(w));
    return n;
}

std::vector<HostNodeId> HostNodeSet::ids() const {
    std::vector<HostNodeId> out;
    for (HostNodeId id = 0; id < kMaxNodes; ++id)
        if (contains(id)) out.push_back(id);
    return out;
}

std::string HostNodeSet::to_string() const {
    std::vector<HostNodeId> v = ids();
    if (v.empty()) return "none";
    std::string out;
    for (size_t i = 0; i < v.size();) {
        size_t j = i;
        while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
        if (!out.empty()) out += ',';
        out += node_str(v[i]);
        if (j > i) out += '-' + node_str(v[j]);
        i = j + 1;
    }
    return out;
}

// ---- NumaPolicy ----------------------------------------------------------------

const char* to_string(NumaPolicy policy) {
    switch (policy) {
        case NumaPolicy::Default: return "default";
        case NumaPolicy::Bind: return "bind";
        case NumaPolicy::Preferred: return "preferred";
        case NumaPolicy::Interleave: return "interleave";
    }
    return "unknown";
}

Expected<NumaPolicy> parse_numa_policy(std::string_view text) {
    for (NumaPolicy p : {NumaPolicy::Default, NumaPolicy::Bind, NumaPolicy::Preferred, NumaPolicy::Interleave})
        if (text == to_string(p)) return p;
    return make_error(ErrorKind::Usage, "invalid NUMA policy '" + std::string(text) +
                                            "' (expected default, bind, preferred or interleave)");
}

// ---- HostTopology ----------------------------------------------------------------

namespace {

std::vector<uint32_t> node_cpus(int node) {
    std::vector<uint32_t> cpus;
    bitmask* mask = numa_allocate_cpumask();
    if (mask == nullptr) return cpus;
    if (numa_node_to_cpus(node, mask) == 0) {
        for (unsigned cpu = 0; cpu < mask->size; ++cpu)
            if (numa_bitmask_isbitset(mask, cpu) != 0) cpus.push_back(cpu);
    }
    numa_bitmask_free(mask);
    return cpus;
}

HostNodeInfo whole_machine_node() {
    auto page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    HostNodeInfo n;
    n.total_bytes = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * page;
    n.free_bytes = static_cast<uint64_t>(sysconf(_SC_AVPHYS_PAGES)) * page;
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);
    for (long c = 0; c < ncpu; ++c) n.cpus.push_back(static_cast<uint32_t>(c));
    return n;
}

}  // namespace

Expected<HostTopology> HostTopology::detect() {
    HostTopology t;
    t.m_live = true;
    if (numa_available() < 0) {
        t.m_nodes.push_back(whole_machine_node());
        return t;
    }
    t.m_numa_supported = true;
    int max = numa_max_node();
    for (int node = 0; node <= max && node < static_cast<int>(HostNodeSet::kMaxNodes); ++node) {
        if (numa_bitmask_isbitset(numa_nodes_ptr, static_cast<unsigned>(node)) == 0) continue;
        long long free = 0;
        long long total = numa_node_size64(node, &free);
        if (total < 0)
            return errno_error(ErrorKind::Resource,
                               "cannot read the size of host NUMA node " + node_str(static_cast<uint64_t>(node)));
        t.m_nodes.push_back(HostNodeInfo{static_cast<HostNodeId>(node), static_cast<uint64_t>(total),
                                         static_cast<uint64_t>(std::max(free, 0LL)), node_cpus(node)});
    }
    if (t.m_nodes.empty()) return make_error(ErrorKind::Resource, "libnuma reports no host NUMA nodes");
    return t;
}

HostTopology HostTopology::synthetic(std::vector<HostNodeInfo> nodes) {
    HostTopology t;
    std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    for (size_t i = 0; i < nodes.size(); ++i) {
        MM_ASSERT(nodes[i].id < HostNodeSet::kMaxNodes);
        MM_ASSERT(i == 0 || nodes[i].id != nodes[i - 1].id);
    }
    t.m_nodes = std::move(nodes);
    t.m_numa_supported = true;
    return t;
}

HostNodeSet HostTopology::node_set() const {
    HostNodeSet s;
    for (const auto& n : m_nodes) s.add(n.id);
    return s;
}

const HostNodeInfo* HostTopology::find(HostNodeId id) const {
    for (const auto& n : m_nodes)
        if (n.id == id) return &n;
    return nullptr;
}

Expected<uint64_t> HostTopology::free_bytes(HostNodeId id) const {
    const HostNodeInfo* n = find(id);
    if (n == nullptr) return make_error(ErrorKind::Invalid, "host NUMA node " + node_str(id) + " does not exist");
    if (!m_live) return n->free_bytes;
    if (!m_numa_supported) return whole_machine_node().free_bytes;
    long long free = 0;
    if (numa_node_size64(static_cast<int>(id), &free) < 0)
        return errno_error(ErrorKind::Resource, "cannot read the free memory of host NUMA node " + node_str(id));
    return static_cast<uint64_t>(std::max(free, 0LL));
}

Status HostTopology::check_nodes(const HostNodeSet& set, std::string_view what) const {
    for (HostNodeId id : set.ids())
        if (find(id) == nullptr)
            return make_error(ErrorKind::Invalid, std::string(what) + ": host NUMA node " + node_str(id) +
                                                      " does not exist (host nodes: " + node_set().to_string() + ")");
    return {};
}

// ---- pool validation -------------------------------------------------------------

namespace {

Status pool_error(GuestNodeId node, const std::string& why) {
    return make_error(ErrorKind::Usage, "guest NUMA node " + node_str(node) + ": " + why);
}

Status validate_host_nodes(const PoolConfig& p, const HostTopology& topology) {
    uint32_t n = p.host_nodes.count();
    if (p.policy == NumaPolicy::Default && n != 0)
        return pool_error(p.guest_node, "host nodes " + p.host_nodes.to_string() +
                                            " given with policy default (choose bind, preferred or interleave)");
    if (p.policy != NumaPolicy::Default && n == 0)
        return pool_error(p.guest_node, std::string("policy ") + to_string(p.policy) + " needs host nodes");
    if (p.policy == NumaPolicy::Preferred && n != 1)
        return pool_error(p.guest_node,
                          "policy preferred takes exactly one host node, not " + p.host_nodes.to_string());
    if (p.policy != NumaPolicy::Default && !topology.numa_supported())
        return pool_error(p.guest_node, std::string("policy ") + to_string(p.policy) +
                                            " needs NUMA support in the host kernel, which is missing");
    if (auto s = topology.check_nodes(p.host_nodes, "host nodes"); !s)
        return pool_error(p.guest_node, s.error().message);
    return {};
}

Status validate_fallback(const PoolConfig& p, size_t pool_count) {
    if (!p.fallback.empty() && p.policy != NumaPolicy::Preferred)
        return pool_error(p.guest_node, std::string("a fallback order needs policy preferred (policy ") +
                                            to_string(p.policy) + " never borrows)");
    std::vector<bool> seen(pool_count, false);
    for (GuestNodeId f : p.fallback) {
        if (f >= pool_count) return pool_error(p.guest_node, "fallback guest node " + node_str(f) + " does not exist");
        if (f == p.guest_node) return pool_error(p.guest_node, "fallback order names the node itself");
        if (seen[f]) return pool_error(p.guest_node, "fallback order names guest node " + node_str(f) + " twice");
        seen[f] = true;
    }
    return {};
}

}  // namespace

Status validate_pools(const std::vector<PoolConfig>& pools, const HostTopology& topology) {
    if (pools.empty() || pools.size() > kMaxGuestNodes)
        return make_error(ErrorKind::Usage, "a guest needs 1 to " + node_str(kMaxGuestNodes) + " NUMA nodes, not " +
                                                node_str(pools.size()));
    std::vector<bool> seen(pools.size(), false);
    for (const PoolConfig& p : pools) {
        if (p.guest_node >= pools.size())
            return pool_error(p.guest_node, "guest node ids must be 0.." + node_str(pools.size() - 1));
        if (seen[p.guest_node]) return pool_error(p.guest_node, "defined twice");
        seen[p.guest_node] = true;
        PV_TRY(validate_host_nodes(p, topology));
        PV_TRY(validate_fallback(p, pools.size()));
    }
    return {};
}

// ---- NodeAccounting --------------------------------------------------------------

Error ChargeError::to_error() const {
    if (kind == Kind::InvalidNode)
        return Error{ErrorKind::Invalid, 0, "charge to guest NUMA node " + node_str(node) + ", which does not exist"};
    return Error{ErrorKind::GuestOutOfMemory, 0,
                 "guest out of memory on node " + node_str(node) + " (" + node_str(pages) + " pages requested)"};
}

Expected<NodeAccounting> NodeAccounting::create(std::vector<PoolConfig> pools, HostTopology topology) {
    PV_TRY(validate_pools(pools, topology));
    std::sort(pools.begin(), pools.end(), [](const auto& a, const auto& b) { return a.guest_node < b.guest_node; });
    return NodeAccounting(std::move(pools), std::move(topology));
}

NodeAccounting::NodeAccounting(std::vector<PoolConfig> pools, HostTopology topology)
    : m_pools(std::move(pools)),
      m_topology(std::move(topology)),
      m_counters(std::make_unique<Counters[]>(m_pools.size())) {}

bool NodeAccounting::try_charge(GuestNodeId payer, uint64_t pages) {
    uint64_t quota = m_pools[payer].quota_pages;
    uint64_t limit = quota == 0 ? std::numeric_limits<uint64_t>::max() : quota;
    std::atomic<uint64_t>& used = m_counters[payer].used;
    uint64_t cur = used.load(std::memory_order_relaxed);
    do {
        if (pages > limit - cur) return false;
    } while (!used.compare_exchange_weak(cur, cur + pages, std::memory_order_relaxed));
    return true;
}

ChargeResult NodeAccounting::charge(GuestNodeId node, uint64_t pages) {
    if (node >= m_pools.size()) return mm::Unexpected<ChargeError>{{ChargeError::Kind::InvalidNode, node, pages}};
    Counters& c = m_counters[node];
    if (try_charge(node, pages)) {
        c.own.fetch_add(pages, std::memory_order_relaxed);
        return node;
    }
    // Only Preferred pools have a fallback order (validate_pools).
    const std::vector<GuestNodeId>& order = m_pools[node].fallback;
    for (size_t k = 0; k < order.size(); ++k) {
        if (try_charge(order[k], pages)) {
            c.borrowed[k].fetch_add(pages, std::memory_order_relaxed);
            c.fallback_charges.fetch_add(1, std::memory_order_relaxed);
            return order[k];
        }
    }
    c.refused_charges.fetch_add(1, std::memory_order_relaxed);
    return mm::Unexpected<ChargeError>{{ChargeError::Kind::OutOfMemory, node, pages}};
}

namespace {

// Subtracts min(counter, want) from `counter`; returns what it took.
uint64_t take_up_to(std::atomic<uint64_t>& counter, uint64_t want) {
    uint64_t cur = counter.load(std::memory_order_relaxed);
    uint64_t take = 0;
    do {
        take = std::min(cur, want);
        if (take == 0) return 0;
    } while (!counter.compare_exchange_weak(cur, cur - take, std::memory_order_relaxed));
    return take;
}

}  // namespace

// Repays up to `pages` of node's holdings, borrowings from the last fallback
// first; returns how many pages could not be repaid.
uint64_t NodeAccounting::repay(GuestNodeId node, uint64_t pages) {
    Counters& c = m_counters[node];
    const std::vector<GuestNodeId>& order = m_pools[node].fallback;
    for (size_t k = order.size(); k-- > 0 && pages > 0;) {
        uint64_t took = take_up_to(c.borrowed[k], pages);
        m_counters[order[k]].used.fetch_sub(took, std::memory_order_relaxed);
        pages -= took;
    }
    uint64_t took = take_up_to(c.own, pages);
    c.used.fetch_sub(took, std::memory_order_relaxed);
    return pages - took;
}

Status NodeAccounting::uncharge(GuestNodeId node, uint64_t pages) {
    if (node >= m_pools.size())
        return make_error(ErrorKind::Invalid,
                          "uncharge for guest NUMA node " + node_str(node) + ", which does not exist");
    // Messages are built only on failure: uncharge is on the unmap and fault-failure paths.
    auto what = [&] { return "uncharge of " + node_str(pages) + " pages for guest NUMA node " + node_str(node); };
    if (uint64_t held = held_pages(node); pages > held)
        return make_error(ErrorKind::Internal, what() + ", which holds only " + node_str(held) + " (accounting bug)");
    if (uint64_t missing = repay(node, pages); missing != 0)
        return make_error(ErrorKind::Internal,
                          what() + ": " + node_str(missing) + " pages were not held (concurrent accounting bug)");
    return {};
}

const PoolConfig& NodeAccounting::pool(GuestNodeId node) const {
    MM_ASSERT(node < m_pools.size());
    return m_pools[node];
}

uint64_t NodeAccounting::used_pages(GuestNodeId node) const {
    MM_ASSERT(node < m_pools.size());
    return m_counters[node].used.load(std::memory_order_relaxed);
}

uint64_t NodeAccounting::held_pages(GuestNodeId node) const {
    MM_ASSERT(node < m_pools.size());
    const Counters& c = m_counters[node];
    uint64_t held = c.own.load(std::memory_order_relaxed);
    for (size_t k = 0; k < m_pools[node].fallback.size(); ++k) held += c.borrowed[k].load(std::memory_order_relaxed);
    return held;
}

Expected<uint64_t> NodeAccounting::free_pages(GuestNodeId node) const {
    if (node >= m_pools.size())
        return make_error(ErrorKind::Invalid, "guest NUMA node " + node_str(node) + " does not exist");
    const PoolConfig& p = m_pools[node];
    if (p.quota_pages != 0) {
        uint64_t used = used_pages(node);
        return used >= p.quota_pages ? 0 : p.quota_pages - used;
    }
    // Unlimited: what the host nodes behind the pool have free (all nodes for Default).
    HostNodeSet hosts = p.policy == NumaPolicy::Default ? m_topology.node_set() : p.host_nodes;
    uint64_t bytes = 0;
    for (HostNodeId h : hosts.ids()) {
        PV_TRY_ASSIGN(uint64_t f, m_topology.free_bytes(h));
        bytes += f;
    }
    return bytes / mm::kPageSize;
}

Expected<NodeStats> NodeAccounting::stats(GuestNodeId node) const {
    PV_TRY_ASSIGN(uint64_t free, free_pages(node));
    const Counters& c = m_counters[node];
    NodeStats s;
    s.node = node;
    s.used_pages = c.used.load(std::memory_order_relaxed);
    s.quota_pages = m_pools[node].quota_pages;
    s.free_pages = free;
    s.own_pages = c.own.load(std::memory_order_relaxed);
    s.borrowed_pages = held_pages(node) - s.own_pages;
    s.fallback_charges = c.fallback_charges.load(std::memory_order_relaxed);
    s.refused_charges = c.refused_charges.load(std::memory_order_relaxed);
    return s;
}

Expected<std::vector<NodeStats>> NodeAccounting::stats() const {
    std::vector<NodeStats> out;
    for (GuestNodeId n = 0; n < m_pools.size(); ++n) {
        PV_TRY_ASSIGN(NodeStats s, stats(n));
        out.push_back(s);
    }
    return out;
}

nlohmann::json stats_to_json(const std::vector<NodeStats>& stats) {
    nlohmann::json out = nlohmann::json::array();
    for (const NodeStats& s : stats) {
        out.push_back({{"node", s.node},
                       {"used_pages", s.used_pages},
                       {"quota_pages", s.quota_pages},
                       {"free_pages", s.free_pages},
                       {"own_pages", s.own_pages},
                       {"borrowed_pages", s.borrowed_pages},
                       {"fallback_charges", s.fallback_charges},
                       {"refused_charges", s.refused_charges}});
    }
    return out;
}

bool NodeAccounting::check_invariants() const {
    if (m_counters == nullptr) return m_pools.empty();
    std::vector<uint64_t> expect(m_pools.size(), 0);  // own + lent, per pool
    for (GuestNodeId n = 0; n < m_pools.size(); ++n) {
        const PoolConfig& p = m_pools[n];
        if (p.guest_node != n || p.fallback.size() >= kMaxGuestNodes) return false;
        expect[n] += m_counters[n].own.load(std::memory_order_relaxed);
        for (size_t k = 0; k < p.fallback.size(); ++k) {
            if (p.fallback[k] >= m_pools.size() || p.fallback[k] == n) return false;
            expect[p.fallback[k]] += m_counters[n].borrowed[k].load(std::memory_order_relaxed);
        }
    }
    for (GuestNodeId n = 0; n < m_pools.size(); ++n) {
        uint64_t used = used_pages(n);
        if (used != expect[n]) return false;
        if (m_pools[n].quota_pages != 0 && used > m_pools[n].quota_pages) return false;
    }
    return true;
}

// ---- mempolicy syscalls -------------------------------------------------------------

namespace {

int kernel_mode(NumaPolicy p) {
    switch (p) {
        case NumaPolicy::Default: return MPOL_DEFAULT;
        case NumaPolicy::Bind: return MPOL_BIND;
        case NumaPolicy::Preferred: return MPOL_PREFERRED;
        case NumaPolicy::Interleave: return MPOL_INTERLEAVE;
    }
    return MPOL_DEFAULT;
}

unsigned kernel_flags(NumaPolicy p) {
    switch (p) {
        case NumaPolicy::Default: return 0;
        case NumaPolicy::Bind: return MPOL_MF_STRICT | MPOL_MF_MOVE;
        case NumaPolicy::Preferred:
        case NumaPolicy::Interleave: return MPOL_MF_MOVE;
    }
    return 0;
}

// The first node of `set` this process may not allocate from, or -1.
long first_unusable_node(const HostNodeSet& set) {
    bitmask* allowed = numa_get_mems_allowed();
    long bad = -1;
    for (HostNodeId id : set.ids()) {
        if (allowed == nullptr || id >= allowed->size || numa_bitmask_isbitset(allowed, id) == 0) {
            bad = id;
            break;
        }
    }
    if (allowed != nullptr) numa_bitmask_free(allowed);
    return bad;
}

std::string mbind_errno_reason(int e) {
    switch (e) {
        case EFAULT: return "the range is not entirely mapped";
        case EINVAL: return "the kernel rejected the range or node set";
        case EIO: return "pages already present could not be moved to those nodes";
        case ENOMEM: return "the kernel is out of memory";
        case EPERM: return "not permitted";
        case ENOSYS: return "the host kernel has no NUMA support";
        default: return "mbind failed";
    }
}

ErrorKind mbind_errno_kind(int e) { return e == EFAULT || e == EINVAL ? ErrorKind::Invalid : ErrorKind::Resource; }

}  // namespace

Status apply_policy(mm::HostVirtAddr start, uint64_t size, const PoolConfig& pool) {
    std::string what = "mbind of HVA [" + hex(start.value()) + ", +" + hex(size) + ") with policy " +
                       to_string(pool.policy) + " on host nodes " + pool.host_nodes.to_string();
    if (size == 0 || !mm::is_aligned(start.value(), mm::kPageSize) || !mm::is_aligned(size, mm::kPageSize) ||
        start.value() > UINT64_MAX - size)
        return make_error(ErrorKind::Invalid, what + ": start and size must be page aligned and size non-zero");
    bool is_default = pool.policy == NumaPolicy::Default;
    if (is_default != pool.host_nodes.empty())
        return make_error(ErrorKind::Invalid, what + ": policy default takes no host nodes, the others need some");
    if (!is_default && numa_available() < 0)
        return make_error(ErrorKind::Resource, what + ": the host kernel has no NUMA support");
    long bad = is_default ? -1 : first_unusable_node(pool.host_nodes);
    if (bad >= 0)
        return make_error(ErrorKind::Invalid, what + ": host node " + node_str(static_cast<uint64_t>(bad)) +
                                                  " does not exist or is not allowed for this process");
    void* addr = reinterpret_cast<void*>(start.value());  // NOLINT(performance-no-int-to-ptr)
    long rc = is_default ? mbind(addr, size, MPOL_DEFAULT, nullptr, 0, 0)
                         : mbind(addr, size, kernel_mode(pool.policy), pool.host_nodes.mask(), HostNodeSet::kMaxNodeArg,
                                 kernel_flags(pool.policy));
    if (rc != 0) {
        int e = errno;
        return make_error(mbind_errno_kind(e), what + ": " + mbind_errno_reason(e), e);
    }
    return {};
}

Expected<MemPolicy> query_policy(mm::HostVirtAddr addr) {
    int mode = 0;
    MemPolicy out;
    void* a = reinterpret_cast<void*>(addr.value());  // NOLINT(performance-no-int-to-ptr)
    if (get_mempolicy(&mode, out.nodes.mask(), HostNodeSet::kMaxNodeArg, a, MPOL_F_ADDR) != 0)
        return errno_error(mbind_errno_kind(errno), "get_mempolicy of HVA " + hex(addr.value()));
    // The mode may carry MPOL_F_STATIC_NODES / MPOL_F_RELATIVE_NODES in its high bits.
    mode &= 0xff;
    switch (mode) {
        case MPOL_DEFAULT: out.policy = NumaPolicy::Default; break;
        case MPOL_BIND: out.policy = NumaPolicy::Bind; break;
        case MPOL_PREFERRED: out.policy = NumaPolicy::Preferred; break;
        case MPOL_INTERLEAVE: out.policy = NumaPolicy::Interleave; break;
        default:
            return make_error(ErrorKind::Internal, "get_mempolicy of HVA " + hex(addr.value()) +
                                                       ": unsupported kernel policy mode " +
                                                       node_str(static_cast<uint64_t>(mode)));
    }
    return out;
}

Expected<std::vector<int>> verify_placement(mm::HostVirtAddr start, uint64_t pages) {
    std::string what = "move_pages query of " + node_str(pages) + " pages at HVA " + hex(start.value());
    if (!mm::is_aligned(start.value(), mm::kPageSize) || pages > (UINT64_MAX - start.value()) / mm::kPageSize)
        return make_error(ErrorKind::Invalid, what + ": start must be page aligned and the range must not wrap");
    std::vector<void*> addrs(pages);
    for (uint64_t i = 0; i < pages; ++i)
        addrs[i] = reinterpret_cast<void*>(start.value() + i * mm::kPageSize);  // NOLINT(performance-no-int-to-ptr)
    std::vector<int> status(pages, 0);
    if (pages == 0) return status;
    if (move_pages(0, pages, addrs.data(), nullptr, status.data(), 0) != 0)
        return errno_error(errno == ENOSYS ? ErrorKind::Resource : ErrorKind::Invalid, what);
    return status;
}

}  // namespace pv::memory
