"""Caches for compiled code: an in-process LRU of ready objects and an on-disk store of bytes.

The compiler's output (object code, PTX) is plain bytes, so the disk layer is a key -> bytes store. Keys come
from :func:`cache_key`, a hash of everything that decides the bytes: the canonical graph text, the target
(triple, cpu, features) and the versions of sympile and llvmlite.

>>> import tempfile
>>> key = cache_key("%0 = input #0 :: float64[?]\\nreturn %0",
...                 {"triple": "x86_64-unknown-linux-gnu", "cpu": "skylake", "features": "+avx2"},
...                 {"sympile": "0.1.0", "llvmlite": "0.47.0"})
>>> disk = DiskCache(tempfile.mkdtemp())
>>> disk.get(key) is None
True
>>> disk.put(key, b"object code")
>>> disk.get(key)
b'object code'

Design decisions (see docs/cache.md):
- One file per entry, written to a temporary file in the same directory and renamed with ``os.replace``: readers
  see the old file or the new one, never half of one, and no process ever waits on a lock. Two processes that
  compile the same graph at once both write; the last rename wins and both contents are equal.
- Every file starts with a header (magic, format version, payload length, blake2b of key + payload). A torn,
  truncated, foreign or bit-flipped file fails the check, is deleted and reads as a miss, so the caller rebuilds.
- No fsync: a crash can leave a torn file, which the checksum catches; syncing would cost milliseconds per
  compile for nothing the checksum does not already give.
- Least recently used eviction by mtime (touched on every hit): atime is unreliable under noatime/relatime.
- A directory that cannot be created or written makes the cache keep new entries in memory, with one warning
  per process and directory: caching is an optimization and must never make compilation fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"SYMPILE\x00"
FORMAT_VERSION = 1
# magic, format version, payload length, blake2b-256 of key + payload
_HEADER = struct.Struct("<8sIQ32s")
HEADER_SIZE = _HEADER.size
ENTRY_SUFFIX = ".entry"
_TEMP_PREFIX = ".tmp-"
_STALE_TEMP_SECONDS = 3600.0  # temp files older than this were left by a crashed writer

DEFAULT_MAX_BYTES = 512 * 2**20
DEFAULT_MEMORY_ENTRIES = 256
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
REQUIRED_TARGET_FIELDS = ("triple", "cpu", "features")
REQUIRED_VERSION_FIELDS = ("sympile", "llvmlite")

_warned_dirs: set[str] = set()
_warned_lock = threading.Lock()


# --- keys -----------------------------------------------------------------------------------------------------
def cache_key(canonical_text: str, target: Mapping, versions: Mapping) -> str:
    """A sha256 hex digest of the complete key: graph text, target and versions.

    The parts are serialized as JSON with sorted keys, so dict order never changes the key and no two
    different keys serialize alike. ``target`` needs ``triple``, ``cpu`` and ``features``, or ``host`` (the CPU as
    the OS reports it, from which LLVM derives those: runtime/host.py); ``versions`` needs
    ``sympile`` and ``llvmlite``; any extra fields (e.g. an optimization level) are part of the key too.

    >>> t = {"triple": "x86_64-unknown-linux-gnu", "cpu": "znver4", "features": ""}
    >>> v = {"sympile": "0.1.0", "llvmlite": "0.47.0"}
    >>> cache_key("return", t, v) == cache_key("return", dict(reversed(t.items())), v)
    True
    >>> cache_key("return", t, v) == cache_key("return", {**t, "cpu": "skylake"}, v)
    False
    """
    if not isinstance(canonical_text, str):
        raise TypeError(f"cache_key: canonical_text must be str, got {type(canonical_text).__name__}")
    for what, part, required in (
        ("target", target, ("host",) if "host" in target else REQUIRED_TARGET_FIELDS),
        ("versions", versions, REQUIRED_VERSION_FIELDS),
    ):
        missing = [f for f in required if f not in part]
        if missing:
            raise ValueError(
                f"cache_key: {what} lacks {', '.join(missing)} (has {', '.join(sorted(part)) or 'nothing'}); "
                "an incomplete key could return code built for another machine or version"
            )
    blob = json.dumps(
        {"graph": canonical_text, "target": dict(target), "versions": dict(versions)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


def default_versions() -> dict[str, str]:
    """The installed sympile and llvmlite versions, for :func:`cache_key`.

    >>> sorted(default_versions())
    ['llvmlite', 'sympile']
    """
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in REQUIRED_VERSION_FIELDS:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def memory_key(canonical_text: str, target: Mapping) -> tuple:
    """A hashable key for :class:`MemoryCache`: the graph text and the target's fields, in sorted order.

    Versions are left out (they cannot change within a process); put backend options (opt level, fast-math)
    into ``target`` so programs built with different options are told apart.

    >>> memory_key("return", {"cpu": "x", "triple": "t"}) == memory_key("return", {"triple": "t", "cpu": "x"})
    True
    """
    return (canonical_text, tuple(sorted((k, _hashable(v)) for k, v in target.items())))


def _hashable(value):
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


# --- memory ---------------------------------------------------------------------------------------------------
class MemoryCache:
    """A thread-safe least-recently-used map bounded by the number of entries.

    Holds ready objects (compiled programs) for the same process; keys are any hashable, e.g.
    ``(canonical_text, target_tuple)``, so the same graph built again from new variables is found.

    >>> m = MemoryCache(max_entries=2)
    >>> m.put("a", 1); m.put("b", 2); m.get("a"); m.put("c", 3)
    1
    >>> m.get("b") is None, len(m)
    (True, 2)
    """

    def __init__(self, max_entries: int = DEFAULT_MEMORY_ENTRIES):
        if max_entries < 1:
            raise ValueError(f"MemoryCache: max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, default=None):
        with self._lock:
            try:
                self._data.move_to_end(key)
            except KeyError:
                return default
            return self._data[key]

    def put(self, key: Hashable, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> int:
        """Drop every entry; returns how many there were."""
        with self._lock:
            n = len(self._data)
            self._data.clear()
            return n


# --- disk -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheInfo:
    """What :meth:`DiskCache.info` reports (and :meth:`DiskCache.clear` removed)."""

    directory: str
    entries: int
    total_bytes: int
    max_bytes: int
    memory_only: bool = False
    memory_entries: int = 0


def default_cache_dir() -> Path:
    """``$SYMPILE_CACHE_DIR``, else ``$XDG_CACHE_HOME/sympile``, else ``~/.cache/sympile``.

    >>> isinstance(default_cache_dir(), Path)
    True
    """
    explicit = os.environ.get("SYMPILE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sympile"


def default_max_bytes() -> int:
    """``$SYMPILE_CACHE_MAX_BYTES`` (an integer number of bytes), else 512 MiB."""
    raw = os.environ.get("SYMPILE_CACHE_MAX_BYTES")
    if raw is None or raw.strip() == "":
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"SYMPILE_CACHE_MAX_BYTES must be a whole number of bytes, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"SYMPILE_CACHE_MAX_BYTES must be >= 0, got {value}")
    return value


def _digest(key: str, payload: bytes) -> bytes:
    # the key is hashed in so a file copied or renamed under another key is rejected too
    h = hashlib.blake2b(digest_size=32)
    h.update(key.encode("ascii"))
    h.update(b"\x00")
    h.update(payload)
    return h.digest()


def encode_entry(key: str, payload: bytes) -> bytes:
    """Header + payload, as stored in one file.

    >>> decode_entry("k", encode_entry("k", b"abc"))
    b'abc'
    """
    return _HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), _digest(key, payload)) + payload


def decode_entry(key: str, blob: bytes) -> bytes | None:
    """The payload of a stored file, or ``None`` when it is torn, truncated, foreign or corrupt.

    >>> decode_entry("k", encode_entry("k", b"abc")[:-1]) is None
    True
    """
    if len(blob) < HEADER_SIZE:
        return None
    magic, version, length, digest = _HEADER.unpack_from(blob)
    if magic != MAGIC or version != FORMAT_VERSION or length != len(blob) - HEADER_SIZE:
        return None
    payload = blob[HEADER_SIZE:]
    if _digest(key, payload) != digest:
        return None
    return payload


class DiskCache:
    """A key -> bytes store in a directory, shared safely by concurrent processes.

    ``directory`` defaults to :func:`default_cache_dir`, ``max_bytes`` to :func:`default_max_bytes`. Keys are
    1-128 characters of ``[A-Za-z0-9_-]`` (the hex digests of :func:`cache_key` fit).

    >>> import tempfile
    >>> c = DiskCache(tempfile.mkdtemp(), max_bytes=1 << 20)
    >>> c.get_or_build("ab12", lambda: b"built"), c.get("ab12")
    (b'built', b'built')
    >>> c.info().entries
    1
    """

    def __init__(self, directory: str | os.PathLike | None = None, max_bytes: int | None = None):
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.max_bytes = default_max_bytes() if max_bytes is None else int(max_bytes)
        if self.max_bytes < 0:
            raise ValueError(f"DiskCache: max_bytes must be >= 0, got {self.max_bytes}")
        # entries that could not be written to disk; bounded by count like the in-process layer
        self._fallback = MemoryCache(DEFAULT_MEMORY_ENTRIES)
        self._memory_only = False
        self.hits = self.misses = self.corrupt = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._degrade(exc)

    @property
    def memory_only(self) -> bool:
        """True once the directory proved unusable for writing; new entries then live in memory only."""
        return self._memory_only

    def _path(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ValueError(f"DiskCache: a key is 1-128 characters of [A-Za-z0-9_-], got {key!r}")
        return self.directory / (key + ENTRY_SUFFIX)

    def _degrade(self, exc: OSError) -> None:
        self._memory_only = True
        where = str(self.directory.absolute())
        with _warned_lock:
            if where in _warned_dirs:
                return
            _warned_dirs.add(where)
        warnings.warn(
            f"sympile cache directory {where} is not writable ({exc.__class__.__name__}: {exc}); compiled code "
            "is cached in memory only for this process. Set SYMPILE_CACHE_DIR to a writable directory.",
            RuntimeWarning,
            stacklevel=3,
        )

    # --- reading --------------------------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        """The stored bytes, or ``None`` on a miss (absent, or corrupt and now deleted)."""
        path = self._path(key)
        data = self._fallback.get(key)
        if data is not None:
            self.hits += 1
            return data
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except OSError:  # absent, or the directory is unusable: either way the caller builds
            self.misses += 1
            return None
        payload = decode_entry(key, blob)
        if payload is None:
            self.corrupt += 1
            self.misses += 1
            self._unlink(path)
            return None
        self.hits += 1
        try:
            os.utime(path)  # mark as recently used for eviction
        except OSError:
            pass  # read-only directory or evicted meanwhile: the data we read is still good
        return payload

    def get_or_build(self, key: str, build: Callable[[], bytes]) -> bytes:
        """The stored bytes, or ``build()``'s result, stored before it is returned."""
        data = self.get(key)
        if data is None:
            data = build()
            self.put(key, data)
        return data

    # --- writing --------------------------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically, then evict least recently used entries over the cap."""
        path = self._path(key)
        data = bytes(data)
        if self._memory_only:
            self._fallback.put(key, data)
            return
        tmp = None
        try:
            import tempfile  # noqa: PLC0415  (~3 ms to import: only a process that writes an entry pays it)

            fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=ENTRY_SUFFIX + ".part", dir=self.directory)
            with os.fdopen(fd, "wb") as f:
                f.write(encode_entry(key, data))
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            self._degrade(exc)
            self._fallback.put(key, data)
            return
        finally:
            if tmp is not None:
                self._unlink(Path(tmp))
        self._evict()

    def _scan(self) -> tuple[list[tuple[int, str, int]], list[tuple[Path, float]]]:
        """Entries as (mtime_ns, name, size) and temp files as (path, mtime)."""
        entries, temps = [], []
        try:
            it = os.scandir(self.directory)
        except OSError:
            return entries, temps
        with it:
            for e in it:
                try:
                    if e.name.startswith(_TEMP_PREFIX):
                        temps.append((Path(e.path), e.stat().st_mtime))
                    elif e.name.endswith(ENTRY_SUFFIX) and e.is_file():
                        st = e.stat()
                        entries.append((st.st_mtime_ns, e.name, st.st_size))
                except FileNotFoundError:
                    continue  # removed by another process while we looked
        return entries, temps

    def _evict(self) -> None:
        entries, temps = self._scan()
        now = time.time()
        for path, mtime in temps:
            if now - mtime > _STALE_TEMP_SECONDS:
                self._unlink(path)
        total = sum(size for _, _, size in entries)
        if total <= self.max_bytes:
            return
        for _, name, size in sorted(entries):  # oldest mtime first; name breaks ties deterministically
            self._unlink(self.directory / name)
            total -= size
            if total <= self.max_bytes:
                break

    @staticmethod
    def _unlink(path: Path) -> bool:
        try:
            os.unlink(path)
            return True
        except OSError:
            return False  # already gone (another process) or not ours to delete

    # --- management -----------------------------------------------------------------------------------------
    def info(self) -> CacheInfo:
        """Directory, entry count, bytes on disk and the cap."""
        entries, _ = self._scan()
        return CacheInfo(
            directory=str(self.directory),
            entries=len(entries),
            total_bytes=sum(size for _, _, size in entries),
            max_bytes=self.max_bytes,
            memory_only=self._memory_only,
            memory_entries=len(self._fallback),
        )

    def clear(self) -> CacheInfo:
        """Delete every entry (and leftover temp file); returns what was removed."""
        entries, temps = self._scan()
        removed = removed_bytes = 0
        for _, name, size in entries:
            if self._unlink(self.directory / name):
                removed += 1
                removed_bytes += size
        for path, _ in temps:
            self._unlink(path)
        return CacheInfo(
            directory=str(self.directory),
            entries=removed,
            total_bytes=removed_bytes,
            max_bytes=self.max_bytes,
            memory_only=self._memory_only,
            memory_entries=self._fallback.clear(),
        )


_default_disk: dict[tuple[str, int], DiskCache] = {}
_default_lock = threading.Lock()


def default_disk_cache() -> DiskCache:
    """The process's disk cache for the current ``SYMPILE_CACHE_DIR`` / ``SYMPILE_CACHE_MAX_BYTES``.

    Looked up on every call so that a changed environment variable takes effect.
    """
    where, cap = str(default_cache_dir()), default_max_bytes()
    with _default_lock:
        cache = _default_disk.get((where, cap))
        if cache is None:
            cache = _default_disk[(where, cap)] = DiskCache(where, cap)
        return cache
