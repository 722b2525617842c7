"""Peak memory of the image embedding path with and without the bad-input corpus's deflate bomb.

Each variant runs in its own process: 64 synthetic radiographs, alone (the baseline) or beside
the corpus's 18 MB DICOM whose deflated body inflates to 4 GB, through the night's own path
(hash in the file store, decode in the guarded decoder processes, encode, cache nothing). Prints
the peak RSS of the process and of its decoder processes for both, and the ratio.

    .venv/bin/python benchmarks/bomb_memory.py
"""

from __future__ import annotations

import json
import resource
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


def run(with_bomb: bool) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = subprocess.run([sys.executable, "-c", CHILD, folder, "1" if with_bomb else "0"], cwd=ROOT,
                             capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    baseline, bomb = run(False), run(True)
    result = {"baseline": baseline, "with_bomb": bomb,
              "peak_ratio": round(bomb["peak_rss_mb"] / baseline["peak_rss_mb"], 3),
              "decoder_peak_ratio": round(bomb["decoder_peak_rss_mb"] / baseline["decoder_peak_rss_mb"], 3)}
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
