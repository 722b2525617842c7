"""The file store: where waveforms and pixels live. Tables hold relative URIs into it."""

from __future__ import annotations

from pathlib import Path


class FileStore:
    """A local directory addressed by relative URIs (``ecg/p1/s2/2``, ``cxr/p1/s2/x.dcm``)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, uri: str) -> Path:
        resolved = (self.root / uri).resolve()
        if self.root.resolve() not in resolved.parents and resolved != self.root.resolve():
            raise ValueError(f"URI {uri!r} points outside the file store")
        return resolved
