"""Downloads for the online extras (GPT-2's weights, the SMS Spam Collection): streaming with a progress bar
and deadlines, and sha256 checksums of files. Nothing in the course's notebooks downloads by default."""

import hashlib
import time
from pathlib import Path
from urllib.request import urlopen

from tqdm.auto import tqdm


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, destination: Path, description: str, read_timeout: float, deadline: float) -> None:
    """Stream `url` into `destination` with a progress bar; check the size against Content-Length.

    Each read may wait `read_timeout` seconds; the whole transfer must end by `deadline`
    (a `time.monotonic()` value), or a TimeoutError is raised, so a trickling server cannot hold it.
    """
    partial = destination.with_name(destination.name + ".part")
    try:
        with urlopen(url, timeout=read_timeout) as response:
            expected = response.headers.get("Content-Length")
            expected = int(expected) if expected is not None else None
            with partial.open("wb") as f, tqdm(total=expected, unit="B", unit_scale=True,
                                               desc=description) as bar:
                while block := response.read1(1 << 20):  # whatever has arrived, without waiting for more
                    f.write(block)
                    bar.update(len(block))
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{destination.name}: the download's time limit ran out after "
                                           f"{bar.n} bytes; pass a larger max_seconds for a slow connection")
        received = partial.stat().st_size
        if expected is not None and received != expected:
            raise RuntimeError(f"{destination.name}: received {received} bytes, the server announced "
                               f"{expected}; the partial file was removed, try again")
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)
