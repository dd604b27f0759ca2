"""Identity of weight files on disk, whatever their format: path, size and a content hash.

A vir checkpoint carries a header, but foreign weights (Wan2.1's `.pth`, a diffusers folder, a
LeanVAE `.ckpt`) do not; `vir distill --resume` still has to notice when one of them changed.

    weights_identity("Wan2.1_VAE.pth")   # {"path": "/abs/Wan2.1_VAE.pth", "size": 507609880, "sha256": "..."}

The hash is a SHA-256 over the file's size, its first and its last `SAMPLE` bytes (for a folder:
over every file below it, by relative path), so identifying a 10 GB text encoder costs a few
milliseconds rather than a minute; it changes when a file is replaced by other weights, which
rewrites those bytes (a safetensors or pickle header, the first tensors, the last ones).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import CheckpointError

SAMPLE = 4 << 20      # bytes hashed at each end of a file


def _hash_file(h, path: Path) -> int:
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(SAMPLE))
        if size > SAMPLE:
            f.seek(max(SAMPLE, size - SAMPLE))
            h.update(f.read(SAMPLE))
    return size


def weights_identity(path: str | Path) -> dict:
    """{"path", "size", "sha256"} of a weights file or folder; CheckpointError if it is missing."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"weights not found: {p}")
    h = hashlib.sha256()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        size = 0
        for f in files:
            h.update(str(f.relative_to(p)).encode())
            size += _hash_file(h, f)
    else:
        size = _hash_file(h, p)
    return {"path": str(p.resolve()), "size": size, "sha256": h.hexdigest()[:32]}


__all__ = ["SAMPLE", "weights_identity"]
