"""Download data files from an ordered list of mirrors into a cache, verified by MD5, atomically.

Why this shape: the instance has internet but any one mirror may be down, slow or refuse robots
(yann.lecun.com often does), so each file is tried mirror by mirror; a file is only ever visible
under its final name once complete and verified (temp file + rename), so an interrupted or
concurrent download can never leave a half file that a later run trusts. A cached file whose
checksum no longer matches is treated as absent and downloaded again. urllib only: the trainer
needs nothing beyond NumPy and PyYAML.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from trainer.errors import DataError

# Published checksums of the original .gz files. Tests override entries (the module-level table is
# the seam) to serve their own small files.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

# Tried in this order (data.mirrors in the job replaces the list).
DEFAULT_MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}

TIMEOUT_SECONDS = 60.0  # per socket operation, not per file: a slow but live mirror is fine
_CHUNK = 1 << 20
_USER_AGENT = "ec2dbn-trainer (python urllib)"  # some mirrors refuse urllib's default agent


def default_cache_dir() -> Path:
    """`$EC2DBN_DATA_DIR`, else `~/.cache/ec2dbn/datasets`."""
    env = os.environ.get("EC2DBN_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ec2dbn" / "datasets"


def md5_of(path: Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    dataset: str,
    filename: str,
    mirrors: Sequence[str],
    cache_dir: Path,
    md5: str | None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Return `cache_dir/dataset/filename`, downloading it first unless a verified copy is cached.

    `md5` None means "no published checksum": the caller must then check the content itself.
    Raises DataError (one line) when no mirror delivers a file with the right checksum.
    """
    target = cache_dir / dataset / filename
    if target.is_file():
        if md5 is None or md5_of(target) == md5:
            return target
        if log:
            log(f"cached {target} fails its checksum; downloading it again")
    if not mirrors:
        raise DataError(
            f"{dataset} {filename} is not cached in {target.parent} and data.mirrors is empty; "
            "set data.mirrors or data.cache_dir"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data cache {target.parent}: {exc.strerror or exc}") from None

    last_error = "none"
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        if log:
            log(f"downloading {dataset} {filename} from {url}")
        try:
            _download(url, target, md5)
        except _MirrorFailed as exc:
            last_error = str(exc)
            if log:
                log(f"  failed: {last_error}")
            continue
        return target
    n = len(mirrors)
    raise DataError(
        f"could not download {dataset} {filename} from any of {n} mirror{'s' if n != 1 else ''} "
        f"(last error: {last_error}); check the network or set data.mirrors / data.cache_dir"
    )


class _MirrorFailed(Exception):
    """One mirror could not deliver one file; the message says why in a few words."""


def _download(url: str, target: Path, md5: str | None) -> None:
    """Stream `url` into a temp file beside `target`; rename it into place only if complete and verified.

    A failure midway, a short read or a checksum mismatch leaves no file behind.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as resp:
                size = 0
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                # http.client returns a short body silently when the server closes early.
                promised = resp.headers.get("Content-Length", "")
                if promised.isdigit() and size != int(promised):
                    raise _MirrorFailed(f"{url}: connection closed after {size} of {promised} bytes")
        got = digest.hexdigest()
        if md5 is not None and got != md5:
            raise _MirrorFailed(f"{url}: checksum mismatch (md5 {got}, expected {md5})")
        os.replace(tmp, target)
    except urllib.error.HTTPError as exc:
        raise _MirrorFailed(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _MirrorFailed(f"{url}: {_reason(exc.reason)}") from None
    except http.client.IncompleteRead as exc:
        raise _MirrorFailed(f"{url}: connection closed early ({len(exc.partial)} bytes read)") from None
    except (http.client.HTTPException, ValueError) as exc:  # bad status line, malformed URL
        raise _MirrorFailed(f"{url}: {type(exc).__name__}: {exc}") from None
    except TimeoutError as exc:
        raise _MirrorFailed(f"{url}: timed out ({exc})") from None
    except OSError as exc:  # connection reset, disk full...
        raise _MirrorFailed(f"{url}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _reason(reason: object) -> str:
    """A short text for URLError.reason (a string or a socket error)."""
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)
