"""``python -m sympile``: command-line tools. ``python -m sympile cache info|clear`` manages the disk cache.

>>> main(["cache", "info"])  # doctest: +SKIP
directory: /home/me/.cache/sympile
...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _size(n: int) -> str:
    """Bytes in a readable unit: ``_size(1536) == '1.5 KiB'``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _cache_command(args: argparse.Namespace) -> int:
    from sympile.runtime.cache import DiskCache

    cache = DiskCache(args.dir)
    if args.action == "info":
        info = cache.info()
        print(f"directory: {info.directory}")
        print(f"entries:   {info.entries}")
        print(f"size:      {_size(info.total_bytes)} ({info.total_bytes} bytes)")
        print(f"cap:       {_size(info.max_bytes)} ({info.max_bytes} bytes)")
        if info.memory_only:
            print("writable:  no (compiled code is cached in memory only)")
    else:
        removed = cache.clear()
        print(f"removed {removed.entries} entries ({_size(removed.total_bytes)}) from {removed.directory}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m sympile", description="sympile command-line tools")
    commands = parser.add_subparsers(dest="command", required=True)
    cache = commands.add_parser("cache", help="inspect or empty the on-disk cache of compiled code")
    cache.add_argument("action", choices=["info", "clear"], help="info: show location and size; clear: empty it")
    cache.add_argument("--dir", default=None, help="cache directory (default: $SYMPILE_CACHE_DIR or ~/.cache/sympile)")
    cache.set_defaults(run=_cache_command)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
