// Console output through the ConsoleWrite hypercall.
#pragma once

#include "guest/rt/hypercall.h"
#include "mm/std.h"

namespace pv::guest {

using mm::size_t;

// Writes len bytes (split into kMaxConsoleWrite chunks); returns the bytes
// written or the first negative HcError.
int64_t console_write(const char* s, size_t len);
// Writes a NUL-terminated string.
void print(const char* s);
// printf-like (see guest/rt/format.h for the conversions); output of one call
// goes out in as few ConsoleWrite calls as its length allows.
__attribute__((format(printf, 1, 2))) void printf(const char* fmt, ...);

}  // namespace pv::guest
