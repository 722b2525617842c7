"""The file store: where waveforms and pixels live. Tables hold relative URIs into it.

Every file Vigil opens goes through :meth:`FileStore.regular` first: it must lie inside the
store once links are followed, be a regular file (not a directory, device, pipe or socket) and
be no larger than the configured limit, so no record can make a night read ``/dev/zero``, wait
on a FIFO or pull a file from outside the store. Refusals are :class:`RecordError` with a reason
that names the failure, never the path (paths can carry a patient's name or MRN).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pipeline.embed.records import RecordError, error_name

NAME_MAX = 255    # bytes in one path component (ext4, XFS, NFS)
PATH_MAX = 4096   # bytes in a whole path


class FileStore:
    """A local directory addressed by relative URIs (``ecg/p1/s2/2``, ``cxr/p1/s2/x.dcm``)."""

    def __init__(self, root: Path, max_bytes: int | None = None):
        self.root = Path(root)
        self.max_bytes = max_bytes

    @classmethod
    def from_settings(cls, settings) -> FileStore:
        return cls(settings.filestore, max_bytes=settings.max_file_mb * 2**20)

    def path(self, uri: str) -> Path:
        """The absolute path a URI names, inside the store (it need not exist: a WFDB URI names
        a record, whose files add extensions)."""
        if uri is None or not str(uri).strip():
            raise RecordError("file path is empty")
        encoded = os.fsencode(str(uri))
        if len(encoded) > PATH_MAX or any(len(part) > NAME_MAX for part in encoded.split(b"/")):
            raise RecordError("file path is longer than the file system allows")
        try:
            root = self.root.resolve()
            resolved = (root / uri).resolve()
        except (OSError, RuntimeError, ValueError) as error:  # a link loop, an embedded NUL
            raise RecordError(f"file path cannot be resolved ({error_name(error)})") from error
        if root not in resolved.parents:
            raise RecordError("file path points outside the file store")
        return resolved

    def regular(self, path: Path, what: str = "file") -> Path:
        """``path`` if it may be opened: inside the store after following links, a regular file,
        within the size limit; else :class:`RecordError` naming ``what`` failed which rule."""
        try:
            root = self.root.resolve()
            resolved = Path(path).resolve()
            if root not in resolved.parents:
                raise RecordError(f"{what} points outside the file store")
            info = os.stat(resolved)
        except FileNotFoundError as error:
            raise RecordError(f"{what} not found") from error
        except (OSError, RuntimeError, ValueError) as error:
            raise RecordError(f"{what} cannot be opened ({error_name(error)})") from error
        if not stat.S_ISREG(info.st_mode):
            raise RecordError(f"{what} is not a regular file (a directory, device, pipe or socket)")
        if self.max_bytes is not None and info.st_size > self.max_bytes:
            raise RecordError(f"{what} is larger than the {self.max_bytes // 2**20:,} MB file limit")
        return resolved
