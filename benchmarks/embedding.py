"""Embedding-stage benchmark: records/s per modality through the nightly path, against a bare
model forward pass at the same batch size, measured side by side in one run.

    .venv/bin/python benchmarks/embedding.py            # 200 notes, 256 ECGs, 256 images
    .venv/bin/python benchmarks/embedding.py --quick    # a quarter of that
    .venv/bin/python benchmarks/embedding.py --encoders production --workers 12   # on a GPU worker

``--encoders default`` times the small encoders of the embedded default (MiniLM-L6 text, a
32-wide 1-D ResNet at 100 Hz, a 3-stage ResNet at 64 px). ``--encoders production`` times
encoders of the documented production sizes with random weights (no download): a BERT-base
text model at 512 tokens (Bio_ClinicalBERT's architecture, MiniLM's tokenizer), a 64-wide 1-D
ResNet over 10 s at 500 Hz, and a ResNet-50 image backbone at 224 px. The images are 12-bit
synthetic radiographs of ``--image-pixels`` (default 1024, NIH ChestX-ray14's size), ECGs 10 s
12-lead WFDB records at 500 Hz, notes the real mtsamples transcriptions in ../shared when present.

Pipeline = what the embed stage does per modality: hash the records, look the hashes up in the
(empty) cache, decode (tokenise into windows / read WFDB / read DICOM in the DataLoader, with
``--workers`` processes: by default ``VIGIL_DECODE_WORKERS``, as at night), run the encoder in
batches, pool, store the vectors. Bare = the encoder's forward pass alone on the
already tokenised / decoded tensors in the same batches. Overhead = pipeline / bare - 1 (target
<= 25 %). Each timing is the best of ``--repeats``, pipeline and bare alternating. On a CUDA
machine the forward passes run in bf16 autocast. Writes
benchmarks/results/embedding[-quick][-production][-cuda].json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import wfdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import load_settings, resolve_device  # noqa: E402
from pipeline.embed.modalities import embed_records, hash_records, new_signal_encoder  # noqa: E402
from pipeline.embed.text import TextEncoder  # noqa: E402
from pipeline.filestore import FileStore  # noqa: E402
from pipeline.synthetic import ecg as synthetic_ecg  # noqa: E402
from pipeline.synthetic import imaging as synthetic_imaging  # noqa: E402
from pipeline.synthetic import notes as synthetic_notes  # noqa: E402
from pipeline.store.warehouse import Warehouse  # noqa: E402

TARGET_OVERHEAD = 0.25
NOTES_CSV = ROOT.parent / "shared" / "data" / "notes" / "mtsamples_200.csv"


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def fresh_warehouse(folder: Path) -> Warehouse:
    wh = Warehouse(f"sqlite:///{folder / 'wh' / 'vigil.db'}", ROOT / "sql")
    wh.create_schema()
    return wh


def clear_cache(wh: Warehouse) -> None:
    with wh.begin() as conn:
        wh.execute(conn, "DELETE FROM vigil_features.embeddings")


def autocast(device: str):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else \
        torch.autocast("cpu", enabled=False)


# ------------------------------------------------------------------------------ modalities

def notes(count: int, csv: Path = NOTES_CSV) -> list[str]:
    if csv.exists():
        texts = pd.read_csv(csv)["transcription"].dropna().tolist()
        source = f"{csv.name} (real transcriptions)"
    else:
        rng = np.random.default_rng(0)
        texts = [synthetic_notes.discharge_summary(rng, bool(i % 5 == 0), f"Patient {i}") for i in range(count)]
        source = "synthetic discharge summaries"
    texts = [f"{t} [{i}]" for i, t in enumerate((texts * (count // len(texts) + 1))[:count])]  # distinct contents
    return texts, source


def production_text_model(folder: Path, tokenizer_source: str) -> str:
    """A BERT-base model (Bio_ClinicalBERT's shape) with random weights, saved with a tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    target = folder / "bert-base"
    BertModel(BertConfig(vocab_size=len(tokenizer))).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return str(target)


def production_image_backbone(folder: Path) -> str:
    """A ResNet-50 (``ResNetConfig``'s defaults) with random weights, saved as a local checkpoint."""
    from transformers import ResNetConfig, ResNetModel

    target = folder / "resnet-50"
    ResNetModel(ResNetConfig()).save_pretrained(target)
    return str(target)


def bench_text(folder: Path, count: int, repeats: int, device: str, batch_size: int, production: bool,
               csv: Path) -> dict:
    settings = load_settings()
    texts, source = notes(count, csv)
    folder.mkdir(parents=True, exist_ok=True)
    model = production_text_model(folder, settings.text_encoder) if production else settings.text_encoder
    max_tokens = 512 if production else settings.text_max_tokens
    encoder = TextEncoder(model, max_tokens=max_tokens, batch_size=batch_size, device=device,
                          overlap=max_tokens // 8, max_windows=settings.text_max_windows)
    wh, store = fresh_warehouse(folder), FileStore(folder)
    records = pd.DataFrame({"record_id": [str(i) for i in range(count)], "stay_id": 1, "text": texts})

    def pipeline():
        clear_cache(wh)
        hashed, _ = hash_records(records, "notes", store)
        embed_records(wh, "notes", hashed, encoder, store, device=device)

    windows, _ = encoder.windows(texts)
    order = np.argsort([len(w) for w in windows], kind="stable")
    batches = [encoder.tokenizer.pad({"input_ids": [windows[i] for i in order[s:s + batch_size]]},
                                     return_tensors="pt").to(device) for s in range(0, len(order), batch_size)]

    @torch.inference_mode()
    def bare():
        for batch in batches:
            with autocast(device):
                encoder.model(**batch).last_hidden_state.float()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return measure("notes", count, repeats, pipeline, bare,
                   {"source": source, "windows": len(windows), "encoder": encoder.encoder_id,
                    "batch_size": batch_size})


def write_ecgs(folder: Path, count: int) -> pd.DataFrame:
    rows = []
    for i in range(count):
        signal = synthetic_ecg.synth_ecg(np.random.default_rng(i), 60 + i % 60, 0.05 * (i % 3), 90 + i % 30, i % 7 == 0)
        target = folder / "ecg" / f"r{i}"
        target.parent.mkdir(parents=True, exist_ok=True)
        wfdb.wrsamp(target.name, fs=synthetic_ecg.FS, units=["mV"] * 12, sig_name=list(synthetic_ecg.LEADS),
                    p_signal=signal, fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                    write_dir=str(target.parent))
        rows.append({"record_id": str(i), "stay_id": 1, "uri": f"ecg/r{i}"})
    return pd.DataFrame(rows)


def write_images(folder: Path, count: int, pixels: int = 128) -> pd.DataFrame:
    """Synthetic 12-bit chest radiographs, ``pixels`` square (the generator's 128 px scaled up,
    with detector noise, so the files are as large as real ones), half of them MONOCHROME1."""
    rows = []
    for i in range(count):
        target = folder / "cxr" / f"i{i}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(i)
        image = synthetic_imaging.synth_chest(rng, (i % 4) / 2)
        if pixels != image.shape[0]:
            index = np.arange(pixels) * image.shape[0] // pixels
            noisy = image[np.ix_(index, index)] + rng.normal(0, 20, (pixels, pixels))
            image = np.clip(noisy, 0, 4095).astype(np.uint16)
        synthetic_imaging.write_dicom(target, image, patient_id=str(i), study_uid_seed=str(i),
                                      when=datetime(2026, 1, 1), monochrome1=i % 2 == 0)
        rows.append({"record_id": str(i), "stay_id": 1, "uri": f"cxr/i{i}.dcm"})
    return pd.DataFrame(rows)


def bench_signal(modality: str, folder: Path, count: int, repeats: int, device: str, batch_size: int,
                 workers: int, production: bool, image_pixels: int = 128) -> dict:
    if production:
        folder.mkdir(parents=True, exist_ok=True)
        params = {"target_fs": 500, "seconds": 10, "width": 64, "embedding_dim": 256} if modality == "ecg" else \
            {"backbone": production_image_backbone(folder), "size": 224, "embedding_dim": 256}
    else:
        params = {"target_fs": 100, "seconds": 10, "embedding_dim": 32} if modality == "ecg" else \
            {"size": 64, "embedding_dim": 32}
    encoder = new_signal_encoder(modality, {**params, "seed": 0})
    records = write_ecgs(folder, count) if modality == "ecg" else write_images(folder, count, image_pixels)
    wh, store = fresh_warehouse(folder), FileStore(folder)

    def pipeline():
        clear_cache(wh)
        hashed, failed = hash_records(records, modality, store, workers=workers)
        assert failed.empty
        embed_records(wh, modality, hashed, encoder, store, device=device, workers=workers)

    arrays = torch.from_numpy(np.stack([encoder.read(store.path(u)) for u in records["uri"]])).to(device)
    network = encoder.network.to(device).eval()

    @torch.inference_mode()
    def bare():
        for start in range(0, len(arrays), batch_size):
            with autocast(device):
                network.embed(arrays[start:start + batch_size]).float()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return measure(modality, count, repeats, pipeline, bare,
                   {"encoder": encoder.encoder_id.split("@")[0], "batch_size": batch_size, "decode_workers": workers,
                    **({"image_pixels": image_pixels} if modality == "images" else {})})


def measure(modality: str, count: int, repeats: int, pipeline, bare, extra: dict) -> dict:
    pipeline()  # warm-up: first-call costs (weights to the device, kernels) are not the pipeline's
    bare()
    pipeline_s, bare_s = float("inf"), float("inf")
    for _ in range(repeats):  # alternate so a disturbance hits both alike
        pipeline_s = min(pipeline_s, best_of(1, pipeline))
        bare_s = min(bare_s, best_of(1, bare))
    overhead = pipeline_s / bare_s - 1
    return {"modality": modality, "records": count, "pipeline_s": round(pipeline_s, 3), "bare_forward_s": round(bare_s, 3),
            "records_per_s": round(count / pipeline_s, 1), "bare_records_per_s": round(count / bare_s, 1),
            "overhead": round(overhead, 3), "pass": bool(overhead <= TARGET_OVERHEAD), **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=load_settings().decode_workers,
                        help="DataLoader decode workers for ECG / DICOM (default: VIGIL_DECODE_WORKERS, as at night)")
    parser.add_argument("--encoders", choices=("default", "production"), default="default")
    parser.add_argument("--notes", type=Path, default=NOTES_CSV, help="CSV with a 'transcription' column")
    parser.add_argument("--records", type=int, default=256, help="ECGs and images per timing (notes: 200)")
    parser.add_argument("--modalities", default="notes,ecg,images", help="comma-separated subset to time")
    parser.add_argument("--batch-size", type=int, default=64, help="ECG / image batch size (text: half)")
    parser.add_argument("--image-pixels", type=int, default=1024,
                        help="side of the synthetic radiographs (1024: NIH ChestX-ray14's size; 128: the generator's)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    scale = 4 if args.quick else 1
    torch.manual_seed(0)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        production = args.encoders == "production"
        chosen = args.modalities.split(",")
        if "notes" in chosen:
            results.append(bench_text(scratch / "text", 200 // scale, args.repeats, device, args.batch_size // 2,
                                      production, args.notes))
        for modality in (m for m in ("ecg", "images") if m in chosen):
            results.append(bench_signal(modality, scratch / modality, args.records // scale, args.repeats, device,
                                        args.batch_size, args.workers, production, args.image_pixels))
    report = {"machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(), "device": device,
                          "torch": torch.__version__,
                          "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None},
              "encoders": args.encoders, "target_overhead": TARGET_OVERHEAD, "results": results}
    name = "embedding-quick.json" if args.quick else "embedding.json"
    if production:
        name = name.replace(".json", "-production.json")
    if device.startswith("cuda"):
        name = name.replace(".json", "-cuda.json")
    out = ROOT / "benchmarks" / "results" / name
    out.write_text(json.dumps(report, indent=2))
    print(f"{'modality':9} {'records':>7} {'pipeline s':>10} {'bare s':>8} {'rec/s':>8} {'overhead':>9}  target <= 25 %")
    for r in results:
        print(f"{r['modality']:9} {r['records']:>7} {r['pipeline_s']:>10.3f} {r['bare_forward_s']:>8.3f} "
              f"{r['records_per_s']:>8.1f} {r['overhead']:>8.1%}  {'PASS' if r['pass'] else 'FAIL'}")
    print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
