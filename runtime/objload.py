"""A tiny loader for the x86-64 ELF relocatable objects sympile caches, in pure Python + ctypes.

Loading a cached object through llvmlite's ORC LLJIT means importing ``llvmlite.binding`` (~25 ms); this module
maps the object itself: every allocated section in one anonymous mapping, relocated, then made executable or
read-only page by page. It imports neither llvmlite nor numpy. Anything it does not handle raises
``UnsupportedObject`` before any page becomes executable, so the caller can fall back to llvmlite.

Example (``obj`` from ``sympile.compiler.llvm.target.emit_object``, defining ``int32 f(int64, int64, int64*)``)::

    lib = load_object(obj, ["f"])
    f = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)(lib.address("f"))

The mapping lives as long as ``lib`` does.
"""

from __future__ import annotations

import ctypes
import struct
import threading
import weakref

__all__ = ["LoadedObject", "MappingFailed", "UnsupportedObject", "load_object", "object_symbols"]


class UnsupportedObject(Exception):
    """The object is malformed or uses something this loader does not handle; nothing of it was made executable."""


class MappingFailed(UnsupportedObject, OSError):
    """``mmap``/``mprotect`` refused (e.g. a hardened kernel that forbids executable anonymous mappings): an
    OSError with its errno, and an UnsupportedObject, so callers that fall back to another loader do."""


# ELF constants (System V gABI and the x86-64 psABI)
_ET_REL = 1
_EM_X86_64 = 62
_SHT_PROGBITS, _SHT_SYMTAB, _SHT_RELA, _SHT_NOBITS, _SHT_REL = 1, 2, 4, 8, 9
_SHT_INIT_ARRAY, _SHT_FINI_ARRAY, _SHT_PREINIT_ARRAY = 14, 15, 16
_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR, _SHF_TLS = 0x1, 0x2, 0x4, 0x400
_SHN_UNDEF, _SHN_LORESERVE, _SHN_ABS, _SHN_COMMON, _SHN_XINDEX = 0, 0xFF00, 0xFFF1, 0xFFF2, 0xFFFF
_STB_LOCAL, _STB_WEAK = 0, 2
_STT_SECTION, _STT_TLS, _STT_GNU_IFUNC = 3, 6, 10

_PROT_READ, _PROT_WRITE, _PROT_EXEC = 1, 2, 4
_MAP_PRIVATE, _MAP_ANONYMOUS = 0x02, 0x20
_PAGE = 4096  # x86-64 Linux base page size; regions are aligned to it

# relocation types -> kind; "tls" and anything absent are refused
_R_NAMES = {
    1: "64",
    2: "PC32",
    3: "GOT32",
    4: "PLT32",
    9: "GOTPCREL",
    10: "32",
    11: "32S",
    12: "16",
    13: "PC16",
    14: "8",
    15: "PC8",
    24: "PC64",
    25: "GOTOFF64",
    26: "GOTPC32",
    27: "GOT64",
    28: "GOTPCREL64",
    29: "GOTPC64",
    30: "GOTPLT64",
    31: "PLTOFF64",
    41: "GOTPCRELX",
    42: "REX_GOTPCRELX",
}
_NEEDS_GOT = {"GOT32", "GOTPCREL", "GOT64", "GOTPCREL64", "GOTPLT64", "GOTPCRELX", "REX_GOTPCRELX"}
# (struct format, low, high) of each written field: a value outside [low, high] is an overflow, never truncated
_FIELD = {
    "64": ("<Q", None, None),
    "PC64": ("<Q", None, None),
    "GOTOFF64": ("<Q", None, None),
    "GOT64": ("<Q", None, None),
    "GOTPCREL64": ("<Q", None, None),
    "GOTPC64": ("<Q", None, None),
    "GOTPLT64": ("<Q", None, None),
    "PLTOFF64": ("<Q", None, None),
    "PC32": ("<i", -(2**31), 2**31 - 1),
    "PLT32": ("<i", -(2**31), 2**31 - 1),
    "GOTPCREL": ("<i", -(2**31), 2**31 - 1),
    "GOTPCRELX": ("<i", -(2**31), 2**31 - 1),
    "REX_GOTPCRELX": ("<i", -(2**31), 2**31 - 1),
    "GOTPC32": ("<i", -(2**31), 2**31 - 1),
    "GOT32": ("<i", -(2**31), 2**31 - 1),
    "32S": ("<i", -(2**31), 2**31 - 1),
    "32": ("<I", 0, 2**32 - 1),
    "16": ("<H", 0, 2**16 - 1),
    "PC16": ("<h", -(2**15), 2**15 - 1),
    "8": ("<B", 0, 255),
    "PC8": ("<b", -128, 127),
}
_WIDTH = {kind: struct.calcsize(field[0]) for kind, field in _FIELD.items()}
_MASK64 = 2**64 - 1
_STUB_SIZE = 16  # jmp *0(%rip); .quad target; 2 bytes of padding

#: where mmap is asked to place objects (0: anywhere, usually near the shared libraries); tests set a far
#: address to exercise the call stubs and the overflow checks
_mmap_hint = 0


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment if alignment > 1 else value


class _Libc:
    """libc's mmap/mprotect/munmap/dlsym and the handles external symbols resolve from, set up on first use."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        self.mmap = libc.mmap
        self.mmap.restype = ctypes.c_void_p
        self.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        self.mprotect = libc.mprotect
        self.mprotect.restype = ctypes.c_int
        self.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.munmap = libc.munmap
        self.munmap.restype = ctypes.c_int
        self.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.dlsym = libc.dlsym
        self.dlsym.restype = ctypes.c_void_p
        self.dlsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.handles = [libc._handle]
        self._libm_tried = False
        self.cache: dict[str, int | None] = {}
        # loads in several threads at once: one must not find _libm_tried set before libm's handle is appended
        # (it would cache a libm function as missing, and every later object calling it would go to LLVM)
        self._lock = threading.Lock()

    def resolve(self, name: str) -> int | None:
        """The process's address for ``name`` (the program and its libraries, then libm), or None."""
        if name in self.cache:
            return self.cache[name]
        with self._lock:
            return self._resolve(name)

    def _resolve(self, name: str) -> int | None:
        raw = name.encode()
        address = None
        for handle in self.handles:
            address = self.dlsym(handle, raw)
            if address:
                break
        if not address and not self._libm_tried:
            self._libm_tried = True
            # find_library('m') runs ldconfig (milliseconds): the soname is tried directly first
            for soname in ("libm.so.6", "libm.so"):
                try:
                    self.handles.append(ctypes.CDLL(soname)._handle)
                    break
                except OSError:
                    continue
            else:
                from ctypes.util import find_library  # noqa: PLC0415

                path = find_library("m")
                if path:
                    self.handles.append(ctypes.CDLL(path)._handle)
            return self._resolve(name)
        self.cache[name] = address or None
        return address or None


_libc: _Libc | None = None


def _get_libc() -> _Libc:
    global _libc
    if _libc is None:
        _libc = _Libc()
    return _libc


def _unmap(base: int, size: int) -> None:
    _get_libc().munmap(base, size)


class LoadedObject:
    """A loaded, relocated object: ``address(name)`` of its exported symbols while this object lives."""

    def __init__(self, base: int, size: int, addresses: dict[str, int]):
        self.base = base
        self.size = size
        self._addresses = addresses
        self.symbols = tuple(addresses)
        self._finalizer = weakref.finalize(self, _unmap, base, size)
        # at interpreter exit another thread may still run the code: leave the mapping to the process teardown
        self._finalizer.atexit = False

    def address(self, name: str) -> int:
        """Address of an exported symbol (one of ``symbols``)."""
        try:
            return self._addresses[name]
        except KeyError:
            raise KeyError(
                f"symbol {name!r} was not exported by this object (exported: {list(self.symbols)})"
            ) from None

    def close(self) -> None:
        """Unmap now (every address from this object becomes invalid)."""
        self._finalizer()

    def __repr__(self) -> str:
        return f"<LoadedObject at {self.base:#x} ({self.size} bytes): {', '.join(self.symbols)}>"


class _Elf:
    """The parts of an ELF64 little-endian x86-64 relocatable object the loader needs, checked."""

    def __init__(self, obj: bytes):
        if len(obj) < 64 or obj[:4] != b"\x7fELF":
            raise UnsupportedObject("not an ELF object")
        if obj[4] != 2 or obj[5] != 1:
            raise UnsupportedObject("not a 64-bit little-endian ELF object")
        e_type, e_machine = struct.unpack_from("<HH", obj, 16)
        if e_type != _ET_REL:
            raise UnsupportedObject(f"not a relocatable object (e_type {e_type})")
        if e_machine != _EM_X86_64:
            raise UnsupportedObject(f"not an x86-64 object (e_machine {e_machine})")
        shoff = struct.unpack_from("<Q", obj, 40)[0]
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", obj, 58)
        if shnum == 0 or shstrndx == _SHN_XINDEX or shentsize != 64:
            raise UnsupportedObject("extended section numbering or an odd section header size")
        if shoff + shnum * 64 > len(obj):
            raise UnsupportedObject("truncated object (section headers)")
        # (name, type, flags, addr, offset, size, link, info, addralign, entsize)
        self.sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + 64 * i) for i in range(shnum)]
        for sh in self.sections:
            if sh[1] != _SHT_NOBITS and sh[4] + sh[5] > len(obj):
                raise UnsupportedObject("truncated object (section data)")
        if shstrndx >= shnum:
            raise UnsupportedObject("bad section name table index")
        strtab = self.sections[shstrndx]
        self._shstr = obj[strtab[4] : strtab[4] + strtab[5]]
        self.obj = obj

    def name(self, offset: int, table: bytes) -> str:
        end = table.find(b"\0", offset)
        if offset >= len(table) or end < 0:
            raise UnsupportedObject("bad string table offset")
        return table[offset:end].decode("utf-8", "replace")

    def section_name(self, index: int) -> str:
        return self.name(self.sections[index][0], self._shstr)

    def data(self, index: int) -> bytes:
        sh = self.sections[index]
        return self.obj[sh[4] : sh[4] + sh[5]]

    def symtab(self) -> tuple[int, list[tuple[str, int, int, int, int, int]]]:
        """(index of .symtab, [(name, bind, type, shndx, value, size)]); an object without one has no symbols."""
        found = [i for i, sh in enumerate(self.sections) if sh[1] == _SHT_SYMTAB]
        if not found:
            return -1, []
        if len(found) > 1:
            raise UnsupportedObject("more than one symbol table")
        index = found[0]
        sh = self.sections[index]
        if sh[9] != 24 or sh[6] >= len(self.sections):
            raise UnsupportedObject("bad symbol table")
        strings = self.data(sh[6])
        symbols = []
        for st_name, info, _other, shndx, value, size in struct.iter_unpack("<IBBHQQ", self.data(index)):
            symbols.append((self.name(st_name, strings), info >> 4, info & 0xF, shndx, value, size))
        return index, symbols


def _loaded_section(name: str, sh: tuple) -> bool:
    """Whether a section goes into memory: allocated, not unwind info nor notes (we register no unwind info)."""
    if not sh[2] & _SHF_ALLOC:
        return False
    return not (name == ".eh_frame" or name.startswith((".note", ".debug", ".eh_frame")))


def object_symbols(obj: bytes) -> list[str]:
    """Names of the global functions an object defines (what ``load_object`` can export).

    >>> try:
    ...     object_symbols(b"junk")
    ... except UnsupportedObject as exc:
    ...     print(exc)
    not an ELF object
    """
    try:
        _, symbols = _Elf(bytes(obj)).symtab()
    except (struct.error, IndexError, ValueError) as exc:
        raise UnsupportedObject(f"malformed object: {exc}") from None
    return [s[0] for s in symbols if s[1] != _STB_LOCAL and s[2] == 2 and s[3] != _SHN_UNDEF]


def load_object(obj: bytes, symbols: list[str]) -> LoadedObject:
    """Map, relocate and protect an x86-64 ELF relocatable object; export ``symbols`` (each must be defined).

    Raises UnsupportedObject (before anything is executable) for what it does not handle.

    >>> try:
    ...     load_object(b"\\x7fELF" + bytes(60), ["f"])
    ... except UnsupportedObject as exc:
    ...     print(exc)
    not a 64-bit little-endian ELF object
    """
    try:
        plan = _plan(bytes(obj), list(symbols))
    except (struct.error, IndexError, ValueError, UnicodeError) as exc:
        raise UnsupportedObject(f"malformed object: {exc}") from None
    return _map(plan)


class _Plan:
    """Everything decided before memory is mapped: layout, symbols, relocations, GOT slots, stubs."""

    __slots__ = ("image_parts", "regions", "size", "sec_off", "syms", "relocs", "got", "got_off", "stubs", "exports")


def _plan(obj: bytes, wanted: list[str]) -> _Plan:
    elf = _Elf(obj)
    sections = elf.sections
    names = [elf.section_name(i) for i in range(len(sections))]
    symtab_index, syms = elf.symtab()

    # which sections are loaded, and in which protection class
    classes: dict[str, list[int]] = {"x": [], "r": [], "w": []}
    for i, sh in enumerate(sections):
        if not _loaded_section(names[i], sh):
            continue
        kind, flags = sh[1], sh[2]
        if flags & _SHF_TLS:
            raise UnsupportedObject(f"thread-local section {names[i]}")
        if kind in (_SHT_INIT_ARRAY, _SHT_FINI_ARRAY, _SHT_PREINIT_ARRAY) or names[i].startswith((".init", ".ctors")):
            raise UnsupportedObject(f"constructor/destructor section {names[i]} (would have to run)")
        if kind not in (_SHT_PROGBITS, _SHT_NOBITS):
            raise UnsupportedObject(f"allocated section {names[i]} of type {kind:#x}")
        if flags & _SHF_EXECINSTR:
            if flags & _SHF_WRITE:
                raise UnsupportedObject(f"writable and executable section {names[i]}")
            classes["x"].append(i)
        elif flags & _SHF_WRITE:
            classes["w"].append(i)
        else:
            classes["r"].append(i)

    # relocations of loaded sections: parsed and checked now, applied once the base address is known
    relocs = []  # (target section, offset, kind, symbol index, addend)
    got_syms: dict[int, int] = {}  # symbol index -> GOT slot
    stub_syms: dict[int, int] = {}  # undefined symbol index -> stub slot
    loaded = set(classes["x"] + classes["r"] + classes["w"])
    for i, sh in enumerate(sections):
        if sh[1] not in (_SHT_RELA, _SHT_REL) or sh[7] not in loaded:
            continue
        if sh[1] == _SHT_REL:
            raise UnsupportedObject(f"SHT_REL relocations ({names[i]})")
        if sh[6] != symtab_index or sh[9] != 24:
            raise UnsupportedObject(f"bad relocation section {names[i]}")
        target = sh[7]
        limit = sections[target][5]
        if sections[target][1] == _SHT_NOBITS:
            raise UnsupportedObject(f"relocations against NOBITS section {names[target]}")
        for offset, info, addend in struct.iter_unpack("<QQq", elf.data(i)):
            rtype, sym = info & 0xFFFFFFFF, info >> 32
            if rtype == 0:
                continue
            kind = _R_NAMES.get(rtype)
            if kind is None:
                raise UnsupportedObject(f"relocation type {rtype} in {names[i]}")
            if sym >= len(syms):
                raise UnsupportedObject(f"relocation symbol index {sym} out of range")
            if offset + _WIDTH[kind] > limit:
                raise UnsupportedObject(f"relocation offset {offset:#x} outside {names[target]}")
            if kind in _NEEDS_GOT and sym not in got_syms:
                got_syms[sym] = len(got_syms)
            if kind in ("PC32", "PLT32") and syms[sym][3] == _SHN_UNDEF and sym and sym not in stub_syms:
                stub_syms[sym] = len(stub_syms)
            relocs.append((target, offset, kind, sym, addend))

    # layout: [code + stubs][read-only data + GOT][writable data], each region on its own pages
    sec_off: dict[int, int] = {}
    regions = []  # (start, end, protection)
    pos = 0
    for cls, prot in (("x", _PROT_READ | _PROT_EXEC), ("r", _PROT_READ), ("w", _PROT_READ | _PROT_WRITE)):
        start = pos
        for i in classes[cls]:
            if sections[i][8] > _PAGE:  # the mapping's base is only page-aligned: the section would be misaligned
                raise UnsupportedObject(f"section {names[i]} aligned to {sections[i][8]} bytes (> a page)")
            pos = _align(pos, sections[i][8])
            sec_off[i] = pos
            pos += sections[i][5]
        if cls == "x" and stub_syms:
            pos = _align(pos, 16)
            stubs_off = pos
            pos += _STUB_SIZE * len(stub_syms)
        if cls == "r":
            pos = _align(pos, 8)
            got_off = pos
            pos += 8 * len(got_syms)
        if pos > start:
            regions.append((start, pos, prot))
        pos = _align(pos, _PAGE)
    size = max(pos, _PAGE)
    if size >= 2**31:
        raise UnsupportedObject("object too large")

    # symbols: section-relative (resolved once the base is known) or absolute/external (resolved now)
    # per symbol: (section index, offset), (-1, absolute address), (-2, 0) for the GOT, or (reason, name, ...)
    # for one resolved below only if a relocation uses it
    resolved: list[tuple] = []
    libc = _get_libc()
    got_symbol = -2  # marks _GLOBAL_OFFSET_TABLE_
    for name, bind, stype, shndx, value, _size in syms:
        # any of these means work a static linker or the dynamic loader would do (TLS blocks, common
        # allocation, IFUNC resolver calls): refused even where nothing seems to use them
        if stype == _STT_TLS:
            raise UnsupportedObject(f"thread-local symbol {name!r}")
        if shndx == _SHN_COMMON:
            raise UnsupportedObject(f"common symbol {name!r}")
        if stype == _STT_GNU_IFUNC and shndx != _SHN_UNDEF:
            raise UnsupportedObject(f"IFUNC symbol {name!r}")
        if shndx == _SHN_UNDEF:
            if not name:
                resolved.append((-1, 0))
            elif name == "_GLOBAL_OFFSET_TABLE_":
                resolved.append((got_symbol, 0))
            else:
                resolved.append(("undef", name, bind))
        elif shndx == _SHN_ABS:
            resolved.append((-1, value))
        elif shndx >= _SHN_LORESERVE:
            resolved.append(("special", name))
        elif shndx in sec_off:
            resolved.append((shndx, value))
        else:
            resolved.append(("unloaded", name))
    used = {r[3] for r in relocs}
    for index in sorted(used):
        entry = resolved[index]
        if isinstance(entry[0], int):
            continue
        what = entry[0]
        if what == "undef":
            address = libc.resolve(entry[1])
            if address is None:
                if entry[2] != _STB_WEAK:
                    raise UnsupportedObject(f"undefined symbol {entry[1]!r} not found in the process")
                address = 0
            resolved[index] = (-1, address)
        elif what == "unloaded":
            raise UnsupportedObject(f"relocation against {entry[1]!r} in a section that is not loaded")
        else:
            raise UnsupportedObject(f"{what} symbol {entry[1]!r}")

    exports = {}
    by_name = {}
    for index, (name, bind, stype, shndx, _value, _size) in enumerate(syms):
        if name and stype != _STT_SECTION and shndx != _SHN_UNDEF and isinstance(resolved[index][0], int):
            if bind != _STB_LOCAL or name not in by_name:
                by_name[name] = index
    for name in wanted:
        if name not in by_name:
            raise UnsupportedObject(f"symbol {name!r} is not defined by the object")
        exports[name] = by_name[name]

    image_parts = [(sec_off[i], elf.data(i)) for i in sec_off if sections[i][1] != _SHT_NOBITS and sections[i][5]]
    plan = _Plan()
    plan.image_parts = image_parts
    plan.regions = regions
    plan.size = size
    plan.sec_off = sec_off
    plan.syms = resolved
    plan.relocs = relocs
    plan.got = got_syms
    plan.got_off = got_off
    plan.stubs = (stubs_off if stub_syms else 0, stub_syms)
    plan.exports = exports
    return plan


def _map(plan: _Plan) -> LoadedObject:
    libc = _get_libc()
    base = libc.mmap(_mmap_hint or None, plan.size, _PROT_READ | _PROT_WRITE, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)
    if base is None or base == _MASK64:
        raise MappingFailed(ctypes.get_errno(), "mmap failed for a loaded object")
    try:
        image = _relocate(plan, base)
        ctypes.memmove(base, (ctypes.c_char * len(image)).from_buffer(image), len(image))
        for start, end, prot in plan.regions:
            if prot != _PROT_READ | _PROT_WRITE and libc.mprotect(base + start, _align(end - start, _PAGE), prot):
                raise MappingFailed(ctypes.get_errno(), "mprotect failed for a loaded object")
    except BaseException:
        libc.munmap(base, plan.size)
        raise
    addresses = {}
    for name, index in plan.exports.items():
        section, value = plan.syms[index]
        addresses[name] = base + plan.sec_off[section] + value if section >= 0 else value
    return LoadedObject(base, plan.size, addresses)


def _relocate(plan: _Plan, base: int) -> bytearray:
    """The relocated image for a mapping at ``base`` (written into memory by the caller)."""
    image = bytearray(plan.size)
    for off, data in plan.image_parts:
        image[off : off + len(data)] = data
    sec_off = plan.sec_off
    got = base + plan.got_off

    def address(index: int) -> int:
        section, value = plan.syms[index]
        if section >= 0:
            return base + sec_off[section] + value
        return got if section == -2 else value

    for index, slot in plan.got.items():
        struct.pack_into("<Q", image, plan.got_off + 8 * slot, address(index) & _MASK64)
    stubs_off, stub_syms = plan.stubs
    for index, slot in stub_syms.items():
        # jmp *0(%rip) followed by the target address
        struct.pack_into("<6sQ", image, stubs_off + _STUB_SIZE * slot, b"\xff\x25\0\0\0\0", address(index) & _MASK64)
    syms = plan.syms
    pack_into = struct.pack_into
    for target, offset, kind, sym, addend in plan.relocs:
        where = sec_off[target] + offset
        p = base + where
        section, value = syms[sym]
        s = base + sec_off[section] + value if section >= 0 else (got if section == -2 else value)
        if kind == "GOTOFF64":
            v = s + addend - got
        elif kind == "GOTPC64" or kind == "GOTPC32":
            v = got + addend - p
        elif kind == "PC32" or kind == "PLT32":
            v = s + addend - p
            # an out-of-range call or jump to an external function goes through a stub in the mapping
            if (
                not -(2**31) <= v < 2**31
                and sym in stub_syms
                and (kind == "PLT32" or (where and image[where - 1] in (0xE8, 0xE9)))
            ):
                v = base + stubs_off + _STUB_SIZE * stub_syms[sym] + addend - p
        elif kind == "64":
            v = s + addend
        elif kind in ("GOTPCREL", "GOTPCRELX", "REX_GOTPCRELX", "GOTPCREL64"):
            v = got + 8 * plan.got[sym] + addend - p
        elif kind in ("GOT64", "GOT32", "GOTPLT64"):
            v = 8 * plan.got[sym] + addend
        elif kind == "PC64" or kind == "PC16" or kind == "PC8":
            v = s + addend - p
        elif kind == "PLTOFF64":
            v = s + addend - got  # no PLT: the function's own address is its procedure linkage entry
        else:  # 32, 32S, 16, 8
            v = s + addend
        fmt, low, high = _FIELD[kind]
        if low is None:
            pack_into(fmt, image, where, v & _MASK64)
        elif low <= v <= high:
            pack_into(fmt, image, where, v)
        else:
            raise UnsupportedObject(f"R_X86_64_{kind} value {v:#x} does not fit its field (at {offset:#x})")
    return image
