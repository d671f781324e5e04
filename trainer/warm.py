"""`python -m trainer.warm NAME...`: put the named built-in data sets where a job will look for them, now.

Run by `ec2dbn bake` on the builder (bootstrap/_cache_data.sh), so an instance of the baked image reads
them from its disk instead of downloading them: `mnist` and `fashion-mnist` are fetched into the download
cache (trainer.download.default_cache_dir(), MD5-verified) unless Debian's Fashion-MNIST files are there;
`mnist-5k` and `digits` come with a Python package, which must import. Prints one line per data set.
Exit 0 when every package-backed set imports (a set that could not be downloaded is reported, not fatal:
a job that needs it downloads it when it runs), 1 when one does not, 2 for an unknown name.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

from trainer import download
from trainer.data import DATA_REQUIREMENTS, FASHION_SYSTEM_DIR
from trainer.errors import DataError


def warm(name: str) -> tuple[bool, str]:
    """Cache data set `name`; (ok, one line saying what happened)."""
    if name in DATA_REQUIREMENTS:
        missing = [m for m, _ in DATA_REQUIREMENTS[name] if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"{name}: {', '.join(missing)} does not import"
        return True, f"{name}: ships with {', '.join(m for m, _ in DATA_REQUIREMENTS[name])} (installed)"
    if name not in download.CHECKSUMS:
        raise KeyError(name)
    if name == "fashion-mnist" and FASHION_SYSTEM_DIR.is_dir():
        return True, f"{name}: the system's files in {FASHION_SYSTEM_DIR}"
    cache = download.default_cache_dir()
    try:
        for filename, md5 in download.CHECKSUMS[name].items():
            download.fetch(name, filename, download.DEFAULT_MIRRORS[name], cache, md5)
    except DataError as exc:
        return True, f"{name}: not cached ({exc}); a job using it downloads it"
    return True, f"{name}: cached in {cache / name}"


def main(argv: Sequence[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    unknown = [n for n in names if n not in DATA_REQUIREMENTS and n not in download.CHECKSUMS]
    if unknown:
        print(f"[cache_data] unknown data set(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    ok = True
    for name in names:
        fine, line = warm(name)
        ok = ok and fine
        print(f"[cache_data] {line}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
