"""The compiled-code caches: keys, hits and misses, atomic writes across processes, corruption, unwritable
directories, LRU eviction, environment variables and the ``python -m sympile cache`` command."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

import sympile.tensor as st
from sympile.compiler.graph import canonical_text
from sympile.runtime import cache as cache_mod
from sympile.runtime.cache import (
    ENTRY_SUFFIX,
    HEADER_SIZE,
    DiskCache,
    MemoryCache,
    cache_key,
    decode_entry,
    default_cache_dir,
    default_disk_cache,
    default_max_bytes,
    default_versions,
    encode_entry,
    memory_key,
)

TARGET = {"triple": "x86_64-unknown-linux-gnu", "cpu": "skylake-avx512", "features": "+avx2,+avx512f,+fma"}
VERSIONS = {"sympile": "0.1.0", "llvmlite": "0.47.0"}


def _graph_text() -> str:
    # built from fresh variables on every call: the text depends on structure only
    x, y = st.dvectors("x", "y")
    out = st.exp(-x * x / 2) * st.sin(y)
    return canonical_text([out.node], [x.node, y.node])


def _entry(cache: DiskCache, key: str) -> Path:
    return cache.directory / (key + ENTRY_SUFFIX)


# --- keys -----------------------------------------------------------------------------------------------------
def test_key_is_sha256_hex_and_stable_for_the_same_structure():
    k1 = cache_key(_graph_text(), TARGET, VERSIONS)
    k2 = cache_key(_graph_text(), dict(reversed(TARGET.items())), dict(reversed(VERSIONS.items())))
    assert k1 == k2
    assert len(k1) == 64 and int(k1, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        ("graph", None, lambda t: t.replace("sin", "cos")),
        ("target", "triple", "aarch64-unknown-linux-gnu"),
        ("target", "cpu", "znver4"),
        ("target", "features", "+avx2,+fma"),
        ("versions", "sympile", "0.1.1"),
        ("versions", "llvmlite", "0.48.0"),
        ("target", "opt_level", 2),  # extra fields are part of the key too
    ],
)
def test_key_changes_when_any_part_changes(change):
    text = _graph_text()
    base = cache_key(text, TARGET, VERSIONS)
    part, field, value = change
    if part == "graph":
        assert "sin" in text
        changed = cache_key(value(text), TARGET, VERSIONS)
    elif part == "target":
        changed = cache_key(text, {**TARGET, field: value}, VERSIONS)
    else:
        changed = cache_key(text, TARGET, {**VERSIONS, field: value})
    assert changed != base


def test_key_parts_cannot_be_confused():
    # a naive concatenation would map these two to the same string
    t1 = {"triple": "a", "cpu": "bc", "features": ""}
    t2 = {"triple": "ab", "cpu": "c", "features": ""}
    assert cache_key("g", t1, VERSIONS) != cache_key("g", t2, VERSIONS)


def test_incomplete_key_is_refused_with_the_missing_fields():
    with pytest.raises(ValueError, match="target lacks cpu, features"):
        cache_key("g", {"triple": "x"}, VERSIONS)
    with pytest.raises(ValueError, match="versions lacks llvmlite"):
        cache_key("g", TARGET, {"sympile": "1"})


def test_default_versions_are_the_installed_ones():
    import llvmlite

    import sympile

    v = default_versions()
    assert v["llvmlite"] == llvmlite.__version__
    assert v["sympile"] == sympile.__version__


# --- memory ---------------------------------------------------------------------------------------------------
def test_memory_cache_reuses_the_same_graph_built_again_and_evicts_lru():
    m = MemoryCache(max_entries=2)
    m.put(memory_key(_graph_text(), TARGET), "program-1")
    # new variable objects, same structure, target fields in another order
    assert m.get(memory_key(_graph_text(), dict(reversed(TARGET.items())))) == "program-1"
    assert m.get(memory_key(_graph_text(), {**TARGET, "cpu": "znver4"})) is None
    m.put("b", 2)
    m.get(memory_key(_graph_text(), TARGET))  # refresh: "b" is now the least recently used
    m.put("c", 3)
    assert "b" not in m and m.get("c") == 3 and len(m) == 2
    assert m.clear() == 2 and len(m) == 0
    with pytest.raises(ValueError):
        MemoryCache(0)


# --- disk: basics ---------------------------------------------------------------------------------------------
def test_hit_miss_and_roundtrip(tmp_path):
    c = DiskCache(tmp_path / "c")
    key = cache_key(_graph_text(), TARGET, VERSIONS)
    assert c.get(key) is None and c.misses == 1
    payload = bytes(range(256)) * 100
    c.put(key, payload)
    assert c.get(key) == payload and c.hits == 1
    c.put("empty", b"")
    assert c.get("empty") == b""
    # another instance (another process, later) sees the entry
    assert DiskCache(tmp_path / "c").get(key) == payload
    assert not list(c.directory.glob(".tmp-*"))


def test_get_or_build_builds_once(tmp_path):
    c = DiskCache(tmp_path)
    calls = []
    build = lambda: calls.append(1) or b"object"
    assert c.get_or_build("k", build) == b"object"
    assert c.get_or_build("k", build) == b"object"
    assert calls == [1]


@pytest.mark.parametrize("key", ["", "../escape", "a/b", "x" * 129, "k.entry"])
def test_unsafe_keys_are_refused(tmp_path, key):
    with pytest.raises(ValueError, match="key"):
        DiskCache(tmp_path).put(key, b"x")


def test_info_and_clear(tmp_path):
    c = DiskCache(tmp_path, max_bytes=10_000)
    c.put("a", b"1" * 100)
    c.put("b", b"2" * 200)
    info = c.info()
    assert (info.directory, info.entries, info.max_bytes) == (str(tmp_path), 2, 10_000)
    assert info.total_bytes == 300 + 2 * HEADER_SIZE
    (tmp_path / ".tmp-crashed.entry.part").write_bytes(b"half")
    removed = c.clear()
    assert (removed.entries, removed.total_bytes) == (2, 300 + 2 * HEADER_SIZE)
    assert list(tmp_path.iterdir()) == []
    assert c.get("a") is None


# --- disk: corruption -----------------------------------------------------------------------------------------
def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-7])


def _flip_payload_byte(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[HEADER_SIZE + 10] ^= 0x40
    p.write_bytes(bytes(b))


def _flip_header_byte(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[2] ^= 0x01  # inside the magic
    p.write_bytes(bytes(b))


def _bump_version(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[8] += 1  # format version, little endian
    p.write_bytes(bytes(b))


def _garbage(p: Path) -> None:
    p.write_bytes(os.urandom(500))


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _appended(p: Path) -> None:
    p.write_bytes(p.read_bytes() + b"extra")


def _other_keys_entry(p: Path) -> None:
    # a valid file, but written for another key: the checksum covers the key
    p.write_bytes(encode_entry("someotherkey", b"x" * 64))


@pytest.mark.parametrize(
    "damage",
    [_truncate, _flip_payload_byte, _flip_header_byte, _bump_version, _garbage, _empty, _appended, _other_keys_entry],
)
def test_corrupt_entry_is_detected_dropped_and_rebuilt(tmp_path, damage):
    c = DiskCache(tmp_path)
    key = cache_key(_graph_text(), TARGET, VERSIONS)
    good = b"\x7fELF" + bytes(range(200))
    c.put(key, good)
    damage(_entry(c, key))
    assert c.get(key) is None
    assert c.corrupt == 1
    assert not _entry(c, key).exists()  # dropped, so the next compile writes a fresh one
    assert c.get_or_build(key, lambda: good) == good
    assert DiskCache(tmp_path).get(key) == good


def test_decode_entry_roundtrip_and_rejections():
    blob = encode_entry("k", b"payload")
    assert decode_entry("k", blob) == b"payload"
    assert decode_entry("j", blob) is None
    for cut in range(len(blob)):
        assert decode_entry("k", blob[:cut]) is None


# --- disk: concurrency ----------------------------------------------------------------------------------------
def _writer_reader(directory: str, key: str, index: int, rounds: int, queue) -> None:
    c = DiskCache(directory)
    payloads = _payloads()
    bad = 0
    for _ in range(rounds):
        c.put(key, payloads[index])
        got = c.get(key)
        # the file only ever moves from one complete version to another: never a miss after a put
        if got is None or got not in payloads:
            bad += 1
    queue.put((bad, c.corrupt))


def _payloads() -> list[bytes]:
    # different lengths and contents, so half of one file or a mix of two can never pass for another
    return [bytes([i]) * (50_000 + 7919 * i) for i in range(4)]


def test_processes_writing_and_reading_one_key_at_once_never_see_half_a_file(tmp_path):
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    queue = ctx.Queue()
    key = cache_key(_graph_text(), TARGET, VERSIONS)
    procs = [ctx.Process(target=_writer_reader, args=(str(tmp_path), key, i, 150, queue)) for i in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results == [(0, 0)] * len(procs)
    assert DiskCache(tmp_path).get(key) in _payloads()
    assert not list(tmp_path.glob(".tmp-*"))  # every temporary file was renamed into place


# --- disk: unwritable directories -----------------------------------------------------------------------------
def _warnings_of(fn) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the once-only rule must be ours, not the warnings registry's
        fn()
    return [w for w in caught if "not writable" in str(w.message)]


def _exercise(directory) -> None:
    for _ in range(2):  # two instances on the same directory: still one warning per process
        c = DiskCache(directory)
        assert c.memory_only
        c.put("a", b"kept in memory")
        c.put("b", b"also")
        assert c.get("a") == b"kept in memory"
        assert c.info().memory_entries == 2


def test_uncreatable_directory_degrades_to_memory_with_one_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    caught = _warnings_of(lambda: _exercise(blocker / "cache"))
    assert len(caught) == 1 and str(blocker / "cache") in str(caught[0].message)
    assert caught[0].category is RuntimeWarning


def test_directory_that_refuses_writes_degrades_to_memory_with_one_warning(tmp_path, monkeypatch):
    directory = tmp_path / "ro"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o500)
    else:  # root writes through chmod: make the write itself fail as a read-only file system would

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(directory))

        monkeypatch.setattr(tempfile, "mkstemp", refuse)

    def run():
        for _ in range(2):
            c = DiskCache(directory)
            c.put("a", b"kept in memory")
            assert c.memory_only and c.get("a") == b"kept in memory"

    try:
        caught = _warnings_of(run)
    finally:
        directory.chmod(0o700)
    assert len(caught) == 1
    assert list(directory.iterdir()) == []


def test_read_only_directory_still_serves_existing_entries(tmp_path, monkeypatch):
    DiskCache(tmp_path).put("old", b"built earlier")
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "denied")))
    c = DiskCache(tmp_path)
    assert _warnings_of(lambda: c.put("new", b"x"))
    assert c.get("old") == b"built earlier" and c.get("new") == b"x"


# --- disk: eviction -------------------------------------------------------------------------------------------
def test_least_recently_used_entries_are_evicted_over_the_cap(tmp_path):
    entry = 1000 + HEADER_SIZE
    c = DiskCache(tmp_path, max_bytes=3 * entry)
    for i, k in enumerate("abc"):
        c.put(k, k.encode() * 1000)
        os.utime(_entry(c, k), (1_000_000 + i, 1_000_000 + i))  # a oldest; explicit times, no clock granularity
    assert c.get("a") == b"a" * 1000  # a hit makes "a" the most recently used
    c.put("d", b"d" * 1000)  # over the cap by one entry: "b" is now the oldest
    assert {k for k in "abcd" if _entry(c, k).exists()} == {"a", "c", "d"}
    assert c.info().total_bytes == 3 * entry
    c.put("e", b"e" * (2 * 1000))  # needs two slots
    assert c.info().total_bytes <= 3 * entry
    assert _entry(c, "e").exists() and not _entry(c, "c").exists()


def test_zero_cap_keeps_nothing_on_disk(tmp_path):
    c = DiskCache(tmp_path, max_bytes=0)
    c.put("a", b"x")
    assert c.get("a") is None and c.info().entries == 0


# --- environment ----------------------------------------------------------------------------------------------
def test_environment_variables_choose_directory_and_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMPILE_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("SYMPILE_CACHE_MAX_BYTES", "12345")
    c = DiskCache()
    assert c.directory == tmp_path / "mine" and c.directory.is_dir() and c.max_bytes == 12345
    assert default_disk_cache().directory == tmp_path / "mine"
    monkeypatch.setenv("SYMPILE_CACHE_DIR", str(tmp_path / "other"))
    assert default_disk_cache().directory == tmp_path / "other"  # looked up on every call
    monkeypatch.setenv("SYMPILE_CACHE_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="SYMPILE_CACHE_MAX_BYTES"):
        default_max_bytes()


def test_default_directory_follows_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.delenv("SYMPILE_CACHE_DIR", raising=False)
    monkeypatch.delenv("SYMPILE_CACHE_MAX_BYTES", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "sympile"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "sympile"
    assert default_max_bytes() == cache_mod.DEFAULT_MAX_BYTES


# --- command line ---------------------------------------------------------------------------------------------
def _cli(*args: str, directory: Path) -> str:
    env = {**os.environ, "SYMPILE_CACHE_DIR": str(directory), "SYMPILE_CACHE_MAX_BYTES": "1000000"}
    done = subprocess.run(
        [sys.executable, "-m", "sympile", "cache", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cli_info_and_clear(tmp_path):
    c = DiskCache(tmp_path)
    c.put("a", b"x" * 1000)
    c.put("b", b"y" * 2000)
    info = _cli("info", directory=tmp_path)
    assert f"directory: {tmp_path}" in info
    assert "entries:   2" in info
    assert f"({3000 + 2 * HEADER_SIZE} bytes)" in info
    assert "(1000000 bytes)" in info
    cleared = _cli("clear", directory=tmp_path)
    assert "removed 2 entries" in cleared and str(tmp_path) in cleared
    assert c.info().entries == 0
    assert "entries:   0" in _cli("info", directory=tmp_path)
