"""What every modality's reader shares: the error that quarantines a record, and hashing."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import zlib
from pathlib import Path

import pydicom
from pydicom.uid import UID


class RecordError(Exception):
    """A record Vigil cannot use; ``reason`` is what the quarantine table says."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


MASK_SUFFIX = ".mask.nrrd"


def mask_path(image: Path) -> Path:
    """Where an image's tumour mask lies: beside it, ``<file>.mask.nrrd``."""
    return image.with_name(image.name + MASK_SUFFIX)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def files_sha256(paths, max_bytes: int | None = None, what: str = "record") -> str:
    """SHA-256 over the files' bytes in order, read with bounds that hold even if a file was
    swapped after the store checked it: no link is followed (the file opened is the one the
    path resolved to just before, folders above it included), only a regular file is read (a FIFO
    opened non-blocking is refused, never waited on), at most the size it had when opened, and
    ``max_bytes`` at most in all."""
    digest, total = hashlib.sha256(), 0
    for path in paths:
        expected = os.path.realpath(path)
        try:
            descriptor = os.open(path, _OPEN_FLAGS)
        except OSError as error:
            raise RecordError(f"file cannot be opened ({error_name(error)})") from error
        with os.fdopen(descriptor, "rb") as handle:
            opened = f"/proc/self/fd/{descriptor}"
            if os.path.islink(opened) and os.readlink(opened) != expected:  # a folder above it swapped for a link
                raise RecordError("file changed while it was opened (a link was swapped in)")
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                raise RecordError("file is not a regular file (a directory, device, pipe or socket)")
            total += info.st_size
            if max_bytes is not None and total > max_bytes:
                raise RecordError(f"{what} is larger than the {max_bytes // 2**20:,} MB file limit")
            left = info.st_size
            while left > 0 and (block := handle.read(min(1 << 20, left))):
                digest.update(block)
                left -= len(block)
    return digest.hexdigest()


def error_name(error: BaseException) -> str:
    """``ENAMETOOLONG``-style name of an OS error, else its type: never its message (a path)."""
    code = getattr(error, "errno", None)
    return errno.errorcode.get(code, type(error).__name__) if code else type(error).__name__


MAX_INFLATED_BYTES = 1 << 30  # a deflated DICOM body may inflate to at most this (1 GiB)


def read_dicom(path: Path, **options) -> pydicom.Dataset:
    """``pydicom.dcmread`` of a file, refusing first a Deflated Explicit VR body that is not
    deflate data or inflates past :data:`MAX_INFLATED_BYTES` (pydicom inflates it whole, in
    memory: a 17 MB bomb asks for 4 GB). The check streams: it never holds more than a chunk."""
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:  # noqa: BLE001 - no usable file meta: dcmread below says why
        meta = None
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    length = meta.get("FileMetaInformationGroupLength") if meta is not None else None
    if syntax == pydicom.uid.DeflatedExplicitVRLittleEndian and length is not None:
        _check_inflated_size(path, 132 + 12 + int(length))
    return pydicom.dcmread(path, **options)


def _check_inflated_size(path: Path, offset: int, chunk: int = 1 << 20) -> None:
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            while data := inflater.unconsumed_tail or handle.read(chunk):
                total += len(inflater.decompress(data, chunk))
                if total > MAX_INFLATED_BYTES:
                    raise RecordError(f"deflated DICOM body inflates past {MAX_INFLATED_BYTES >> 20:,} MB "
                                      f"(a decompression bomb)")
                if inflater.eof:
                    break
    except zlib.error as error:
        raise RecordError("not a readable DICOM file (its deflated body is not deflate data)") from error


def sop_class_name(ds: pydicom.Dataset) -> str | None:
    """The registered name of a dataset's SOP class; None when absent, unknown or malformed
    (a hostile file may carry several values or a non-UID there)."""
    kind = ds.get("SOPClassUID")
    return kind.name if isinstance(kind, UID) and kind.is_valid and kind.name != str(kind) else None
