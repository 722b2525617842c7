"""Poison-pill isolation: the one guard every per-record step runs under.

A record that raises, runs past its time budget, allocates past its memory budget or kills its
decoder process gets a reason naming the failure; the records after it are decoded as usual.
The seeded fuzz test byte-mutates real WFDB headers and DICOM headers by the hundred and sends
them through the night's own hashing, decoding and encoding path: each one is embedded or
refused with a reason, never raised, never hung (the time budget ends any record).
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import wfdb

from pipeline.embed.isolation import Budget, Isolated, failure_reason, guarded
from pipeline.embed.modalities import encode_files, encode_guarded, hash_records, new_signal_encoder
from pipeline.filestore import FileStore
from pipeline.synthetic import ecg as synthetic_ecg
from pipeline.synthetic import imaging as synthetic_imaging


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _allocate(megabytes: int) -> int:
    return len(bytearray(megabytes << 20))


def _die(_) -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # as a codec's segfault or the kernel's OOM killer would


def test_a_record_past_its_time_budget_is_stopped_and_the_next_ones_run():
    with Isolated(Budget(seconds=1.0), workers=1) as isolated:
        outcomes = list(isolated.results("decoding", _sleep, [0.01, 30, 0.01]))
    assert outcomes == [(0, 0.01, None), (1, None, "decoding exceeded its 1 s time budget"), (2, 0.01, None)]


def test_a_record_past_its_memory_budget_fails_its_allocation_not_the_night():
    with Isolated(Budget(seconds=30, memory_mb=256), workers=1) as isolated:
        outcomes = list(isolated.results("decoding", _allocate, [16, 4096, 16]))
    assert outcomes == [(0, 16 << 20, None), (1, None, "decoding exceeded its 256 MB memory budget"),
                        (2, 16 << 20, None)]


def test_a_record_that_kills_its_decoder_costs_only_itself():
    with Isolated(Budget(seconds=30), workers=2) as isolated:
        outcomes = list(isolated.results("decoding", _die, [None]))
        after = list(isolated.results("decoding", _sleep, [0.0, 0.0]))
    assert outcomes == [(0, None, "decoding stopped its decoder process (SIGKILL)")]
    assert after == [(0, 0.0, None), (1, 0.0, None)]


def test_reasons_name_the_failure_never_its_message():
    message = "cannot open /store/DOE_JOHN_MRN123/ecg.hea: Patient Jane Roe"
    assert guarded("reading", lambda: open(message)) == (None, "reading failed (FileNotFoundError)")
    assert failure_reason("decoding", MemoryError(message)) == "decoding exceeded its memory budget"
    assert "DOE" not in failure_reason("decoding", ValueError(message))


def test_an_encoder_failure_or_a_non_finite_vector_costs_only_its_record():
    def encode(batch):
        if any(np.isnan(batch).any(axis=1)):  # a batch holding a poisoned input breaks the encoder
            raise RuntimeError("shape mismatch")
        return np.where(batch > 1e30, np.inf, batch)

    inputs = np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, 1e31], [4.0, 5.0]])
    vectors, failed = encode_guarded(encode, ["a", "b", "c", "d"], inputs, "ECG encoding")
    assert sorted(vectors) == ["a", "d"]
    assert failed == {"b": "ECG encoding failed (RuntimeError)",
                      "c": "embedding is not finite (NaN or infinite values)"}


# ------------------------------------------------------------------------------ the fuzz test

FUZZ_SEED, WFDB_MUTANTS, DICOM_MUTANTS = 20261206, 220, 220
INTERESTING = [b"\x00", b"\xff", b"-", b".", b"9", b"e", b"/", b" ", b"\n", b"(", b"x", b"999999999", b"-1", b"nan"]


def _mutate(data: bytes, rng: np.random.Generator, region: int) -> bytes:
    """1-4 byte-level mutations (flip, overwrite, insert, delete) within the first ``region`` bytes."""
    data = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        at = int(rng.integers(0, min(region, len(data))))
        kind = int(rng.integers(0, 4))
        if kind == 0:
            data[at] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            token = INTERESTING[int(rng.integers(0, len(INTERESTING)))]
            data[at:at + len(token)] = token
        elif kind == 2:
            data[at:at] = INTERESTING[int(rng.integers(0, len(INTERESTING)))]
        else:
            del data[at:at + int(rng.integers(1, 8))]
    return bytes(data)


def _fuzz_store(folder) -> pd.DataFrame:
    rng = np.random.default_rng(FUZZ_SEED)
    signal = synthetic_ecg.synth_ecg(np.random.default_rng(3), 75, 0.0, 95, False)
    leads = synthetic_ecg.LEADS
    wfdb.wrsamp("base", fs=synthetic_ecg.FS, units=["mV"] * 12, sig_name=list(leads), p_signal=signal,
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder))
    header, samples = (folder / "base.hea").read_bytes(), (folder / "base.dat").read_bytes()
    synthetic_imaging.write_dicom(folder / "base.dcm", synthetic_imaging.synth_chest(np.random.default_rng(4), 1.0),
                                  patient_id="fuzz", study_uid_seed="fuzz", when=datetime(2026, 3, 1, 7))
    dicom = (folder / "base.dcm").read_bytes()
    ecgs, images = [], []
    for k in range(WFDB_MUTANTS):  # the header mutated; each record has its own data file
        name = f"w{k}"
        (folder / f"{name}.hea").write_bytes(_mutate(header.replace(b"base", name.encode()), rng, len(header)))
        (folder / f"{name}.dat").write_bytes(samples)
        ecgs.append(name)
    pixels_at = dicom.find(b"\xe0\x7f\x10\x00")
    for k in range(DICOM_MUTANTS):  # everything before the pixel data is fair game
        (folder / f"d{k}.dcm").write_bytes(_mutate(dicom, rng, pixels_at))
        images.append(f"d{k}.dcm")
    return pd.DataFrame({"ecg": pd.Series(ecgs), "images": pd.Series(images)})


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-store")
    return folder, _fuzz_store(folder)


FUZZ_DEADLINE_S = 600  # far above the ~5 s it takes: only a hang (a record outside every budget) reaches it


@contextmanager
def deadline(seconds: int):
    """Fail, rather than hang CI, if the body runs past ``seconds``."""
    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s: a record escaped the time budget")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("modality", ["ecg", "images"])
def test_fuzzed_headers_are_embedded_or_refused_with_a_reason_never_raised_or_hung(fuzzed, modality):
    with deadline(FUZZ_DEADLINE_S):
        _fuzz_night(fuzzed, modality)


def _fuzz_night(fuzzed, modality: str) -> None:
    folder, uris = fuzzed
    store = FileStore(folder, max_bytes=64 << 20)
    records = pd.DataFrame({"record_id": [f"r{k}" for k in range(len(uris[modality]))], "stay_id": 1,
                            "uri": uris[modality]})
    hashed, unreadable = hash_records(records, modality, store, workers=2)
    encoder = new_signal_encoder(modality, {"target_fs": 100, "seconds": 10} if modality == "ecg" else {"size": 64})
    vectors, failed = encode_files(hashed, encoder, store, workers=2, budget=Budget(seconds=10, memory_mb=1024))

    embedded = hashed[hashed["content_hash"].isin(vectors)]
    refused = set(unreadable["record_id"]) | set(hashed.loc[hashed["content_hash"].isin(failed), "record_id"])
    assert set(embedded["record_id"]) | refused == set(records["record_id"])  # every mutant accounted for
    assert not set(embedded["record_id"]) & refused
    assert all(np.isfinite(v).all() for v in vectors.values())
    reasons = list(unreadable["reason"]) + list(failed.values())
    assert all(reasons) and not [r for r in reasons if str(folder) in r or "/" in r.split("(")[0][-3:]]
    assert len(refused) >= 0.2 * len(records) and len(embedded) >= 0.1 * len(records), \
        f"{len(refused)} refused, {len(embedded)} embedded: the mutations no longer exercise both outcomes"


def test_a_record_hashed_earlier_then_replaced_by_a_link_out_of_the_store_is_refused_when_decoded(tmp_path):
    """A past night's record is decoded again (a new encoder version) without being hashed again:
    the file store's rules run in the decoder too."""
    store_folder, outside = tmp_path / "store", tmp_path / "outside"
    for folder in (store_folder, outside):
        folder.mkdir()
    for target in (store_folder / "a.dcm", store_folder / "b.dcm", outside / "x.dcm"):
        synthetic_imaging.write_dicom(target, synthetic_imaging.synth_chest(np.random.default_rng(1), 1.0),
                                      patient_id="p", study_uid_seed=target.name, when=datetime(2026, 3, 1))
    store = FileStore(store_folder)
    hashed, _ = hash_records(pd.DataFrame({"record_id": ["a", "b"], "stay_id": 1, "uri": ["a.dcm", "b.dcm"]}),
                             "images", store)
    (store_folder / "a.dcm").unlink()
    (store_folder / "a.dcm").symlink_to(outside / "x.dcm")
    vectors, failed = encode_files(hashed, new_signal_encoder("images", {"size": 64}), store)
    assert list(failed.values()) == ["file path points outside the file store"] and len(vectors) == 1


def _decode_in_a_daemonic_process(queue) -> None:
    with Isolated(Budget(seconds=10), workers=1) as isolated:
        queue.put(list(isolated.results("decoding", int, ["1", "x"])))


def test_decoders_start_inside_a_daemonic_task_process():
    """Celery runs each Airflow task in a daemonic process, which multiprocessing forbids to have
    children: a night on the Celery topology must still decode its new files."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_decode_in_a_daemonic_process, args=(queue,), daemon=True)
    process.start()
    assert queue.get(timeout=60) == [(0, 1, None), (1, None, "decoding failed (ValueError)")]
    process.join(timeout=60)
    assert process.exitcode == 0


def test_hashing_reads_no_link_no_pipe_and_no_more_than_the_limit(tmp_path):
    """The file store checks a file before hashing it, but the file can be swapped in between:
    hashing itself follows no link, never waits on a FIFO and stops at the size limit."""
    from pipeline.embed.records import RecordError, files_sha256

    (tmp_path / "a.dcm").write_bytes(b"x" * 4096)
    (tmp_path / "link.dcm").symlink_to(tmp_path / "a.dcm")
    os.mkfifo(tmp_path / "fifo.dcm")
    assert len(files_sha256([tmp_path / "a.dcm"], max_bytes=4096)) == 64
    with deadline(30):
        for name, reason in (("link.dcm", "file cannot be opened (ELOOP)"),
                             ("fifo.dcm", "file is not a regular file (a directory, device, pipe or socket)")):
            with pytest.raises(RecordError) as refused:
                files_sha256([tmp_path / name])
            assert refused.value.reason == reason
    with pytest.raises(RecordError, match="larger than the 0 MB file limit"):
        files_sha256([tmp_path / "a.dcm", tmp_path / "a.dcm"], max_bytes=6000)
