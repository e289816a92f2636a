// Result<T>: a value or an mm::Error, the error channel of all of mm/.
//
// mm/ is freestanding (no exceptions), and clang 14 cannot use libstdc++'s
// std::expected, so this is a small expected-like type with the same spelling
// (has_value, value, error, operator*, operator->). Accessing the wrong
// alternative is a panic, never undefined behaviour.
#pragma once

#include "mm/std.h"

namespace mm {

enum class Error : uint8_t {
    InvalidParam,        // bad size, alignment, range or flag combination
    AlreadyExists,       // the range overlaps an existing mapping/area
    NotFound,            // no area/entry at that address
    BadState,            // a backend or page table refused; state reported precisely
    NoMemory,            // an allocator or metadata pool is exhausted
    MemoryOverlap,       // add_memory with a region overlapping a managed one
    NotAllocated,        // free of something not allocated (double free)
    OutOfRange,          // address outside the managed space or limit
    Overflow,            // arithmetic would wrap past 2^64
    Unsupported,         // valid request the structure does not implement
    AlreadyInitialized,  // a once-only initialisation was attempted twice
    PermissionDenied,    // the access is not allowed by the area's permissions
    Corrupted,           // a structure read from untrusted memory is malformed
};

constexpr const char* error_name(Error e) {
    switch (e) {
        case Error::InvalidParam: return "invalid parameter";
        case Error::AlreadyExists: return "already exists";
        case Error::NotFound: return "not found";
        case Error::BadState: return "bad state";
        case Error::NoMemory: return "out of memory";
        case Error::MemoryOverlap: return "memory overlap";
        case Error::NotAllocated: return "not allocated";
        case Error::OutOfRange: return "out of range";
        case Error::Overflow: return "arithmetic overflow";
        case Error::Unsupported: return "unsupported";
        case Error::AlreadyInitialized: return "already initialized";
        case Error::PermissionDenied: return "permission denied";
        case Error::Corrupted: return "corrupted";
    }
    return "unknown error";
}

// Carrier for the error alternative: `return Err{Error::NoMemory};` or
// `return err(Error::NoMemory);`. The VMM uses Unexpected<pv::Error> the same way.
template <class E>
struct Unexpected {
    E error;
};
using Err = Unexpected<Error>;
constexpr Err err(Error e) { return Err{e}; }

// A value of type T or an error of type E (mm::Error unless stated).
template <class T, class E = Error>
class [[nodiscard]] Result {
public:
    using value_type = T;
    using error_type = E;

    constexpr Result(const T& v) : m_has(true), m_value(v) {}        // NOLINT(google-explicit-constructor)
    constexpr Result(T&& v) : m_has(true), m_value(std::move(v)) {}  // NOLINT(google-explicit-constructor)
    constexpr Result(Unexpected<E> e) : m_has(false), m_error(std::move(e.error)) {}  // NOLINT

    // Copies use placement new (std::construct_at lives in <memory>, outside the
    // freestanding allow-list), so they are not constexpr; construction is.
    Result(const Result& o) : m_has(o.m_has) {
        if (m_has)
            ::new (static_cast<void*>(&m_value)) T(o.m_value);
        else
            ::new (static_cast<void*>(&m_error)) E(o.m_error);
    }
    Result(Result&& o) noexcept : m_has(o.m_has) {
        if (m_has)
            ::new (static_cast<void*>(&m_value)) T(std::move(o.m_value));
        else
            ::new (static_cast<void*>(&m_error)) E(std::move(o.m_error));
    }
    Result& operator=(Result o) noexcept {
        destroy();
        m_has = o.m_has;
        if (m_has)
            ::new (static_cast<void*>(&m_value)) T(std::move(o.m_value));
        else
            ::new (static_cast<void*>(&m_error)) E(std::move(o.m_error));
        return *this;
    }
    constexpr ~Result() { destroy(); }

    [[nodiscard]] constexpr bool has_value() const { return m_has; }
    constexpr explicit operator bool() const { return m_has; }

    [[nodiscard]] constexpr T& value() & {
        MM_ASSERT(m_has);
        return m_value;
    }
    [[nodiscard]] constexpr const T& value() const& {
        MM_ASSERT(m_has);
        return m_value;
    }
    [[nodiscard]] constexpr T&& value() && {
        MM_ASSERT(m_has);
        return std::move(m_value);
    }
    [[nodiscard]] constexpr T value_or(T fallback) const { return m_has ? m_value : fallback; }
    [[nodiscard]] constexpr const E& error() const {
        MM_ASSERT(!m_has);
        return m_error;
    }

    constexpr T& operator*() & { return value(); }
    constexpr const T& operator*() const& { return value(); }
    constexpr T* operator->() { return &value(); }
    constexpr const T* operator->() const { return &value(); }

private:
    constexpr void destroy() {
        if (m_has)
            m_value.~T();
        else
            m_error.~E();
    }
    bool m_has;
    union {
        T m_value;
        E m_error;
    };
};

template <class E>
class [[nodiscard]] Result<void, E> {
public:
    using value_type = void;
    using error_type = E;
    constexpr Result() : m_has(true), m_dummy(0) {}
    constexpr Result(Unexpected<E> e) : m_has(false), m_error(std::move(e.error)) {}  // NOLINT

    Result(const Result& o) : m_has(o.m_has), m_dummy(0) {
        if (!m_has) ::new (static_cast<void*>(&m_error)) E(o.m_error);
    }
    Result(Result&& o) noexcept : m_has(o.m_has), m_dummy(0) {
        if (!m_has) ::new (static_cast<void*>(&m_error)) E(std::move(o.m_error));
    }
    Result& operator=(Result o) noexcept {
        destroy();
        m_has = o.m_has;
        if (!m_has) ::new (static_cast<void*>(&m_error)) E(std::move(o.m_error));
        return *this;
    }
    constexpr ~Result() { destroy(); }

    [[nodiscard]] constexpr bool has_value() const { return m_has; }
    constexpr explicit operator bool() const { return m_has; }
    constexpr void value() const { MM_ASSERT(m_has); }
    [[nodiscard]] constexpr const E& error() const {
        MM_ASSERT(!m_has);
        return m_error;
    }

private:
    constexpr void destroy() {
        if (!m_has) m_error.~E();
    }
    bool m_has;
    union {
        char m_dummy;
        E m_error;
    };
};

using Status = Result<void>;
constexpr Status ok() { return {}; }

}  // namespace mm

#define MM_CONCAT_IMPL(a, b) a##b
#define MM_CONCAT(a, b) MM_CONCAT_IMPL(a, b)

// Propagate the error of a Result-returning expression; discard its value.
#define MM_TRY(expr)                                                                                    \
    do {                                                                                                \
        if (auto&& mm_try_r = (expr); !mm_try_r.has_value()) [[unlikely]]                               \
            return ::mm::Unexpected<std::remove_cvref_t<decltype(mm_try_r.error())>>{mm_try_r.error()}; \
    } while (0)

// `MM_TRY_ASSIGN(auto x, f());` declares x from the value of f() or propagates its error.
#define MM_TRY_ASSIGN(decl, expr) MM_TRY_ASSIGN_IMPL(MM_CONCAT(mm_try_tmp_, __COUNTER__), decl, expr)
#define MM_TRY_ASSIGN_IMPL(tmp, decl, expr)                                               \
    auto tmp = (expr);                                                                    \
    if (!tmp.has_value()) [[unlikely]]                                                    \
        return ::mm::Unexpected<std::remove_cvref_t<decltype(tmp.error())>>{tmp.error()}; \
    decl = std::move(tmp).value()
