#!/usr/bin/env python3
"""Writes the binary seed inputs of fuzz/corpus/ (fuzz_elf, fuzz_hypercall,
fuzz_pagetable, fuzz_space_state). Text seeds (fuzz_memory_config, fuzz_cli) are written by hand.
Run from anywhere: python3 fuzz/make_seeds.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = 0x1000
STUBS, KWIN_END = 0x40_0000, 0x60_0000
PT_LOAD, PT_GNU_STACK = 1, 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def elf(phdrs, entry, size, phnum=None, ident_class=2):
    f = bytearray(size)
    ident = b"\x7fELF" + bytes([ident_class, 1, 1]) + bytes(9)
    eh = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, entry, 64, 0, 0, 64, 56,
                             len(phdrs) if phnum is None else phnum, 64, 0, 0)
    f[0:64] = eh
    for i, (t, fl, va, off, fsz, msz) in enumerate(phdrs):
        ph = struct.pack("<IIQQQQQQ", t, fl, off, va, va, fsz, msz, PAGE)
        o = 64 + 56 * i
        if o + 56 <= size:
            f[o:o + 56] = ph
    for i in range(PAGE, size):
        f[i] = 0x90  # nops as segment bytes
    return bytes(f)


def elf_seeds():
    base = [(PT_LOAD, PF_R | PF_X, STUBS, PAGE, PAGE, PAGE),
            (PT_LOAD, PF_R | PF_X, KWIN_END, 2 * PAGE, PAGE, PAGE),
            (PT_LOAD, PF_R | PF_W, KWIN_END + PAGE, 3 * PAGE, 0x800, 3 * PAGE),
            (PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0)]
    write("fuzz_elf", "valid", elf(base, KWIN_END + 0x10, 4 * PAGE))
    write("fuzz_elf", "no_stubs", elf(base[1:], KWIN_END + 0x10, 4 * PAGE))
    write("fuzz_elf", "wx_segment", elf(base[:2] + [(PT_LOAD, PF_R | PF_W | PF_X, KWIN_END + PAGE, 3 * PAGE, 0x800, PAGE)],
                                        KWIN_END + 0x10, 4 * PAGE))
    write("fuzz_elf", "overlap", elf(base[:2] + [(PT_LOAD, PF_R | PF_W, KWIN_END + 0x800, 3 * PAGE, 0x800, PAGE)],
                                     KWIN_END + 0x10, 4 * PAGE))
    write("fuzz_elf", "huge_filesz", elf(base[:2] + [(PT_LOAD, PF_R | PF_W, KWIN_END + PAGE, 3 * PAGE, 2**64 - 1, 2**64 - 1)],
                                         KWIN_END + 0x10, 4 * PAGE))
    write("fuzz_elf", "phnum_past_end", elf(base, KWIN_END + 0x10, 4 * PAGE, phnum=0xffff))
    write("fuzz_elf", "truncated_header", elf(base, KWIN_END + 0x10, 4 * PAGE)[:40])
    write("fuzz_elf", "elf32", elf(base, KWIN_END + 0x10, 4 * PAGE, ident_class=1))


def arg_page(i, off):  # fuzz_hypercall argument selector: "page i + offset"
    return bytes([2 | (i << 2)]) + struct.pack("<H", off)


def arg_small(v):
    return bytes([1 | (v << 2)])


def call(vcpu, nr, args, width=0, flags=0):
    b = bytes([vcpu, nr, width])
    for a in args + [arg_small(0)] * (6 - len(args)):
        b += a
    return b + bytes([flags])


def hypercall_seeds():
    page0 = struct.pack("<Q", 0x10 << 2)  # selector 0: low page 0x10
    page1 = struct.pack("<Q", 0x11 << 2)
    text = b"hello from the guest\n\x01\xff"
    pages = bytes([2]) + page0 + bytes([0, 2]) + text.ljust(32, b"\0") + page1 + bytes([4, 0])
    write("fuzz_hypercall", "nop_version", pages + call(0, 0, []) + call(1, 1, []) + call(40, 1, []))
    write("fuzz_hypercall", "console", pages + call(0, 2, [arg_page(0, 0), arg_small(len(text))]))
    write("fuzz_hypercall", "console_cross_page", pages + call(0, 2, [arg_page(0, 0xff0), arg_small(32)]))
    key = b"answer".ljust(24, b"\0") + struct.pack("<IIQ", 1, 0, 42)
    rpages = bytes([1]) + page0 + bytes([0, 3]) + key.ljust(48, b"\0")
    write("fuzz_hypercall", "report", rpages + call(3, 4, [arg_page(0, 0), arg_small(1)]))
    write("fuzz_hypercall", "memory_calls", pages + call(0, 16, [], flags=3) + call(0, 17, []) + call(0, 31, []))
    write("fuzz_hypercall", "exit_stop", pages + call(0, 3, [arg_small(7)]) + call(2, 5, []))
    top = struct.pack("<Q", 1)  # selector 1: the top page of the address space
    write("fuzz_hypercall", "wrap", bytes([1]) + top + bytes([0, 0]) + call(0, 2, [arg_page(0, 0xff8), arg_small(16)]))


def entry(tag, flags, frame):
    return bytes([tag, flags, frame])


def addr(indices, off=0):
    return bytes([0]) + b"".join(struct.pack("<H", i) for i in indices) + struct.pack("<H", off)


def pagetable_seeds():
    # fake mode: 4 tables, a 4-level chain mapping va (0,0,0,1) -> frame 0x1234 of table 3, then queries/edits.
    writes = [(0, 0, entry(0, 0x7, 1)), (1, 0, entry(0, 0x7, 2)), (2, 0, entry(0, 0x7, 3)),
              (3, 1, bytes([3, 0]) + struct.pack("<Q", 0x1234007))]
    w = b"".join(bytes([t]) + struct.pack("<H", s) + e for t, s, e in writes)
    body = bytes([3]) + bytes([len(writes)]) + w + bytes([0])
    ops = bytes([0]) + addr([0, 0, 0, 1], 5) + bytes([3]) + addr([0, 0, 0, 0]) + struct.pack("<Q", 1 << 22)
    ops += bytes([6]) + addr([0, 0, 0, 1]) + struct.pack("<I", 2) + bytes([0]) + addr([0, 0, 0, 1])
    write("fuzz_pagetable", "fake_chain", bytes([0]) + body + ops)
    loop = bytes([0]) + bytes([1]) + bytes([0]) + struct.pack("<H", 0) + entry(0, 0x7, 0) + bytes([0])
    write("fuzz_pagetable", "fake_self_loop", loop + bytes([0]) + addr([0, 0, 0, 0]) + bytes([3]) + addr([0, 0, 0, 0]) + struct.pack("<Q", 2**31 - 1))
    huge = bytes([3]) + bytes([2]) + bytes([0]) + struct.pack("<H", 0) + entry(0, 0x7, 1) + bytes([1]) + struct.pack("<H", 0) + bytes([2, 0x7]) + struct.pack("<Q", 0x4000_0000) + bytes([0])
    write("fuzz_pagetable", "fake_huge_1g", bytes([0]) + huge + bytes([0]) + addr([0, 0, 5, 7], 9) + bytes([7]) + addr([0, 0, 1, 0]) + struct.pack("<I", 4) + bytes([0]))
    # real mode: chain mapping user va 0x1000 -> gpa 0x40_0000 (RAM), resolve across the page end.
    writes = [(0, 0, entry(0, 0x7, 1)), (1, 0, entry(0, 0x7, 2)), (2, 0, entry(0, 0x7, 3)),
              (3, 1, bytes([3, 0]) + struct.pack("<Q", 0x40_0007)), (3, 2, bytes([3, 0]) + struct.pack("<Q", 0x7_0000_0007))]
    w = b"".join(bytes([t]) + struct.pack("<H", s) + e for t, s, e in writes)
    real = bytes([1, 3, len(writes)]) + w + bytes([0])
    real += addr([0, 0, 0, 1], 0xff0) + struct.pack("<I", 0x20) + bytes([1])
    real += addr([0, 0, 0, 1], 0) + struct.pack("<I", 0x1000) + bytes([0])
    write("fuzz_pagetable", "real_chain", real)


def space_state_seeds():
    # Tables are frames 0x100.. (index 0..15); the allocator owns 0x100..0x7ff.
    P, RW, US, NX = 1, 2, 4, 1 << 63
    inter = P | RW | US

    def w(table, index, value):
        return bytes([table]) + struct.pack("<HQ", index, value)

    def tables(leaves):  # kUserBase (32 GiB): PML4[0] -> PDPT[32] -> PD[0] -> PT
        out = [w(0, 0, (0x101 << 12) | inter), w(1, 32, (0x102 << 12) | inter), w(2, 0, (0x103 << 12) | inter)]
        out += [w(3, i, (frame << 12) | P | RW | US | NX) for i, frame in leaves]
        return out

    def structured(writes, areas):
        return bytes([0, 1, len(writes)]) + b"".join(writes) + b"".join(bytes(a) for a in areas)

    # One demand area of 4 pages (Read|Write|User = 11, kind 1, any node), two leaves mapped.
    write("fuzz_space_state", "demand_two_leaves", structured(tables([(0, 0x200), (2, 0x201)]), [[0, 3, 11, 1, 0xFF, 0]]))
    # The same frame mapped twice: refused.
    write("fuzz_space_state", "frame_twice", structured(tables([(0, 0x200), (1, 0x200)]), [[0, 3, 11, 1, 0xFF, 0]]))
    # A leaf outside every area: refused.
    write("fuzz_space_state", "leaf_outside", structured(tables([(5, 0x200)]), [[0, 3, 11, 1, 0, 0]]))
    # Raw mode: a header with no area and the break at its base.
    raw = struct.pack("<IIQQ", 0x53415650, 1, 0, 0x8_0000_0000)
    write("fuzz_space_state", "raw_empty", bytes([0, 0, 0]) + raw)
    area = struct.pack("<QQQIBBBB", 0x8_0000_0000, 0x4000, 0, 0xFFFFFFFF, 11, 1, 0, 0)
    write("fuzz_space_state", "raw_one_area", bytes([0, 0, 0]) + struct.pack("<IIQQ", 0x53415650, 1, 1, 0x8_0000_0000) + area)


if __name__ == "__main__":
    elf_seeds()
    hypercall_seeds()
    pagetable_seeds()
    space_state_seeds()
