"""Encoders and readers: text through transformers (a tiny model built here, and the real
MiniLM), ECGs through wfdb, images through pydicom, and the content-hash cache."""

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
import wfdb

from pipeline.config import load_settings
from pipeline.embed.ecg import _read_format16, condition_signal, read_ecg, read_leads, record_files
from pipeline.embed.imaging import read_image
from pipeline.embed.modalities import embed_records, hash_records, new_signal_encoder, stay_sequences, stay_vectors
from pipeline.embed.records import RecordError
from pipeline.embed.text import TextEncoder
from pipeline.filestore import FileStore
from pipeline.synthetic import ecg as synthetic_ecg
from pipeline.synthetic import imaging as synthetic_imaging

NOTES = ["Endotracheal tube in place.", "Patient extubated, on nasal cannula and tolerating diet.",
         "No pneumothorax. Heart size is normal. Comparison is made to the prior study of yesterday."]


@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory) -> Path:
    """A 1-layer BERT and WordPiece tokenizer trained here, saved like any hub checkpoint."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(NOTES * 5, trainers.WordPieceTrainer(
        vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")),
                                                 ("[SEP]", tokenizer.token_to_id("[SEP]"))])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]", model_max_length=64).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder)
    return folder


def test_text_encoder_loads_a_local_checkpoint_and_batches_without_changing_results(tiny_text_model):
    encoder = TextEncoder(str(tiny_text_model), max_tokens=32, batch_size=2)
    together = encoder.encode(NOTES)
    alone = np.vstack([encoder.encode([note]) for note in NOTES])
    assert together.shape == (3, 16)
    np.testing.assert_allclose(together, alone, atol=1e-5)  # length bucketing keeps input order
    assert encoder.encoder_id.endswith(encoder.encoder_id.split("@")[1]) and "@" in encoder.encoder_id
    cls = TextEncoder(str(tiny_text_model), max_tokens=32, pooling="cls")
    assert cls.encoder_id != encoder.encoder_id
    assert not np.allclose(cls.encode(NOTES), together)
    with pytest.raises(ValueError, match="pooling"):
        TextEncoder(str(tiny_text_model), pooling="max")
    windows, _ = encoder.windows(NOTES)
    for side in ("right", "left"):  # the batches are what the tokenizer's own padding gives
        encoder.tokenizer.padding_side = side
        ours, theirs = encoder._padded(windows), encoder.tokenizer.pad({"input_ids": windows}, return_tensors="pt")
        assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_long_notes_are_split_into_overlapping_windows_and_pooled(tiny_text_model):
    encoder = TextEncoder(str(tiny_text_model), max_tokens=16, overlap=4, max_windows=3, batch_size=2)
    long_note = " ".join(NOTES * 4)
    windows, owners = encoder.windows([NOTES[0], long_note])
    assert owners.tolist().count(0) == 1 and owners.tolist().count(1) == 3  # capped at max_windows
    first, second = windows[1], windows[2]
    assert len(first) == 16 and first[-5:-1] == second[1:5]  # neighbours share 4 tokens (inside [CLS]/[SEP])
    vectors = encoder.encode([NOTES[0], long_note])
    truncated = TextEncoder(str(tiny_text_model), max_tokens=16, overlap=4, max_windows=1).encode([long_note])
    assert not np.allclose(vectors[1], truncated[0])  # the rest of the note counts
    np.testing.assert_allclose(encoder.encode([long_note]), vectors[1:], atol=1e-5)  # batching changes nothing
    assert "w4x3" in encoder.encoder_id
    with pytest.raises(ValueError, match="overlap"):
        TextEncoder(str(tiny_text_model), max_tokens=16, overlap=8)


def test_embedding_cache_embeds_each_content_once_per_encoder(warehouse, settings, tiny_text_model):
    records = pd.DataFrame({"record_id": ["a", "b", "c"], "stay_id": [1, 1, 2], "text": [NOTES[0], NOTES[1], NOTES[0]]})
    hashed, failed = hash_records(records, "notes", FileStore(settings.filestore))
    assert failed.empty and hashed["content_hash"].nunique() == 2
    encoder = TextEncoder(str(tiny_text_model), max_tokens=32)
    first, _, new = embed_records(warehouse, "notes", hashed, encoder, FileStore(settings.filestore))
    assert new == 2
    second, _, new_again = embed_records(warehouse, "notes", hashed, encoder, FileStore(settings.filestore))
    assert new_again == 0
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    other = TextEncoder(str(tiny_text_model), max_tokens=16)  # a new encoder version re-embeds everything
    _, _, new_version = embed_records(warehouse, "notes", hashed, other, FileStore(settings.filestore))
    assert new_version == 2


def test_stay_vectors_pool_only_records_available_at_prediction_time():
    t = pd.Timestamp("2026-03-01")
    records = pd.DataFrame({
        "stay_id": [1, 1, 1, 2], "content_hash": ["x", "y", "z", "x"],
        "time": pd.to_datetime(["2026-02-28", "2026-02-28 12:00", "2026-03-01 06:00", "2026-02-27"], format="ISO8601"),
        "arrival_time": pd.to_datetime(["2026-02-28", "2026-03-01 01:00", "2026-03-01 06:00", "2026-02-27"], format="ISO8601"),
    })
    vectors = {"x": np.array([1.0, 0.0], np.float32), "y": np.array([0.0, 1.0], np.float32),
               "z": np.array([9.0, 9.0], np.float32)}
    keys = pd.DataFrame({"stay_id": [1, 2, 3], "prediction_time": [t, t, t]})
    matrix, present = stay_vectors(records, vectors, keys, 2, "mean")
    np.testing.assert_array_equal(present, [True, True, False])
    np.testing.assert_array_equal(matrix[0], [1.0, 0.0])  # y arrived late, z is in the future
    np.testing.assert_array_equal(matrix[2], [0.0, 0.0])


def test_stay_sequences_keep_the_latest_records_in_time_order():
    t = pd.Timestamp("2026-03-01")
    records = pd.DataFrame({
        "stay_id": [1, 1, 1, 1, 2], "content_hash": ["c", "a", "b", "late", "a"],
        "time": pd.to_datetime(["2026-02-28 12:00", "2026-02-27", "2026-02-28", "2026-02-28 13:00", "2026-02-27"], format="ISO8601"),
        "arrival_time": pd.to_datetime(["2026-02-28 12:00", "2026-02-27", "2026-02-28", "2026-03-02",
                                        "2026-02-27"], format="ISO8601"),
    })
    vectors = {h: np.full(2, i, np.float32) for i, h in enumerate(["a", "b", "c", "late"], start=1)}
    keys = pd.DataFrame({"stay_id": [1, 2, 3], "prediction_time": [t, t, t]})
    sequences, mask = stay_sequences(records, vectors, keys, 2, max_length=2)
    np.testing.assert_array_equal(sequences[0, :, 0], [2, 3])  # b then c: a dropped, "late" not yet arrived
    np.testing.assert_array_equal(mask, [[True, True], [False, True], [False, False]])
    np.testing.assert_array_equal(sequences[1, 1], [1, 1])  # the only record sits in the last slot


@pytest.mark.shared_data
def test_real_minilm_embeds_real_clinical_notes(shared_data):
    from pipeline.config import load_settings

    notes = pd.read_csv(shared_data / "notes" / "mtsamples_200.csv").dropna(subset=["transcription"]).head(12)
    encoder = TextEncoder(load_settings({}).text_encoder, max_tokens=128, batch_size=4)
    vectors = encoder.encode(notes["transcription"].tolist())
    assert vectors.shape == (12, 384) and np.isfinite(vectors).all()
    assert np.linalg.norm(vectors, axis=1).min() > 0
    assert len({v.tobytes() for v in vectors}) == 12


def _write_record(folder: Path, name: str, signal: np.ndarray, leads) -> Path:
    wfdb.wrsamp(name, fs=500, units=["mV"] * len(leads), sig_name=list(leads), p_signal=signal,
                fmt=["16"] * len(leads), adc_gain=[1000.0] * len(leads), baseline=[0] * len(leads),
                write_dir=str(folder))
    return folder / name


def test_ecg_reader_standardises_and_names_every_failure(tmp_path):
    rng = np.random.default_rng(1)
    signal = synthetic_ecg.synth_ecg(rng, 75, 0.1, 100, False)
    good = read_ecg(_write_record(tmp_path, "good", signal, synthetic_ecg.LEADS))
    assert good.shape == (12, 1000) and good.dtype == np.float32 and np.abs(good).max() > 0.3
    shuffled = read_ecg(_write_record(tmp_path, "shuffled", signal[:, ::-1], synthetic_ecg.LEADS[::-1]))
    np.testing.assert_allclose(shuffled, good, atol=1e-3)  # lead order is normalised

    truncated = _write_record(tmp_path, "truncated", signal, synthetic_ecg.LEADS)
    data = truncated.with_suffix(".dat")
    data.write_bytes(data.read_bytes()[:3000])
    cases = {
        tmp_path / "absent": "ECG file not found",
        truncated: "unreadable or truncated WFDB record",
        _write_record(tmp_path, "three", signal[:, :3], synthetic_ecg.LEADS[:3]): "wrong lead set",
        _write_record(tmp_path, "flat", np.zeros_like(signal), synthetic_ecg.LEADS): "flat-line signal",
        _write_record(tmp_path, "short", signal[:1000], synthetic_ecg.LEADS): "signal too short",
    }
    for path, reason in cases.items():
        with pytest.raises(RecordError) as caught:
            read_ecg(path)
        assert caught.value.reason.startswith(reason), (path.name, caught.value.reason)


def _same_as_wfdb(path: Path, to_mv: float = 1.0) -> np.ndarray:
    """Vigil's format-16 reader against ``wfdb.rdrecord`` on one record: same names, rate, samples."""
    samples, names, fs = _read_format16(path)
    reference = wfdb.rdrecord(str(path))
    assert sorted(names) == sorted(reference.sig_name) and fs == reference.fs
    expected = reference.p_signal[:, [reference.sig_name.index(n) for n in names]] * to_mv
    np.testing.assert_allclose(samples, expected, rtol=1e-5, atol=1e-6, err_msg=path.name)
    return samples


@pytest.mark.parametrize("fs, target_fs", [(500, 100), (1000, 100), (257, 100), (500, 500), (250, 500)])
def test_conditioning_keeps_the_cardiac_band_and_removes_wander_and_noise_at_any_rate(fs, target_fs):
    """5 Hz passes; 0.1 Hz baseline wander and noise above 40 Hz (below the source's Nyquist) go,
    whether the record is resampled down, up, by an odd ratio or not at all."""
    t = np.arange(fs * 12) / fs
    noise = min(0.45 * target_fs + 5, 0.45 * fs)
    raw = np.stack([np.sin(2 * np.pi * 5 * t + k) + 0.8 * np.sin(2 * np.pi * 0.1 * t)
                    + 0.3 * np.sin(2 * np.pi * noise * t) for k in range(12)], axis=1)
    conditioned = condition_signal(raw, fs, target_fs, 10)
    assert conditioned.shape == (12, 10 * target_fs) and conditioned.dtype == np.float32
    at = np.arange(10 * target_fs) / target_fs
    expected = np.stack([np.sin(2 * np.pi * 5 * at + k) for k in range(12)])
    middle = slice(2 * target_fs, 8 * target_fs)  # away from the edges' filter transients
    assert np.abs(conditioned[:, middle] - expected[:, middle]).max() < 0.02


def test_plain_wfdb_records_read_as_wfdb_reads_them_and_other_formats_go_through_wfdb(tmp_path):
    signal = synthetic_ecg.synth_ecg(np.random.default_rng(4), 80, 0.1, 95, False)
    plain = _write_record(tmp_path, "plain", signal, synthetic_ecg.LEADS)
    _same_as_wfdb(plain)

    # leads over two data files (as PTB's .dat + .xyz), a baseline, gain 2000/mV, names in reverse order
    names = list(synthetic_ecg.LEADS[::-1])
    files = ["split.dat"] * 7 + ["split.xyz"] * 5
    record = wfdb.Record(record_name="split", n_sig=12, fs=500, sig_len=len(signal), file_name=files, fmt=["16"] * 12,
                         adc_gain=[2000.0] * 12, baseline=[7] * 12, units=["mV"] * 12, sig_name=names,
                         p_signal=signal[:, ::-1], adc_res=[16] * 12, adc_zero=[0] * 12, block_size=[0] * 12)
    record.d_signal = record.adc()
    record.set_d_features()
    record.wrsamp(write_dir=str(tmp_path))
    _same_as_wfdb(tmp_path / "split")
    np.testing.assert_allclose(read_ecg(tmp_path / "split"), read_ecg(plain), atol=2e-3)

    # microvolts are read as millivolts (wfdb returns the header's units)
    wfdb.wrsamp("micro", fs=500, units=["uV"] * 12, sig_name=list(synthetic_ecg.LEADS), p_signal=signal * 1000,
                fmt=["16"] * 12, adc_gain=[1.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    _same_as_wfdb(tmp_path / "micro", to_mv=1e-3)
    np.testing.assert_allclose(read_leads(tmp_path / "micro")[0], read_leads(plain)[0], atol=1e-3)

    # a 12-bit format-212 record is not plain: wfdb reads it, and it reads the same signal
    wfdb.wrsamp("packed", fs=500, units=["mV"] * 12, sig_name=list(synthetic_ecg.LEADS), p_signal=signal,
                fmt=["212"] * 12, adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    assert _read_format16(tmp_path / "packed") is None
    np.testing.assert_allclose(read_ecg(tmp_path / "packed"), read_ecg(plain), atol=0.01)

    # the format's "no sample" value becomes a gap (NaN) in the signal
    data = plain.with_suffix(".dat")
    raw = np.fromfile(data, dtype="<i2")
    raw[:12 * 10] = -32768
    raw.tofile(data)
    assert np.isnan(_same_as_wfdb(plain)[:10]).all()


@pytest.mark.shared_data
def test_ecg_reader_reads_every_real_record(shared_data):
    records = sorted({p.with_suffix("") for p in (shared_data / "ecg").glob("*/*.hea")})
    assert len(records) >= 17  # CinC 2021 (.mat), PTB (.dat, 15 leads), LUDB (one file per lead set)
    waveforms = sorted((shared_data / "ecg").rglob("*.dcm"))  # DICOM 12-lead ECG Waveform Storage
    assert waveforms
    for record in records:
        _same_as_wfdb(record)  # every real WFDB record is plain format 16 (.dat, MATLAB .mat, .dat + .xyz)
    for record in records + waveforms:
        signal = read_ecg(record)
        assert signal.shape == (12, 1000) and np.isfinite(signal).all(), record.name
        assert np.abs(signal).max() > 0.1, record.name  # millivolts, not microvolts or a flat line
    every_file = {p for p in (shared_data / "ecg").rglob("*") if p.is_file()}
    covered = {f for r in records for f in record_files(r)} | set(waveforms)
    for other in every_file - covered:  # the rest are the records' beat annotations (LUDB: one file per lead)
        wfdb.rdann(str(other.with_suffix("")), other.suffix[1:])


def test_image_reader_applies_photometric_interpretation_and_rejects_bad_files(tmp_path):
    rng = np.random.default_rng(3)
    pixels = synthetic_imaging.synth_chest(rng, 1.0)
    when = datetime(2026, 3, 1, 10)
    synthetic_imaging.write_dicom(tmp_path / "m2.dcm", pixels, patient_id="1", study_uid_seed="a", when=when)
    synthetic_imaging.write_dicom(tmp_path / "m1.dcm", pixels, patient_id="1", study_uid_seed="b", when=when,
                                  monochrome1=True)
    m2, m1 = read_image(tmp_path / "m2.dcm"), read_image(tmp_path / "m1.dcm")
    assert m2.shape == (1, 64, 64)
    np.testing.assert_allclose(m1, m2, atol=0.02)  # MONOCHROME1 is inverted back to bright = dense
    (tmp_path / "junk.dcm").write_bytes(b"\x00" * 200)
    for path, reason in {tmp_path / "junk.dcm": "not a readable DICOM file",
                         tmp_path / "none.dcm": "DICOM file not found"}.items():
        with pytest.raises(RecordError) as caught:
            read_image(path)
        assert caught.value.reason.startswith(reason)


def _displayed_at_full_resolution(path: Path, size: int) -> np.ndarray:
    """The textbook order: modality LUT, window, contrast stretch and inversion on every stored
    pixel, then the reduction to the encoder's size."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    image = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds).astype(np.float64), ds)
    low, high = np.percentile(image, [0.5, 99.5])
    image = np.clip((image - low) / (high - low), 0, 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        image = 1 - image
    return torch.nn.functional.interpolate(torch.from_numpy(image.astype(np.float32))[None, None], size=(size, size),
                                           mode="area")[0].numpy()


def _close_to_full_resolution(path: Path, size: int) -> None:
    image, reference = read_image(path, size), _displayed_at_full_resolution(path, size)
    assert np.abs(image - reference).mean() < 0.02, path.name
    assert np.corrcoef(image.ravel(), reference.ravel())[0, 1] > 0.999, path.name


def test_image_reader_reduces_before_windowing_without_changing_the_picture(tmp_path):
    for index, monochrome1 in enumerate((False, True)):
        path = tmp_path / f"{index}.dcm"
        synthetic_imaging.write_dicom(path, synthetic_imaging.synth_chest(np.random.default_rng(index), 1.0),
                                      patient_id="1", study_uid_seed=str(index), when=datetime(2026, 3, 1),
                                      monochrome1=monochrome1)
        assert "WindowCenter" in pydicom.dcmread(path, stop_before_pixels=True)
        for size in (64, 224):
            _close_to_full_resolution(path, size)


def test_files_hash_the_same_on_threads_and_missing_ones_keep_their_reason(tmp_path):
    signal = synthetic_ecg.synth_ecg(np.random.default_rng(5), 70, 0.1, 100, False)
    for i in range(6):
        _write_record(tmp_path, f"r{i}", signal + i * 0.01, synthetic_ecg.LEADS)
    records = pd.DataFrame({"record_id": [str(i) for i in range(8)], "stay_id": range(8),
                            "uri": [f"r{i}" for i in range(6)] + ["absent", "r0"]})
    serial, serial_failed = hash_records(records, "ecg", FileStore(tmp_path))
    threaded, threaded_failed = hash_records(records, "ecg", FileStore(tmp_path), workers=3)
    pd.testing.assert_frame_equal(threaded, serial)
    pd.testing.assert_frame_equal(threaded_failed, serial_failed)
    assert serial["content_hash"].nunique() == 6 and serial["content_hash"].iloc[-1] == serial["content_hash"].iloc[0]
    assert serial_failed["record_id"].tolist() == ["6"] and serial_failed["reason"].tolist() == ["ECG file not found"]


@pytest.mark.shared_data
def test_every_real_dicom_is_read_or_refused_with_a_reason(shared_data):
    files = sorted(p for p in (shared_data / "dicom").rglob("*") if p.is_file() and p.suffix.lower() == ".dcm")
    assert len(files) >= 6
    outcomes = {}
    for path in files:
        try:
            image = read_image(path)
            assert image.shape == (1, 64, 64) and np.isfinite(image).all(), path.name
            outcomes[path.name] = "image"
        except RecordError as error:
            assert error.reason, path.name
            outcomes[path.name] = error.reason
    assert sum(o == "image" for o in outcomes.values()) >= 4, outcomes


@pytest.mark.shared_data
def test_image_reader_on_every_real_dicom(shared_data):
    folder = shared_data / "dicom"
    for name in ("chest_dx_nih_cxr14.dcm", "chest_cr_RG1_J2KI.dcm", "CT_small.dcm", "MR_small.dcm"):
        image = read_image(folder / name)
        assert image.shape == (1, 64, 64) and 0 <= image.min() and image.max() <= 1 and image.std() > 0.05, name
        _close_to_full_resolution(folder / name, 224)
    for name, reason in {"liver_1frame.dcm": "DICOM object holds no image (Segmentation Storage)",
                         "../ecg/dicom_waveform/waveform_ecg.dcm": "DICOM object holds no image"}.items():
        with pytest.raises(RecordError) as caught:
            read_image(folder / name)
        assert caught.value.reason.startswith(reason)
    try:  # 12-bit JPEG needs a decoder plugin: either it decodes, or the reason says why not
        assert read_image(folder / "JPEG-lossy.dcm").shape == (1, 64, 64)
    except RecordError as error:
        assert error.reason.startswith("cannot decode pixel data (JPEG Extended")
    assert pydicom.dcmread(folder / "CT_small.dcm").Modality == "CT"


def test_signal_encoders_embed_to_their_configured_size():
    ecg = new_signal_encoder("ecg", {"target_fs": 100, "seconds": 10, "embedding_dim": 8, "seed": 1})
    image = new_signal_encoder("images", {"size": 64, "embedding_dim": 8, "seed": 1})
    assert ecg.encode(np.zeros((3, 12, 1000), np.float32), "cpu").shape == (3, 8)
    assert image.encode(np.zeros((2, 1, 64, 64), np.float32), "cpu").shape == (2, 8)
    again = new_signal_encoder("ecg", {"target_fs": 100, "seconds": 10, "embedding_dim": 8, "seed": 1})
    assert again.encoder_id == ecg.encoder_id  # same weights, same id
    assert "target_fs=100" in ecg.encoder_id


@pytest.mark.parametrize("family", ["resnet", "dinov2", "clip"])
def test_image_encoder_loads_a_transformers_backbone_from_a_local_directory(tmp_path, family):
    from transformers import CLIPVisionConfig, CLIPVisionModel, Dinov2Config, Dinov2Model, ResNetConfig, ResNetModel

    torch.manual_seed(0)
    model = {
        "resnet": lambda: ResNetModel(ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16],
                                                   depths=[1, 1], layer_type="basic")),
        "dinov2": lambda: Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                   intermediate_size=32, image_size=28, patch_size=14)),
        "clip": lambda: CLIPVisionModel(CLIPVisionConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                         intermediate_size=32, image_size=28, patch_size=14)),
    }[family]()
    model.save_pretrained(tmp_path / family)
    encoder = new_signal_encoder("images", {"backbone": str(tmp_path / family), "size": 28, "embedding_dim": 8})
    assert encoder.params["size"] == 28 and family in encoder.encoder_id
    pixels = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    vectors = encoder.encode(pixels, "cpu")
    assert vectors.shape == (3, 8) and np.isfinite(vectors).all() and not np.allclose(vectors[0], vectors[1])
    frozen = [p.requires_grad for p in encoder.network.backbone.parameters()]
    assert frozen and not any(frozen)  # only the projection learns
    assert all(p.requires_grad for p in encoder.network.project.parameters())


def test_signal_encoder_weights_load_from_a_path(tmp_path):
    params = {"target_fs": 100, "seconds": 10, "embedding_dim": 8}
    trained = new_signal_encoder("ecg", {**params, "seed": 1})
    torch.save(trained.network.state_dict(), tmp_path / "ecg.pt")
    loaded = new_signal_encoder("ecg", {**params, "seed": 2, "weights": str(tmp_path / "ecg.pt")})
    assert loaded.encoder_id == trained.encoder_id  # same weights, same version, same cache entries
    signal = np.random.default_rng(0).standard_normal((2, 12, 1000)).astype(np.float32)
    np.testing.assert_array_equal(loaded.encode(signal, "cpu"), trained.encode(signal, "cpu"))
    with pytest.raises(FileNotFoundError, match="weights not found"):
        new_signal_encoder("ecg", {**params, "weights": str(tmp_path / "missing.pt")})


def _annotated_intervals(record: Path, lead: str = "ii") -> dict[str, float]:
    """Median PR, QRS and QT (ms) and heart rate from LUDB's cardiologist wave boundaries."""
    notes = wfdb.rdann(str(record), lead)
    waves: dict[str, list[tuple[int, int]]] = {}
    for i, symbol in enumerate(notes.symbol[1:-1], start=1):
        if symbol in "pNt" and notes.symbol[i - 1] == "(" and notes.symbol[i + 1] == ")":
            waves.setdefault(symbol, []).append((notes.sample[i - 1], notes.sample[i + 1]))
    fs = notes.fs or 500
    qrs = np.array(waves["N"])

    def following(starts, ends, limit_s):
        return np.median([(e - s) / fs * 1000 for s in starts for e in ends if 0 < e - s < limit_s * fs])

    return {"heart_rate": 60 / (np.median(np.diff(qrs[:, 0])) / fs), "qrs_ms": np.median(qrs[:, 1] - qrs[:, 0]) / fs * 1000,
            "pr_ms": following([p[0] for p in waves["p"]], qrs[:, 0], 0.4),
            "qt_ms": following(qrs[:, 0], [t[1] for t in waves["t"]], 0.7)}


@pytest.mark.shared_data
def test_ecg_intervals_agree_with_a_cardiologists_annotation_on_real_records(shared_data):
    from pipeline.embed.intervals import INTERVALS, IntervalMeasurer

    ludb = shared_data / "ecg" / "ludb_record1" / "1"
    measured = dict(zip(INTERVALS, IntervalMeasurer().read(ludb)))
    annotated = _annotated_intervals(ludb)
    assert abs(measured["heart_rate"] - annotated["heart_rate"]) < 3
    for interval in ("pr_ms", "qrs_ms", "qt_ms"):
        assert abs(measured[interval] - annotated[interval]) <= 20, (interval, measured, annotated)
    records = sorted({p.with_suffix("") for p in (shared_data / "ecg").glob("*/*.hea")})
    for record in records + sorted((shared_data / "ecg").rglob("*.dcm")):
        values = dict(zip(INTERVALS, IntervalMeasurer().read(record)))
        assert 30 < values["heart_rate"] < 200 and 40 <= values["qrs_ms"] <= 250, (record.name, values)
        assert 250 < values["qtc_ms"] < 650, (record.name, values)


def test_ecg_intervals_follow_the_signal_prefer_the_cart_and_are_measured_once(warehouse, settings, tmp_path):
    from pipeline.embed import intervals as ecg_intervals_module

    store = FileStore(tmp_path)
    rows = []
    for i, (rate, qrs) in enumerate([(55, 90), (110, 90), (75, 150)]):
        signal = synthetic_ecg.synth_ecg(np.random.default_rng(i), rate, 0.0, qrs, False)
        path = _write_record(tmp_path, f"r{i}", signal, synthetic_ecg.LEADS)
        rows.append({"record_id": str(i), "stay_id": 1, "time": pd.Timestamp("2026-01-01"), "uri": path.name,
                     "rr_interval": np.nan, "qrs_duration": np.nan})
    rows.append({**rows[0], "record_id": "cart", "rr_interval": 810.0, "qrs_duration": 96.0})
    (tmp_path / "empty.hea").write_text("empty 12 500 5000\n")
    rows.append({**rows[0], "record_id": "bad", "uri": "empty"})
    hashed, failed = hash_records(pd.DataFrame(rows), "ecg", store)
    assert failed["record_id"].tolist() == ["bad"]
    first = ecg_intervals_module.ecg_intervals(warehouse, hashed, store).set_index("record_id")
    assert first.loc[["0", "1", "2"], "measured_by"].eq("signal").all()
    np.testing.assert_allclose(first.loc[["0", "1", "2"], "heart_rate"], [55, 110, 75], rtol=0.08)
    assert first.loc["2", "qrs_ms"] > first.loc["0", "qrs_ms"] + 10  # the widened QRS is measured wider
    assert first.loc["1", "qt_ms"] < first.loc["0", "qt_ms"]  # QT shortens as the rate rises
    assert first.loc["cart", "measured_by"] == "cart" and first.loc["cart", "heart_rate"] == pytest.approx(60000 / 810)
    assert first.loc["cart", "qrs_ms"] == 96 and np.isfinite(first.loc["cart", "qtc_ms"])  # the rest from the signal

    calls = []
    original = ecg_intervals_module.measure_intervals
    ecg_intervals_module.measure_intervals = lambda *a: calls.append(a) or original(*a)
    try:
        again = ecg_intervals_module.ecg_intervals(warehouse, hashed, store).set_index("record_id")
    finally:
        ecg_intervals_module.measure_intervals = original
    assert calls == []  # the cache answers a second night
    pd.testing.assert_frame_equal(again, first)


def test_a_non_finite_vector_in_the_cache_is_embedded_again_once_and_replaced(warehouse, settings, tiny_text_model):
    """A vector cached before non-finite ones were refused is never used: its record is embedded
    again, and the finite vector replaces it, so the next night finds it in the cache."""
    from pipeline.store import embeddings as cache

    records = pd.DataFrame({"record_id": ["a"], "stay_id": [1], "text": [NOTES[0]]})
    hashed, _ = hash_records(records, "notes", FileStore(settings.filestore))
    encoder = TextEncoder(str(tiny_text_model), max_tokens=32)
    poisoned = np.full(encoder.dim, np.nan, dtype="<f4")
    cache.store(warehouse, encoder.encoder_id, "notes", {hashed["content_hash"].iloc[0]: poisoned})
    vectors, failures, new = embed_records(warehouse, "notes", hashed, encoder, FileStore(settings.filestore))
    assert new == 1 and failures.empty and np.isfinite(vectors[hashed["content_hash"].iloc[0]]).all()
    _, _, new_again = embed_records(warehouse, "notes", hashed, encoder, FileStore(settings.filestore))
    assert new_again == 0
    cached = cache.lookup(warehouse, encoder.encoder_id, hashed["content_hash"].tolist())
    assert len(cached) == 1 and np.isfinite(next(iter(cached.values()))).all()


def test_a_gain_that_is_a_word_is_refused_in_every_wfdb_format(tmp_path):
    """wfdb reads a word where the gain belongs as the format's default gain (200 per mV), so a
    record would be scaled wrong without a word of warning; any format is refused instead."""
    signal = synthetic_ecg.synth_ecg(np.random.default_rng(2), 70, 0.0, 90, False)[:5000]
    for fmt in ("16", "212"):
        wfdb.wrsamp(f"r{fmt}", fs=synthetic_ecg.FS, units=["mV"] * 12, sig_name=list(synthetic_ecg.LEADS),
                    p_signal=signal, fmt=[fmt] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                    write_dir=str(tmp_path))
        header = tmp_path / f"r{fmt}.hea"
        lines = header.read_text().splitlines()
        lines[1:13] = [" ".join(f if k != 2 else "x(0)/mV" for k, f in enumerate(line.split())) for line in lines[1:13]]
        header.write_text("\n".join(lines) + "\n")
        with pytest.raises(RecordError, match="a signal's gain is not a number"):
            read_leads(tmp_path / f"r{fmt}")


def tiny_clip(path: Path) -> Path:
    """A CLIP checkpoint the test builds: tiny image and text towers, and the shipped MiniLM's
    WordPiece tokenizer (its [SEP] ends a text, where CLIP pools)."""
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    tokenizer = AutoTokenizer.from_pretrained(load_settings({}).text_encoder)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": tokenizer.vocab_size, "hidden_size": 16, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 77,
                     "eos_token_id": tokenizer.sep_token_id, "bos_token_id": tokenizer.cls_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                       "image_size": 28, "patch_size": 14},
        projection_dim=8)
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_a_clip_checkpoint_embeds_images_and_rendered_text_into_its_shared_space(tmp_path):
    """The liver paper's CLIP-style model: ultrasound through the image tower and projection,
    the clinical fields' text through the text tower and projection, both frozen and as the
    checkpoint computes them, so their similarity is CLIP's own."""
    from transformers import CLIPModel

    from pipeline.embed.rendered import render_texts

    clip_dir = tiny_clip(tmp_path / "clip")
    texts = render_texts(pd.DataFrame({"age": [54.0, 71.0], "sex": ["M", "F"]}), "Age {age:.0f}, sex {sex}")
    text = TextEncoder(str(clip_dir), max_tokens=256)
    assert text.shared_space and text.dim == 8 and text.max_tokens == 77 and ":clip:" in text.encoder_id
    image = new_signal_encoder("images", {"backbone": str(clip_dir), "shared_space": True, "size": 28})
    assert image.network.config["embedding_dim"] == 8 and "shared_space=True" in image.encoder_id
    assert not any(p.requires_grad for p in image.network.backbone.parameters())
    pixels = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    text_vectors, image_vectors = text.encode(texts), image.encode(pixels, "cpu")
    clip = CLIPModel.from_pretrained(clip_dir).eval()
    tokens = text.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = clip(**tokens, pixel_values=torch.from_numpy(pixels).expand(-1, 3, -1, -1))
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(unit(text_vectors), reference.text_embeds.numpy(), atol=1e-5)
    np.testing.assert_allclose(unit(image_vectors), reference.image_embeds.numpy(), atol=1e-5)
    np.testing.assert_allclose(clip.logit_scale.exp().item() * unit(image_vectors) @ unit(text_vectors).T,
                               reference.logits_per_image.numpy(), atol=1e-4)   # CLIP's own image-text similarity
    with pytest.raises(ValueError, match="shared_space needs a CLIP checkpoint"):
        new_signal_encoder("images", {"backbone": load_settings({}).text_encoder, "shared_space": True})
