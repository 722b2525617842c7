"""Stage 6, publish: the night's files gathered into one transaction (``pipeline.publish``)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from pipeline.config import Settings
from pipeline.features.windows import KEY
from pipeline.frames import RECORD_TABLES
from pipeline.modality import Modality
from pipeline.publish import NightResults, accounting, publish
from pipeline.stages.context import TABLES, active_stays, night_context, read_shards, sharded, shards_of
from pipeline.store.run_folder import RunFolder
from pipeline.validate.checks import RECORD_ID


def _risk_rows(ctx: RunFolder, manifest: dict) -> pd.DataFrame:
    """Every promoted model's scored rows of the night (each score task, a model on a shard, wrote one file)."""
    missing = [f"{m} (shard {k})" for m in manifest["models"] for k in shards_of(ctx)
               if not ctx.has("score", sharded(f"risk.{m}", k) + ".parquet")]
    if missing:
        raise FileNotFoundError(f"night {ctx.night} has no scores of {', '.join(missing)}: run their score tasks")
    return pd.concat([read_shards(ctx, "score", f"risk.{m}") for m in manifest["models"]], ignore_index=True)


def publish_stage(night, settings: Settings | None = None, run_id: str | None = None) -> dict:
    ctx, wh = night_context(night, settings, run_id)
    manifest = ctx.manifest()
    risk = _risk_rows(ctx, manifest)
    unreadable = pd.concat([read_shards(ctx, "embed", f"failures_{t}") for t in RECORD_TABLES], ignore_index=True)
    quarantine = pd.concat([ctx.read("validate", "quarantine"), unreadable], ignore_index=True)
    excluded = ctx.read("extract", "excluded")
    records = pd.concat([
        read_shards(ctx, "embed", f"records_{t}").assign(modality=Modality.of_table(t).stored) for t in RECORD_TABLES
    ], ignore_index=True)
    for column in ("category", "uri", "text"):
        records[column] = records[column] if column in records else None
    unscored = ctx.read("validate", "unscored")
    stored = {"cohort": len(ctx.read("validate", "cohort")) - len(unscored),
              "events": ctx.rows("validate", "events"),
              **{t: int((records["modality"] == Modality.of_table(t).stored).sum()) for t in RECORD_TABLES}}
    tonight_ids = {t: set(ctx.read("extract", t)[RECORD_ID[t]].astype(str))
                   for t in set(unreadable["source_table"]) & set(TABLES)}
    unreadable_tonight = unreadable.loc[np.array([rid in tonight_ids.get(t, ()) for t, rid in
                                                  zip(unreadable["source_table"], unreadable["record_id"])], bool)]
    quarantined = ctx.read("validate", "rows_quarantined").set_index("source_table")["rows"].add(
        unreadable_tonight.groupby("source_table")["record_id"].nunique(), fill_value=0)
    exclusions = _exclusions(ctx, excluded, unscored)
    counts = accounting(  # a record ingested on an earlier night that fails again is reported, not counted
        records_in=manifest["records_in"],
        used=stored,
        quarantined=quarantined.to_dict(),
        excluded=exclusions.groupby("source_table").size().to_dict(),
    )
    stay_features = _long_features(ctx, manifest)
    results = NightResults(
        night=ctx.night, run_id=manifest["run_id"], prediction_time=ctx.prediction_time,
        started_at=datetime.fromisoformat(manifest["started_at"]), risk=risk, stay_features=stay_features,
        events=lambda: ctx.read_parts("validate", "events"), records=records, quarantine=quarantine.drop_duplicates(), exclusions=exclusions,
        dq=ctx.read("validate", "dq"), counts=counts,
        stays_active=len(active_stays(ctx)), stays_unscored=len(unscored),
        enrolled={m: len(read_shards(ctx, "score", f"enrolled.{m}")) for m in manifest["models"]},
        models={n: i["version"] for n, i in manifest["models"].items()},
    )
    return publish(wh, results)


def _exclusions(ctx: RunFolder, excluded: pd.DataFrame, unscored: pd.DataFrame) -> pd.DataFrame:
    """Every row left out on purpose, with its reason: outside the cohort definition (extract),
    exact duplicates (validate), and stays in the ICU with nothing to score them on."""
    parts = [pd.DataFrame({"source_table": excluded["table"], "record_id": excluded["record_id"],
                           "stay_id": pd.NA, "reason": excluded["reason"]})]
    for table in TABLES:
        duplicates = ctx.read("validate", f"{table}_duplicates")
        parts.append(pd.DataFrame({"source_table": table, "record_id": duplicates[RECORD_ID[table]].astype(str),
                                   "stay_id": duplicates["stay_id"], "reason": "exact duplicate of another row"}))
    parts.append(pd.DataFrame({"source_table": "cohort", "record_id": unscored["stay_id"].astype(str),
                               "stay_id": unscored["stay_id"], "reason": unscored["reason"]}))
    parts = [p for p in parts if not p.empty]
    frame = pd.concat(parts, ignore_index=True) if parts else \
        pd.DataFrame(columns=["source_table", "record_id", "stay_id", "reason"])
    return frame.astype({"source_table": "string", "record_id": "string", "stay_id": "Int64", "reason": "string"})


def _long_features(ctx: RunFolder, manifest: dict) -> pd.DataFrame:
    parts = []
    active = active_stays(ctx)["stay_id"].tolist()
    for name in manifest["models"]:
        wide = read_shards(ctx, "features", name)
        if wide["stay_id"].tolist() != active:
            raise RuntimeError(f"the {name} features of night {ctx.night} are not those of its active stays: "
                               f"re-run the features stage")
        numeric = [c for c in wide.columns if c not in KEY and pd.api.types.is_numeric_dtype(wide[c])]
        parts.append(wide.melt(id_vars=KEY, value_vars=numeric, var_name="feature", value_name="value").dropna())
    long = pd.concat(parts, ignore_index=True).drop_duplicates(["stay_id", "feature"])
    return long.assign(night=ctx.night)[["night", "stay_id", "prediction_time", "feature", "value"]]
