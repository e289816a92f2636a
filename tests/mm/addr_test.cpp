// mm/addr.h and mm/result.h: checked arithmetic, alignment, ranges at the top
// of the address space, frames, permissions, and Result with non-trivial types.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "mm/addr.h"
#include "mm/result.h"

namespace {

using namespace mm;

constexpr uint64_t kTopPage = UINT64_MAX - kPageSize + 1;

TEST(AlignHelpers, PowerOfTwoAndAlignment) {
    EXPECT_FALSE(is_power_of_two(0));
    EXPECT_TRUE(is_power_of_two(1));
    EXPECT_TRUE(is_power_of_two(uint64_t{1} << 63));
    EXPECT_FALSE(is_power_of_two((uint64_t{1} << 63) + 1));
    EXPECT_FALSE(is_power_of_two(UINT64_MAX));
    EXPECT_EQ(align_down(0x1fff, 0x1000), 0x1000U);
    EXPECT_EQ(align_down(UINT64_MAX, 0x1000), kTopPage);
    EXPECT_TRUE(is_aligned(0, uint64_t{1} << 63));
    EXPECT_FALSE(is_aligned(0x1001, 2));
    EXPECT_EQ(align_up(0x1001, 0x1000).value(), 0x2000U);
    EXPECT_EQ(align_up(0x1000, 0x1000).value(), 0x1000U);
    EXPECT_EQ(align_up(0, 0x1000).value(), 0U);
    EXPECT_EQ(align_up(kTopPage, 0x1000).value(), kTopPage);  // already aligned at the top
    EXPECT_EQ(align_up(kTopPage - 1, 0x1000).value(), kTopPage);
    EXPECT_EQ(align_up(kTopPage + 1, 0x1000).error(), Error::Overflow);
    EXPECT_EQ(align_up(UINT64_MAX, 2).error(), Error::Overflow);
    EXPECT_EQ(align_up(1, uint64_t{1} << 63).value(), uint64_t{1} << 63);
    EXPECT_EQ(align_up(5, 0).error(), Error::InvalidParam);
    EXPECT_EQ(align_up(5, 3).error(), Error::InvalidParam);
    EXPECT_EQ(align_up(5, 1).value(), 5U);
}

TEST(CheckedArithmetic, AddMulSub) {
    EXPECT_EQ(checked_add(UINT64_MAX - 1, 1).value(), UINT64_MAX);
    EXPECT_EQ(checked_add(UINT64_MAX, 1).error(), Error::Overflow);
    EXPECT_EQ(checked_mul(uint64_t{1} << 32, (uint64_t{1} << 32) - 1).value(),
              (uint64_t{1} << 32) * ((uint64_t{1} << 32) - 1));
    EXPECT_EQ(checked_mul(uint64_t{1} << 32, uint64_t{1} << 32).error(), Error::Overflow);
    EXPECT_EQ(checked_mul(0, UINT64_MAX).value(), 0U);
    GuestPhysAddr a(0x1000);
    EXPECT_EQ(a.checked_add(UINT64_MAX - 0x1000).value(), GuestPhysAddr::max());
    EXPECT_EQ(a.checked_add(UINT64_MAX - 0xfff).error(), Error::Overflow);
    EXPECT_EQ(a.checked_sub(0x1000).value(), GuestPhysAddr::zero());
    EXPECT_EQ(a.checked_sub(0x1001).error(), Error::Overflow);
    static_assert(checked_add(1, 2).value() == 3);  // usable in constant expressions
}

TEST(AddrType, ArithmeticAndComparison) {
    GuestVirtAddr a(0x1234);
    EXPECT_EQ((a + 0x10).value(), 0x1244U);
    EXPECT_EQ((a - 0x34).value(), 0x1200U);
    EXPECT_EQ(GuestVirtAddr(0x2000) - GuestVirtAddr(0x1000), 0x1000U);
    a += 0xdcc;
    EXPECT_EQ(a.value(), 0x2000U);
    a -= 0x1000;
    EXPECT_EQ(a.value(), 0x1000U);
    EXPECT_LT(GuestVirtAddr(1), GuestVirtAddr(2));
    EXPECT_EQ(GuestVirtAddr(0x1fff).page_base().value(), 0x1000U);
    EXPECT_EQ(GuestVirtAddr(0x1fff).page_offset(), 0xfffU);
    EXPECT_TRUE(GuestVirtAddr(0x3000).is_page_aligned());
    EXPECT_EQ(GuestVirtAddr(0x1001).align_up(0x1000)->value(), 0x2000U);
    EXPECT_EQ(GuestVirtAddr::max().align_up(0x1000).error(), Error::Overflow);
    EXPECT_EQ(GuestVirtAddr(0x1fff).align_down(0x1000).value(), 0x1000U);
    EXPECT_EQ((GuestVirtAddr::max() - 0).value(), UINT64_MAX);
    EXPECT_EQ((GuestVirtAddr(kTopPage) + (kPageSize - 1)), GuestVirtAddr::max());
}

// The address spaces do not mix, and address + address does not compile.
template <class A, class B>
concept Addable = requires(A a, B b) {
    a + b;
};
static_assert(!Addable<GuestVirtAddr, GuestVirtAddr>);
static_assert(!Addable<GuestVirtAddr, GuestPhysAddr>);
static_assert(Addable<GuestVirtAddr, uint64_t>);
static_assert(!std::is_convertible_v<uint64_t, GuestPhysAddr>);
static_assert(!std::is_convertible_v<GuestPhysAddr, GuestVirtAddr>);
static_assert(!std::equality_comparable_with<GuestPhysAddr, GuestVirtAddr>);
static_assert(AddressType<HostVirtAddr> && !AddressType<uint64_t> && !AddressType<GuestFrame>);

TEST(AddrTypeDeath, WrapAroundTraps) {
    EXPECT_DEATH((void)(GuestVirtAddr::max() + 1), "");
    EXPECT_DEATH((void)(GuestVirtAddr(0) - 1), "");
    EXPECT_DEATH((void)(GuestVirtAddr(1) - GuestVirtAddr(2)), "");
    EXPECT_DEATH((void)GuestVirtRange::from_start_size(GuestVirtAddr::max(), 2), "");
    EXPECT_DEATH((void)GuestVirtRange().last(), "");
    EXPECT_DEATH((void)GuestFrame(GuestFrame::kMaxNumber + 1), "");
}

TEST(HostPointers, RoundTrip) {
    int x = 0;
    HostVirtAddr a = host_addr(&x);
    EXPECT_EQ(host_ptr<int>(a), &x);
    EXPECT_EQ(a.value(), reinterpret_cast<uintptr_t>(&x));
}

TEST(FrameType, Conversions) {
    GuestPhysAddr a(0x12345);
    EXPECT_EQ(GuestFrame::containing(a).number(), 0x12U);
    EXPECT_EQ(GuestFrame::containing(a).start_address().value(), 0x12000U);
    EXPECT_EQ(GuestFrame::from_aligned(a).error(), Error::InvalidParam);
    EXPECT_EQ(GuestFrame::from_aligned(GuestPhysAddr(0x12000))->number(), 0x12U);
    GuestFrame top = GuestFrame::containing(GuestPhysAddr::max());
    EXPECT_EQ(top.number(), GuestFrame::kMaxNumber);
    EXPECT_EQ(top.start_address().value(), kTopPage);
    EXPECT_EQ(GuestFrame(5) + 3, GuestFrame(8));
    EXPECT_EQ(GuestFrame(8) - GuestFrame(5), 3U);
    EXPECT_EQ(GuestFrame(GuestFrame::kMaxNumber - 1) + 1, top);
    EXPECT_LT(GuestFrame(1), GuestFrame(2));
    EXPECT_DEATH((void)(top + 1), "");
    static_assert(!std::is_convertible_v<GuestFrame, HostFrame>);
}

TEST(RangeType, TryCreateAndTop) {
    using R = GuestVirtRange;
    EXPECT_EQ(R::try_create(GuestVirtAddr(kTopPage), kPageSize)->last(), GuestVirtAddr::max());
    EXPECT_EQ(R::try_create(GuestVirtAddr(kTopPage), kPageSize + 1).error(), Error::Overflow);
    EXPECT_EQ(R::try_create(GuestVirtAddr::max(), 1)->size(), 1U);
    EXPECT_EQ(R::try_create(GuestVirtAddr::max(), 2).error(), Error::Overflow);
    EXPECT_TRUE(R::try_create(GuestVirtAddr::max(), 0)->is_empty());
    EXPECT_EQ(R::try_create(GuestVirtAddr(0), UINT64_MAX)->last().value(), UINT64_MAX - 1);
    EXPECT_EQ(R::try_create(GuestVirtAddr(1), UINT64_MAX)->last(), GuestVirtAddr::max());
    R top = R::try_create(GuestVirtAddr(kTopPage), kPageSize).value();
    EXPECT_TRUE(top.ends_at_top());
    EXPECT_EQ(top.end().error(), Error::Overflow);  // the exclusive end would be 2^64
    EXPECT_TRUE(top.contains(GuestVirtAddr::max()));
    EXPECT_FALSE(top.contains(GuestVirtAddr(kTopPage - 1)));
    EXPECT_TRUE(top.is_aligned(kPageSize));
    R below = R::from_start_size(GuestVirtAddr(kTopPage - kPageSize), kPageSize);
    EXPECT_FALSE(below.ends_at_top());
    EXPECT_EQ(below.end().value().value(), kTopPage);
    EXPECT_FALSE(below.overlaps(top));
    EXPECT_FALSE(R().ends_at_top());
}

TEST(RangeType, FromInclusiveAndBounds) {
    using R = GuestPhysRange;
    using A = GuestPhysAddr;
    EXPECT_EQ(R::from_inclusive(A(0x1000), A(0x1fff))->size(), 0x1000U);
    EXPECT_EQ(R::from_inclusive(A(5), A(5))->size(), 1U);
    EXPECT_EQ(R::from_inclusive(A(6), A(5)).error(), Error::InvalidParam);
    EXPECT_EQ(R::from_inclusive(A(0), A::max()).error(), Error::Overflow);  // 2^64 bytes
    EXPECT_EQ(R::from_inclusive(A(1), A::max())->size(), UINT64_MAX);
    EXPECT_EQ(R::from_inclusive(A::max(), A::max())->size(), 1U);
    EXPECT_EQ(R::from_bounds(A(0x1000), A(0x3000))->size(), 0x2000U);
    EXPECT_TRUE(R::from_bounds(A(0x1000), A(0x1000))->is_empty());
    EXPECT_EQ(R::from_bounds(A(0x2000), A(0x1000)).error(), Error::InvalidParam);
    EXPECT_EQ(R::from_bounds(A(0), A::max())->last().value(), UINT64_MAX - 1);
}

TEST(RangeType, ContainsOverlapsIntersect) {
    using R = GuestVirtRange;
    using A = GuestVirtAddr;
    R a = R::from_start_size(A(0x1000), 0x2000);  // [0x1000, 0x3000)
    R b = R::from_start_size(A(0x2000), 0x2000);  // [0x2000, 0x4000)
    R c = R::from_start_size(A(0x3000), 0x1000);  // touches a's end
    R empty = R::from_start_size(A(0x2000), 0);
    EXPECT_TRUE(a.contains(A(0x1000)));
    EXPECT_TRUE(a.contains(A(0x2fff)));
    EXPECT_FALSE(a.contains(A(0x3000)));
    EXPECT_FALSE(a.contains(A(0xfff)));
    EXPECT_FALSE(empty.contains(A(0x2000)));
    EXPECT_TRUE(a.contains(R::from_start_size(A(0x1800), 0x1800)));
    EXPECT_FALSE(a.contains(R::from_start_size(A(0x1800), 0x1801)));
    EXPECT_TRUE(a.contains(empty));
    EXPECT_FALSE(empty.contains(a));
    EXPECT_TRUE(a.overlaps(b));
    EXPECT_TRUE(b.overlaps(a));
    EXPECT_FALSE(a.overlaps(c));
    EXPECT_FALSE(c.overlaps(a));
    EXPECT_FALSE(a.overlaps(empty));
    EXPECT_FALSE(empty.overlaps(empty));
    EXPECT_EQ(a.intersect(b), R::from_start_size(A(0x2000), 0x1000));
    EXPECT_EQ(b.intersect(a), a.intersect(b));
    EXPECT_TRUE(a.intersect(c).is_empty());
    EXPECT_EQ(a.intersect(a), a);
    EXPECT_EQ(a.intersect(R::from_start_size(A(0x1800), 0x10)), R::from_start_size(A(0x1800), 0x10));
    R top = R::from_inclusive(A(kTopPage), A::max()).value();
    R wide = R::from_inclusive(A(1), A::max()).value();
    EXPECT_EQ(wide.intersect(top), top);
    EXPECT_EQ(top.intersect(wide), top);
    EXPECT_TRUE(wide.contains(top));
    EXPECT_TRUE(wide.overlaps(R::from_start_size(A::max(), 1)));
    EXPECT_FALSE(R::from_start_size(A(0), 1).overlaps(wide));
    EXPECT_FALSE(R::from_start_size(A(0x1000), 0x1800).is_aligned(0x1000));
    EXPECT_FALSE(R::from_start_size(A(0x800), 0x1000).is_aligned(0x1000));
}

TEST(PermType, Operations) {
    Perm rw = Perm::Read | Perm::Write;
    EXPECT_EQ(rw, kPermRW);
    EXPECT_TRUE(has(rw, Perm::Read));
    EXPECT_FALSE(has(rw, Perm::Exec));
    EXPECT_FALSE(has(rw, Perm::Read | Perm::Exec));
    EXPECT_TRUE(has(rw, Perm::None));
    EXPECT_EQ(~Perm::None, kPermAll);
    EXPECT_EQ(~kPermAll, Perm::None);
    EXPECT_EQ(~kPermRW, Perm::Exec | Perm::User);
    EXPECT_EQ(kPermRWX & kPermRX, kPermRX);
    Perm p = Perm::Read;
    p |= Perm::User;
    EXPECT_TRUE(allows(p, Perm::Read | Perm::User));
    EXPECT_FALSE(allows(p, Perm::Write));
    p &= ~Perm::Read;
    EXPECT_EQ(p, Perm::User);
}

// Counts live instances to catch leaks and double destruction.
struct Tracked {
    static inline int live = 0;
    explicit Tracked(std::string s) : text(std::move(s)) { ++live; }
    Tracked(const Tracked& o) : text(o.text) { ++live; }
    Tracked(Tracked&& o) noexcept : text(std::move(o.text)) { ++live; }
    Tracked& operator=(const Tracked&) = default;
    Tracked& operator=(Tracked&&) = default;
    ~Tracked() { --live; }
    std::string text;
};

TEST(ResultType, CopyMoveAssignWithNonTrivialTypes) {
    Tracked::live = 0;
    {
        const std::string text = "a long string that does not fit in the SSO buffer";
        Result<Tracked> a(Tracked{text});
        Result<Tracked> e = err(Error::NoMemory);
        EXPECT_EQ(Tracked::live, 1);
        Result<Tracked> b = a;  // copy
        EXPECT_EQ(b->text, a->text);
        Result<Tracked> c = std::move(b);  // move
        EXPECT_EQ(c->text, a->text);
        EXPECT_EQ(Tracked::live, 3);
        c = e;  // value -> error: destroys the value
        EXPECT_FALSE(c.has_value());
        EXPECT_EQ(c.error(), Error::NoMemory);
        EXPECT_EQ(Tracked::live, 2);
        c = a;  // error -> value
        EXPECT_EQ(c->text, a->text);
        EXPECT_EQ(Tracked::live, 3);
        auto& alias = c;
        c = alias;  // self-assignment keeps the value
        EXPECT_EQ(c->text, a->text);
        e = std::move(a);
        EXPECT_TRUE(e.has_value());
        EXPECT_EQ(Tracked(std::move(e).value()).text, text);
    }
    EXPECT_EQ(Tracked::live, 0);
}

TEST(ResultType, MoveOnlyAndAccessors) {
    Result<std::unique_ptr<int>> r(std::make_unique<int>(7));
    ASSERT_TRUE(r);
    EXPECT_EQ(**r, 7);
    Result<std::unique_ptr<int>> moved = std::move(r);
    EXPECT_EQ(*moved.value(), 7);
    std::unique_ptr<int> p = std::move(moved).value();
    EXPECT_EQ(*p, 7);
    Result<int> v = 3;
    Result<int> bad = err(Error::OutOfRange);
    EXPECT_EQ(v.value_or(9), 3);
    EXPECT_EQ(bad.value_or(9), 9);
    EXPECT_DEATH((void)bad.value(), "");
    EXPECT_DEATH((void)v.error(), "");
    Status s = ok();
    Status f = err(Error::BadState);
    EXPECT_TRUE(s);
    EXPECT_EQ(f.error(), Error::BadState);
    s = f;
    EXPECT_FALSE(s);
    Status g = std::move(f);
    EXPECT_EQ(g.error(), Error::BadState);
    EXPECT_DEATH(s.value(), "");
    EXPECT_STREQ(error_name(Error::Overflow), "arithmetic overflow");
}

Result<uint64_t> add_three(uint64_t a, uint64_t b, uint64_t c) {
    MM_TRY_ASSIGN(uint64_t ab, checked_add(a, b));
    MM_TRY_ASSIGN(auto abc, checked_add(ab, c));
    return abc;
}
Status page_aligned(uint64_t a) {
    MM_TRY(GuestFrame::from_aligned(GuestPhysAddr(a)));
    return ok();
}

TEST(ResultType, TryMacrosPropagate) {
    EXPECT_EQ(add_three(1, 2, 3).value(), 6U);
    EXPECT_EQ(add_three(UINT64_MAX, 1, 0).error(), Error::Overflow);
    EXPECT_EQ(add_three(UINT64_MAX - 1, 1, 1).error(), Error::Overflow);
    EXPECT_TRUE(page_aligned(0x3000));
    EXPECT_EQ(page_aligned(0x3001).error(), Error::InvalidParam);
}

}  // namespace
