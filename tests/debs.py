"""Tiny real Debian packages for the downloader's tests (dpkg-deb --build)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def build_deb(root: Path, package: str, files: dict[str, bytes]) -> Path:
    """A real (tiny) .deb of `package` holding `files` (path inside -> bytes), built under `root`."""
    tree = root / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(f"Package: {package}\nVersion: 1.0\nArchitecture: all\n"
                                             "Maintainer: nobody <nobody@example.org>\nDescription: test\n")
    for path, content in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(content)
    deb = root / f"{package}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True, capture_output=True)
    return deb
