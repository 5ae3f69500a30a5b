"""Copy GPT-2's BPE ranks (`gpt2.tiktoken`) from the openai-whisper sdist on PyPI into the package.

The file is the same bytes as tiktoken's `r50k_base` ranks (MIT licence); we bundle it so that
GPT-2 tokenization works offline. Run this only to rebuild shared/llmcourse/assets/gpt2.tiktoken.

    python scripts/fetch_gpt2_ranks.py
"""

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

WHISPER_VERSION = "20250625"
SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
TARGET = Path(__file__).resolve().parent.parent / "shared" / "llmcourse" / "assets" / "gpt2.tiktoken"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"openai-whisper=={WHISPER_VERSION}", "-d", tmp],
            check=True,
        )
        sdist = next(Path(tmp).glob("openai_whisper-*.tar.gz"))
        with tarfile.open(sdist) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith("whisper/assets/gpt2.tiktoken"))
            data = archive.extractfile(member).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"gpt2.tiktoken has sha256 {digest}, expected {SHA256}")
    TARGET.write_bytes(data)
    print(f"wrote {TARGET} ({len(data):,} bytes, sha256 verified)")


if __name__ == "__main__":
    main()
