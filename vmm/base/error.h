// The VMM's error value: a category, the errno behind it (0 if none) and a
// one-line, human-readable message with context. Only main() turns an Error
// into text on stderr and an exit status (see exit_status()).
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "mm/result.h"

namespace pv {

enum class ErrorKind {
    Usage,             // bad command line / config: exit 2
    GuestImage,        // malformed guest image: exit 3
    Kvm,               // KVM missing, no permission, missing capability, ioctl failure: exit 4
    Resource,          // host out of memory/fds/quota: exit 5
    GuestFault,        // guest did something fatal (triple fault, unmapped access): exit 6
    Timeout,           // wall-clock limit reached: exit 7
    Io,                // file I/O: exit 8
    GuestOutOfMemory,  // the guest's memory quota or the host memory behind a guest node is exhausted: exit 9
    Internal,          // a bug in pagevisor: exit 70
    Invalid,           // an invalid argument to an internal API (also exit 70)
};

struct Error {
    ErrorKind kind = ErrorKind::Internal;
    int err_no = 0;
    std::string message;

    // "message: strerror(err_no)" when an errno is attached.
    [[nodiscard]] std::string to_string() const {
        if (err_no == 0) return message;
        return message + ": " + std::strerror(err_no);
    }
    [[nodiscard]] Error with_context(const std::string& context) const {
        return Error{kind, err_no, context + ": " + message};
    }
};

// Process exit status for an error (documented in docs/cli.md).
constexpr int exit_status(ErrorKind k) {
    switch (k) {
        case ErrorKind::Usage: return 2;
        case ErrorKind::GuestImage: return 3;
        case ErrorKind::Kvm: return 4;
        case ErrorKind::Resource: return 5;
        case ErrorKind::GuestFault: return 6;
        case ErrorKind::Timeout: return 7;
        case ErrorKind::Io: return 8;
        case ErrorKind::GuestOutOfMemory: return 9;
        case ErrorKind::Internal:
        case ErrorKind::Invalid: return 70;
    }
    return 70;
}

template <class T>
using Expected = mm::Result<T, Error>;
using Status = mm::Result<void, Error>;

inline mm::Unexpected<Error> make_error(ErrorKind kind, std::string message, int err_no = 0) {
    return mm::Unexpected<Error>{Error{kind, err_no, std::move(message)}};
}
// An error carrying the current errno.
inline mm::Unexpected<Error> errno_error(ErrorKind kind, std::string message) {
    return make_error(kind, std::move(message), errno);
}

}  // namespace pv

// PV_TRY / PV_TRY_ASSIGN: the same as MM_TRY / MM_TRY_ASSIGN, for pv::Expected.
#define PV_TRY(expr) MM_TRY(expr)
#define PV_TRY_ASSIGN(decl, expr) MM_TRY_ASSIGN(decl, expr)
