"""What every modality's reader shares: the error that quarantines a record, and hashing."""

from __future__ import annotations

import hashlib


class RecordError(Exception):
    """A record Vigil cannot use; ``reason`` is what the quarantine table says."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def files_sha256(paths) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
