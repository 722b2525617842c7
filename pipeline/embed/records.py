"""What every modality's reader shares: the error that quarantines a record, and hashing."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pydicom
from pydicom.uid import UID


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
