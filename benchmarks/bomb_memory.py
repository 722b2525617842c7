"""Peak memory with and without the bad-input corpus's largest bomb: an 18 MB DICOM whose
deflated body inflates to 4 GB.

Each variant runs in its own process. By default: 64 synthetic radiographs, alone (the baseline)
or beside the bomb, through the night's own image path (hash in the file store, decode in the
guarded decoder processes, encode, cache nothing). With ``--home`` (a trained home, e.g. after
``scripts/demo.sh``) and ``--night``: that whole night, run by ``run_night`` on two copies of the
home, one with a stay whose radiograph is the bomb and one with the same stay and a good
radiograph. Prints the peak RSS of the process and of its largest child process (the decoders)
for both, and the ratio.

    bash scripts/bench.sh bomb_memory [--home .vigil --night 2026-03-01]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bomb_memory.json"

CHILD = """
import json, resource, sys
from datetime import datetime
from pathlib import Path
import numpy as np, pandas as pd
from pipeline.embed.isolation import Budget
from pipeline.embed.modalities import encode_files, hash_records, new_signal_encoder
from pipeline.filestore import FileStore
from pipeline.synthetic import imaging
from tests.corpus.bad_inputs import _deflate_bomb

folder, with_bomb = Path(sys.argv[1]), sys.argv[2] == "1"
uris = []
for k in range(64):
    imaging.write_dicom(folder / f"i{k}.dcm", imaging.synth_chest(np.random.default_rng(k), 1.0), patient_id="b",
                        study_uid_seed=str(k), when=datetime(2026, 3, 1, 7))
    uris.append(f"i{k}.dcm")
if with_bomb:
    _deflate_bomb(folder / "bomb.dcm")
    uris.append("bomb.dcm")
records = pd.DataFrame({"record_id": uris, "stay_id": 1, "uri": uris})
store = FileStore(folder, max_bytes=1024 << 20)
hashed, unreadable = hash_records(records, "images", store)
vectors, failed = encode_files(hashed, new_signal_encoder("images", {"size": 64}), store, budget=Budget())
print(json.dumps({"embedded": len(vectors), "refused": sorted(set(failed.values()) | set(unreadable["reason"])),
                  "bomb_file_mb": round((folder / "bomb.dcm").stat().st_size / 2**20, 1) if with_bomb else None,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "decoder_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}))
"""


NIGHT_CHILD = """
import json, resource, sys
from datetime import datetime
from pipeline.config import load_settings
from pipeline.nightly import run_night
from pipeline.store.warehouse import connect
from tests.corpus.bad_inputs import Corpus, _deflate_bomb, _dicom

night, with_bomb = sys.argv[1], sys.argv[2] == "1"
settings = load_settings()
corpus = Corpus(night_start=datetime.fromisoformat(night), filestore=settings.filestore)
corpus.stay(0)
image = corpus.image(0, _deflate_bomb if with_bomb else _dicom())
wh = connect(settings)
corpus.write(wh)
result = run_night(night, settings)
reasons = wh.read("SELECT reason FROM vigil_audit.quarantine WHERE night = :n AND record_id = :r",
                  {"n": night, "r": image})["reason"].tolist()
print(json.dumps({"risk_rows": result["publish"]["risk_rows"], "image_refused": reasons,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "decoder_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}))
"""


def run_night_variant(home: Path, night: str, with_bomb: bool) -> dict:
    import os
    import shutil

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "home"
        shutil.copytree(home, copy, ignore=shutil.ignore_patterns("airflow", "runs"))
        env = {**os.environ, "VIGIL_HOME": str(copy), "VIGIL_WAREHOUSE_URL": f"sqlite:///{copy}/warehouse/vigil.db",
               "VIGIL_FILESTORE": str(copy / "files"), "HF_HUB_OFFLINE": "1"}
        out = subprocess.run([sys.executable, "-c", NIGHT_CHILD, night, "1" if with_bomb else "0"], cwd=ROOT,
                             capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(with_bomb: bool) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = subprocess.run([sys.executable, "-c", CHILD, folder, "1" if with_bomb else "0"], cwd=ROOT,
                             capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a trained SQLite home: measure a whole night")
    parser.add_argument("--night", help="the night to run on copies of --home (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    if args.home:
        baseline, bomb = run_night_variant(args.home, args.night, False), run_night_variant(args.home, args.night, True)
        path = RESULTS.with_name("bomb_memory_night.json")
    else:
        baseline, bomb = run(False), run(True)
        path = RESULTS
    result = {"baseline": baseline, "with_bomb": bomb,
              "peak_ratio": round(bomb["peak_rss_mb"] / baseline["peak_rss_mb"], 3),
              "decoder_peak_ratio": round(bomb["decoder_peak_rss_mb"] / baseline["decoder_peak_rss_mb"], 3)}
    print(json.dumps(result, indent=2))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
