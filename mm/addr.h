// Strong address types, frame numbers, ranges, alignment, page sizes and permissions.
//
// Four address spaces never mix (STYLE.md rule 1):
//   HostVirtAddr   an address in the VMM process
//   GuestPhysAddr  a guest-physical address (what guest page tables point at)
//   GuestVirtAddr  a guest-virtual address (what guest code uses)
//   HostPhysAddr   a host-physical address (reported only, e.g. by pagemap)
// `Addr<Tag>` has an explicit constructor and `value()` is the only way out.
// address + size -> address, address - address -> size, address + address does
// not compile. Operators assert on wrap-around (a wrapped address is always a
// bug); `checked_add`/`checked_sub`/`align_up` return Result for values that come
// from outside (the guest, the command line).
//
// Ranges store start and size and expose an inclusive `last()`, so a range that
// ends exactly at 2^64 is representable. A range's size is at most 2^64-1.
#pragma once

#include "mm/result.h"
#include "mm/std.h"

namespace mm {

// ---- alignment helpers (power-of-two checked) -------------------------------

constexpr bool is_power_of_two(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

// `align` must be a power of two (asserted: callers validate untrusted input first).
constexpr uint64_t align_down(uint64_t x, uint64_t align) {
    MM_ASSERT(is_power_of_two(align));
    return x & ~(align - 1);
}
constexpr bool is_aligned(uint64_t x, uint64_t align) {
    MM_ASSERT(is_power_of_two(align));
    return (x & (align - 1)) == 0;
}
// InvalidParam if align is not a power of two, Overflow if rounding up passes 2^64.
constexpr Result<uint64_t> align_up(uint64_t x, uint64_t align) {
    if (!is_power_of_two(align)) return err(Error::InvalidParam);
    uint64_t down = x & ~(align - 1);
    if (down == x) return x;
    if (down > UINT64_MAX - align) return err(Error::Overflow);
    return down + align;
}
constexpr Result<uint64_t> checked_add(uint64_t a, uint64_t b) {
    uint64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) return err(Error::Overflow);
    return r;
}
constexpr Result<uint64_t> checked_mul(uint64_t a, uint64_t b) {
    uint64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) return err(Error::Overflow);
    return r;
}

// ---- page sizes ---------------------------------------------------------------

enum class PageSize : uint64_t {
    Size4K = 0x1000,
    Size2M = 0x20'0000,
    Size1G = 0x4000'0000,
};
constexpr uint64_t bytes(PageSize s) { return static_cast<uint64_t>(s); }
inline constexpr uint64_t kPageSize = bytes(PageSize::Size4K);
inline constexpr uint64_t kPageShift = 12;

// ---- address tags -------------------------------------------------------------

struct HostVirtTag {
    static constexpr const char* kName = "HVA";
};
struct GuestPhysTag {
    static constexpr const char* kName = "GPA";
};
struct GuestVirtTag {
    static constexpr const char* kName = "GVA";
};
struct HostPhysTag {
    static constexpr const char* kName = "HPA";
};

template <class Tag>
class Addr {
public:
    using tag_type = Tag;

    constexpr Addr() = default;
    constexpr explicit Addr(uint64_t value) : m_value(value) {}

    // The null address of this space (address 0 is valid in guest spaces).
    static constexpr Addr zero() { return Addr(0); }
    static constexpr Addr max() { return Addr(UINT64_MAX); }

    [[nodiscard]] constexpr uint64_t value() const { return m_value; }

    // address + size -> address; wrap-around is a bug and traps.
    constexpr Addr operator+(uint64_t size) const {
        MM_ASSERT(m_value <= UINT64_MAX - size);
        return Addr(m_value + size);
    }
    constexpr Addr operator-(uint64_t size) const {
        MM_ASSERT(m_value >= size);
        return Addr(m_value - size);
    }
    constexpr Addr& operator+=(uint64_t size) { return *this = *this + size; }
    constexpr Addr& operator-=(uint64_t size) { return *this = *this - size; }
    // address - address -> size (the left one must not be below the right one).
    constexpr uint64_t operator-(Addr other) const {
        MM_ASSERT(m_value >= other.m_value);
        return m_value - other.m_value;
    }
    // address + address: deliberately not defined.
    template <class T>
    Addr operator+(Addr<T>) const = delete;

    [[nodiscard]] constexpr Result<Addr> checked_add(uint64_t size) const {
        MM_TRY_ASSIGN(uint64_t v, ::mm::checked_add(m_value, size));
        return Addr(v);
    }
    [[nodiscard]] constexpr Result<Addr> checked_sub(uint64_t size) const {
        if (m_value < size) return err(Error::Overflow);
        return Addr(m_value - size);
    }

    [[nodiscard]] constexpr Addr align_down(uint64_t align) const { return Addr(::mm::align_down(m_value, align)); }
    [[nodiscard]] constexpr Result<Addr> align_up(uint64_t align) const {
        MM_TRY_ASSIGN(uint64_t v, ::mm::align_up(m_value, align));
        return Addr(v);
    }
    [[nodiscard]] constexpr bool is_aligned(uint64_t align) const { return ::mm::is_aligned(m_value, align); }
    [[nodiscard]] constexpr bool is_page_aligned() const { return is_aligned(kPageSize); }
    [[nodiscard]] constexpr Addr page_base() const { return align_down(kPageSize); }
    [[nodiscard]] constexpr uint64_t page_offset() const { return m_value & (kPageSize - 1); }

    constexpr auto operator<=>(const Addr&) const = default;

private:
    uint64_t m_value = 0;
};

using HostVirtAddr = Addr<HostVirtTag>;
using GuestPhysAddr = Addr<GuestPhysTag>;
using GuestVirtAddr = Addr<GuestVirtTag>;
using HostPhysAddr = Addr<HostPhysTag>;

template <class T>
concept AddressType = requires {
    typename T::tag_type;
}
&&std::same_as<T, Addr<typename T::tag_type>>;

// Host pointers enter and leave the HostVirt space only through these two.
inline HostVirtAddr host_addr(const void* p) { return HostVirtAddr(reinterpret_cast<uintptr_t>(p)); }
template <class T = std::byte>
inline T* host_ptr(HostVirtAddr a) {
    return reinterpret_cast<T*>(static_cast<uintptr_t>(a.value()));
}

// ---- frame numbers ------------------------------------------------------------

// A 4 KiB frame number in one physical space (guest-physical or host-physical).
// Page-table entries hold a GuestFrame, never a raw integer.
template <class Tag>
class Frame {
public:
    using tag_type = Tag;
    // The largest frame number whose address fits in 64 bits.
    static constexpr uint64_t kMaxNumber = UINT64_MAX >> kPageShift;

    constexpr Frame() = default;
    constexpr explicit Frame(uint64_t number) : m_number(number) { MM_ASSERT(number <= kMaxNumber); }

    static constexpr Frame containing(Addr<Tag> a) { return Frame(a.value() >> kPageShift); }
    // InvalidParam if `a` is not page aligned.
    static constexpr Result<Frame> from_aligned(Addr<Tag> a) {
        if (!a.is_page_aligned()) return err(Error::InvalidParam);
        return Frame(a.value() >> kPageShift);
    }

    [[nodiscard]] constexpr uint64_t number() const { return m_number; }
    [[nodiscard]] constexpr Addr<Tag> start_address() const { return Addr<Tag>(m_number << kPageShift); }

    constexpr Frame operator+(uint64_t n) const {
        MM_ASSERT(n <= kMaxNumber - m_number);
        return Frame(m_number + n);
    }
    constexpr uint64_t operator-(Frame other) const {
        MM_ASSERT(m_number >= other.m_number);
        return m_number - other.m_number;
    }
    constexpr auto operator<=>(const Frame&) const = default;

private:
    uint64_t m_number = 0;
};

using GuestFrame = Frame<GuestPhysTag>;
using HostFrame = Frame<HostPhysTag>;

// ---- ranges -------------------------------------------------------------------

// A half-open range [start, start + size) of one address space, stored as start
// and size. Invariant: size == 0 or start + size - 1 <= 2^64 - 1 (no wrap).
// An empty range has no last(); it overlaps nothing and contains nothing.
template <class Tag>
class Range {
public:
    using addr_type = Addr<Tag>;

    constexpr Range() = default;

    // Overflow if the range would wrap past 2^64.
    static constexpr Result<Range> try_create(addr_type start, uint64_t size) {
        if (size != 0 && size - 1 > UINT64_MAX - start.value()) return err(Error::Overflow);
        return Range(start, size);
    }
    // For ranges known to be valid (constants, already validated values): traps on wrap.
    static constexpr Range from_start_size(addr_type start, uint64_t size) {
        MM_ASSERT(size == 0 || size - 1 <= UINT64_MAX - start.value());
        return Range(start, size);
    }
    // [start, last], inclusive; InvalidParam if last < start or the size would be 2^64.
    static constexpr Result<Range> from_inclusive(addr_type start, addr_type last) {
        if (last < start) return err(Error::InvalidParam);
        uint64_t span = last.value() - start.value();
        if (span == UINT64_MAX) return err(Error::Overflow);
        return Range(start, span + 1);
    }
    // [start, end) with end given as an address below 2^64.
    static constexpr Result<Range> from_bounds(addr_type start, addr_type end) {
        if (end < start) return err(Error::InvalidParam);
        return Range(start, end.value() - start.value());
    }

    [[nodiscard]] constexpr addr_type start() const { return m_start; }
    [[nodiscard]] constexpr uint64_t size() const { return m_size; }
    [[nodiscard]] constexpr bool is_empty() const { return m_size == 0; }
    // Inclusive last address; the range must not be empty.
    [[nodiscard]] constexpr addr_type last() const {
        MM_ASSERT(m_size != 0);
        return addr_type(m_start.value() + (m_size - 1));
    }
    // Exclusive end, when it is below 2^64 (Overflow when the range ends exactly at 2^64).
    [[nodiscard]] constexpr Result<addr_type> end() const { return m_start.checked_add(m_size); }
    [[nodiscard]] constexpr bool ends_at_top() const { return m_size != 0 && last() == addr_type::max(); }

    [[nodiscard]] constexpr bool contains(addr_type a) const {
        return m_size != 0 && a >= m_start && a.value() - m_start.value() <= m_size - 1;
    }
    [[nodiscard]] constexpr bool contains(const Range& r) const {
        if (r.is_empty()) return true;
        return contains(r.m_start) && contains(r.last());
    }
    [[nodiscard]] constexpr bool overlaps(const Range& r) const {
        if (is_empty() || r.is_empty()) return false;
        return m_start <= r.last() && r.m_start <= last();
    }
    // The intersection; empty if they do not overlap.
    [[nodiscard]] constexpr Range intersect(const Range& r) const {
        if (!overlaps(r)) return Range();
        addr_type s = m_start > r.m_start ? m_start : r.m_start;
        addr_type l = last() < r.last() ? last() : r.last();
        return Range(s, l.value() - s.value() + 1);
    }
    [[nodiscard]] constexpr bool is_aligned(uint64_t align) const {
        return m_start.is_aligned(align) && ::mm::is_aligned(m_size, align);
    }

    constexpr bool operator==(const Range&) const = default;

private:
    constexpr Range(addr_type start, uint64_t size) : m_start(start), m_size(size) {}
    addr_type m_start{};
    uint64_t m_size = 0;
};

using HostVirtRange = Range<HostVirtTag>;
using GuestPhysRange = Range<GuestPhysTag>;
using GuestVirtRange = Range<GuestVirtTag>;

// ---- permissions / access kinds -----------------------------------------------

// Permission bits of an area or a mapping, and the kind of an access (one or
// more bits). `User` means CPL3 may access it.
enum class Perm : uint8_t {
    None = 0,
    Read = 1U << 0,
    Write = 1U << 1,
    Exec = 1U << 2,
    User = 1U << 3,
};
constexpr Perm operator|(Perm a, Perm b) { return Perm(uint8_t(a) | uint8_t(b)); }
constexpr Perm operator&(Perm a, Perm b) { return Perm(uint8_t(a) & uint8_t(b)); }
constexpr Perm operator~(Perm a) { return Perm(uint8_t(~uint8_t(a)) & 0xF); }
constexpr Perm& operator|=(Perm& a, Perm b) { return a = a | b; }
constexpr Perm& operator&=(Perm& a, Perm b) { return a = a & b; }
constexpr bool has(Perm set, Perm bits) { return (set & bits) == bits; }
inline constexpr Perm kPermRW = Perm::Read | Perm::Write;
inline constexpr Perm kPermRX = Perm::Read | Perm::Exec;
inline constexpr Perm kPermRWX = Perm::Read | Perm::Write | Perm::Exec;
inline constexpr Perm kPermAll = Perm::Read | Perm::Write | Perm::Exec | Perm::User;

// Whether an access of kind `access` is allowed by permissions `allowed`.
// Write implies read permission is not required (x86 has no write-only pages;
// callers map Write to Read|Write when building page tables).
constexpr bool allows(Perm allowed, Perm access) { return has(allowed, access); }

}  // namespace mm
