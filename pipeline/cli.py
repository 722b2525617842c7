"""``vigil``: the command line over the same stage functions the DAGs run."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

from pipeline.config import ALL_TIME, GPU_POOL, PROJECT_ROOT, TRAINING_POOL, Settings, load_settings

log = logging.getLogger("vigil")


def _quiet_libraries() -> None:
    for name in ("great_expectations", "transformers", "urllib3", "filelock", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from error


def _warehouse(settings: Settings):
    from pipeline.store.warehouse import connect

    return connect(settings)


# ----------------------------------------------------------------------------- commands

def cmd_init(args, settings: Settings) -> int:
    """The schemas, and the registry's paths made relative to the home (a home trained before
    they were recorded that way would keep loading its models from its old place once moved)."""
    from pipeline.modeling import registry

    wh = _warehouse(settings)
    wh.create_schema()
    rewritten = registry.relative_paths(wh, settings.home)
    if rewritten:
        print(f"registry: {rewritten} model version(s) now record their paths relative to {settings.home}")
    if getattr(args, "roles", False):  # `vigil demo` passes its own arguments
        wh.apply_roles()
        print("roles granted in this database: vigil_pipeline (nightly/training writer), "
              "vigil_bi_reader (vigil_risk views); grant them to login users")
    print(f"warehouse ready: {_safe_url(settings.warehouse_url)}")
    return 0


def cmd_synth(args, settings: Settings) -> int:
    from pipeline.synthetic import cohort as synthetic

    wh = _warehouse(settings)
    wh.create_schema()
    generated = synthetic.generate(args.stays, datetime.combine(args.start, datetime.min.time()), args.days, args.seed)
    rows = synthetic.write(wh, generated, settings.filestore, progress=not args.quiet)
    print(f"synthetic cohort: {generated.n_stays} ICU stays, {len(generated.ecg_jobs)} ECGs, "
          f"{len(generated.image_jobs)} images, {rows['mimiciv_icu.chartevents'] + rows['mimiciv_hosp.labevents']} "
          f"events, admissions {args.start} .. {args.start + timedelta(days=args.days)}")
    if getattr(args, "research", 0):
        from pipeline.synthetic.research import generate_research, write_research

        cohorts = generate_research(args.research, datetime.combine(args.start, datetime.min.time()), args.days,
                                    args.seed)
        write_research(wh, cohorts, settings.filestore, progress=not args.quiet)
        print(f"research cohorts: {', '.join(cohorts)} ({args.research} ICU stays each: PE with ECGs, "
              f"liver with 5 ultrasound images, GIST with CT and pathology images)")
    return 0


def cmd_load_mimic_demo(args, settings: Settings) -> int:
    from pipeline.sources import mimic_demo

    wh = _warehouse(settings)
    wh.create_schema()
    loaded = mimic_demo.load(wh, Path(args.path), Path(args.meds) if args.meds else None, progress=not args.quiet)
    for table, count in loaded.rows.items():
        print(f"  {table:<32} {count:>9,} rows")
    print(f"checksums verified: {loaded.checksums_verified}; MEDS charted rows outside ICU stays "
          f"(not loaded): {loaded.meds_rows_outside_stays:,}")
    return 0


def cmd_check_data(args, settings: Settings) -> int:
    """Extract, validate and window everything known by --as-of, shard by shard of subjects
    (about ``VIGIL_SHARD_ROWS`` event rows each), so memory follows the shard, not the history;
    report data quality."""
    from contextlib import closing

    import pandas as pd

    from pipeline.features.windows import build_features
    from pipeline.modeling.spec import load_specs
    from pipeline.sources.mimic import extract_in_shards
    from pipeline.validate.checks import validate

    wh = _warehouse(settings)
    as_of = datetime.combine(args.as_of, datetime.min.time()) if args.as_of else ALL_TIME
    spec = load_specs(settings.models_dir)[0]
    offset = spec.prediction_offset_hours or 24
    counts = {}   # table -> [in, valid, quarantined, excluded]
    reasons, exclusions = [], []
    stays = filled = cells = columns = shards = 0
    with closing(extract_in_shards(wh, as_of, settings.shard_rows)) as extractions:   # its split files go either way
        for _, extraction in extractions:
            shards += 1
            outcome = validate(extraction.frames, as_of, extraction.quarantined)
            for table, result in outcome.tables.items():
                row = counts.setdefault(table, [0, 0, 0, 0])
                row[0] += extraction.records_in(table)
                row[1] += len(result.valid)
                row[2] += result.quarantine["record_id"].nunique()
                row[3] += int((extraction.excluded["table"] == table).sum()) + len(result.duplicates)
            reasons.append(outcome.quarantine()[["source_table", "reason", "record_id"]])
            exclusions.append(extraction.excluded[["table", "reason"]])
            cohort = outcome.valid("cohort")
            times = pd.DataFrame({"stay_id": cohort["stay_id"],
                                  "prediction_time": cohort["admit_time"] + timedelta(hours=offset)})
            features = build_features(outcome.valid("events"), cohort, times, spec.window_spec).drop(
                columns=["stay_id", "prediction_time"])
            stays, filled = stays + len(features), filled + int(features.notna().to_numpy().sum())
            cells += features.size
            columns = features.shape[1]
            del extraction, outcome
    sharded = f" ({shards} shards of about {settings.shard_rows:,} event rows)" if shards > 1 else ""
    print(("all data" if as_of == ALL_TIME else f"data known by {as_of:%Y-%m-%d %H:%M}") + sharded)
    print(f"{'table':<8} {'in':>9} {'valid':>9} {'quarantined':>12} {'excluded':>9}")
    for table, (rows_in, valid, quarantined, excluded) in counts.items():
        print(f"{table:<8} {rows_in:>9,} {valid:>9,} {quarantined:>12,} {excluded:>9,}")
    quarantine = pd.concat(reasons, ignore_index=True)
    if not quarantine.empty:
        print("quarantine reasons:")
        by_reason = quarantine.groupby(["source_table", "reason"])["record_id"].nunique().sort_values(ascending=False)
        for (table, reason), n in by_reason.items():
            print(f"  {table:<7} {n:>7,}  {reason}")
    excluded = pd.concat(exclusions, ignore_index=True).groupby(["table", "reason"]).size()
    if len(excluded):
        print("excluded by the cohort definition:")
        for (table, reason), n in excluded.items():
            print(f"  {table:<7} {n:>7,}  {reason}")
    print(f"features: {stays:,} stays x {columns} columns at admission + "
          f"{offset:g} h ({filled / cells if cells else 0:.0%} of cells filled)")
    return 0


def cmd_train(args, settings: Settings) -> int:
    from pipeline.modeling.spec import load_spec, load_specs
    from pipeline.modeling.train import train_spec
    from pipeline.modeling.training_report import render_report

    wh = _warehouse(settings)
    specs = [load_spec(settings.models_dir / f"{args.spec}.yaml")] if args.spec else load_specs(settings.models_dir)
    as_of = datetime.combine(args.as_of, datetime.min.time()) if args.as_of else datetime.now()
    for spec in specs:
        report = train_spec(wh, settings, spec, as_of, progress=not args.quiet, promote=args.promote)
        print(render_report(report))
        print(f"promoted {report['promoted_version']}" if report["promoted_version"] else
              f"selected {report['selected']}: promote it with `vigil promote {spec.name}` to score with it")
    return 0


def cmd_promote(args, settings: Settings) -> int:
    from pipeline.modeling import registry

    row = registry.promote(_warehouse(settings), args.model, args.version, home=settings.home)
    print(f"{args.model}: promoted {row['version']} ({row['candidate']}, trained {row['trained_at']}); "
          f"the next nightly run scores with it")
    return 0


def find_spec(name: str, settings: Settings):
    """A spec by name: ``models_dir/<name>.yaml``, else a sub-folder of the project's ``models/``
    (``models/physionet/`` keeps the real-data specs out of the synthetic demo)."""
    from pipeline.modeling.spec import SpecError, load_spec

    candidates = [settings.models_dir / f"{name}.yaml", *sorted((PROJECT_ROOT / "models").glob(f"*/{name}.yaml"))]
    for path in candidates:
        if path.exists():
            return load_spec(path)
    raise SpecError(f"no model spec named {name!r} (looked in {settings.models_dir} and models/*/)")


def _print_load(rows: dict[str, int], not_loaded: dict[str, int]) -> None:
    for table, count in rows.items():
        print(f"  {table:<34} {count:>9,} rows")
    for reason, count in not_loaded.items():
        print(f"  not loaded: {count:>7,}  {reason}")


def cmd_load_physionet2012(args, settings: Settings) -> int:
    from pipeline.sources import physionet2012

    wh = _warehouse(settings)
    wh.create_schema()
    loaded = physionet2012.load(wh, Path(args.records), Path(args.outcomes) if args.outcomes else None,
                                start=args.start, days=args.days, progress=not args.quiet)
    print(f"PhysioNet 2012: {loaded.stays:,} ICU stays" + (f", {loaded.deaths:,} in-hospital deaths" if loaded.deaths is not None else ""))
    _print_load(loaded.rows, loaded.not_loaded)
    return 0


def cmd_load_physionet2019(args, settings: Settings) -> int:
    from pipeline.sources import physionet2019

    wh = _warehouse(settings)
    wh.create_schema()
    loaded = physionet2019.load(wh, Path(args.records), start=args.start, days=args.days, progress=not args.quiet)
    print(f"PhysioNet 2019: {loaded.stays:,} ICU stays, {loaded.septic:,} with a sepsis onset")
    _print_load(loaded.rows, {f"{reason} (files)": n for reason, n in loaded.not_loaded.items()})
    return 0


def cmd_cross_validate(args, settings: Settings) -> int:
    from pipeline.modeling.evaluation import cross_validate

    evaluation = cross_validate(_warehouse(settings), settings, find_spec(args.spec, settings), folds=args.folds)
    print(evaluation.markdown)
    print(f"report: {evaluation.paths['markdown']}")
    return 0


def cmd_evaluate(args, settings: Settings) -> int:
    from pipeline.modeling.evaluation import SOURCES, evaluate_source

    spec = find_spec(args.spec or SOURCES[args.source][0], settings)
    evaluation = evaluate_source(settings, spec, args.source, Path(args.records),
                                 Path(args.outcomes) if args.outcomes else None, progress=not args.quiet)
    print(evaluation.markdown)
    print(f"report: {evaluation.paths['markdown']}")
    return 0


def cmd_run(args, settings: Settings) -> int:
    from pipeline.nightly import STAGES, run_night

    stages = args.stages.split(",") if args.stages else list(STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        print(f"unknown stage(s) {unknown}; stages are {', '.join(STAGES)}", file=sys.stderr)
        return 2
    results = run_night(args.date, settings, stages=stages)
    if "publish" in results:
        print(f"night {args.date}: {results['publish']['risk_rows']} risk rows published "
              f"(sha256 {results['publish']['risk_rows_sha256'][:12]}; without the training time in the model "
              f"versions {results['publish']['scores_sha256'][:12]})")
    if "report" in results:
        print(f"report: {results['report']['report']}")
    return 0


def cmd_backfill(args, settings: Settings) -> int:
    from pipeline.backfill import backfill

    def show(night: dict) -> None:
        rows = f"{night['risk_rows']} risk rows, " if "risk_rows" in night else ""
        print(f"night {night['night']}: {night['status']} ({rows}sha256 {(night['risk_rows_sha256'] or '-')[:12]})",
              flush=True)

    nights = backfill(args.start, args.end, settings, rescore=args.rescore, on_night=show)
    ran = sum(n["status"] == "published" for n in nights)
    print(f"backfill {args.start} .. {args.end}: {ran} night(s) run, {len(nights) - ran} already published")
    return 0


def cmd_top(args, settings: Settings) -> int:
    from pipeline.store import risk

    rows = risk.top_latest(_warehouse(settings))
    if rows.empty:
        print("the risk table is empty: run a night first (`vigil run --date YYYY-MM-DD`)")
        return 1
    rows = rows.groupby("model_name", sort=True).head(args.limit)  # each model's probabilities mean its own outcome
    print(f"\nTop {args.limit} risks per model, night {rows['night'].iloc[0]} (as of the end of that day, UTC):\n")
    print(f"{'stay_id':>10} {'subject':>10} {'model':<24} {'risk':>6} {'band':<7} {'modalities':<28} top factors")
    for r in rows.itertuples():
        factors = ", ".join(f"{f['factor']}{'' if f['value'] is None else '=' + str(f['value'])}"
                            f" ({f['contribution']:+.2f})" for f in json.loads(r.top_factors))
        print(f"{r.stay_id:>10} {r.subject_id:>10} {r.model_name:<24} {r.probability:>6.1%} {r.risk_band:<7} "
              f"{r.modalities:<28} {factors}")
    return 0


def cmd_sql(args, settings: Settings) -> int:
    """Queries on the warehouse as the pipeline sees it: on the embedded SQLite default every
    schema is a file attached under its name, which a plain ``sqlite3 vigil.db`` lacks."""
    import pandas as pd

    queries = [args.query] if args.query else [q for q in sys.stdin.read().split(";") if q.strip()]
    wh = _warehouse(settings)
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_colwidth", 60):
        for query in queries:
            print(wh.read(query.strip().rstrip(";")).to_string(index=False))
    return 0


def airflow_env(settings: Settings) -> dict[str, str]:
    """Environment for Airflow processes running Vigil's DAGs on the embedded default.

    Every setting that names a place is computed here, from the home, at each start: the home
    can be copied, restored or mounted elsewhere and Airflow follows it (its ``airflow.cfg``
    holds no path, see :func:`airflow_config`)."""
    env = dict(os.environ)
    airflow_home = settings.airflow_home
    env.setdefault("AIRFLOW_HOME", str(airflow_home))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(PROJECT_ROOT / "plugins"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("AIRFLOW__CORE__PARALLELISM", "4")
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{airflow_home / 'airflow.db'}")
    env.setdefault("AIRFLOW__LOGGING__BASE_LOG_FOLDER", str(airflow_home / "logs"))
    env.setdefault("AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY",
                   str(airflow_home / "logs" / "dag_processor"))
    env.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
    env["VIGIL_HOME"] = str(settings.home)
    if not env.get("VIGIL_WAREHOUSE_CONN_ID"):  # with a connection id the tasks resolve it themselves
        env["VIGIL_WAREHOUSE_URL"] = settings.warehouse_url
    env["VIGIL_FILESTORE"] = str(settings.filestore)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


AIRFLOW_CFG_HEADER = "# Written by Vigil (pipeline/cli.py). Paths come from the environment `vigil airflow` sets"
JWT_SECRET_BYTES = 64


def _is_vigils_config(path: Path) -> bool:
    """Whether ``path`` is an ``airflow.cfg`` Vigil wrote with a full-length JWT secret (not one
    Airflow generated in an older home: absolute paths, a 24-byte secret)."""
    import configparser

    text = path.read_text(errors="replace")
    if text.splitlines()[:1] != [AIRFLOW_CFG_HEADER]:
        return False
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        return False
    return len(parser.get("api_auth", "jwt_secret", fallback="").encode()) >= JWT_SECRET_BYTES


def airflow_config(airflow_home: Path) -> Path:
    """Vigil's ``airflow.cfg``, with the secrets Airflow needs and no path at all (chmod 600):
    written before Airflow would write its own, which bakes in absolute paths. An existing one
    that is not Vigil's is moved aside to ``airflow.cfg.before-vigil`` (chmod 600: it holds
    secrets) and replaced."""
    import secrets

    path = airflow_home / "airflow.cfg"
    if path.exists() and _is_vigils_config(path):
        return path
    if path.exists():
        aside = path.with_name("airflow.cfg.before-vigil")
        os.replace(path, aside)
        aside.chmod(0o600)
        print(f"moved {path} aside to {aside.name} (not Vigil's: absolute paths or a JWT secret under "
              f"{JWT_SECRET_BYTES} bytes) and wrote Vigil's")
    airflow_home.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"{AIRFLOW_CFG_HEADER}\n"
        "# from VIGIL_HOME at each start, so this home can move; secrets are this home's own.\n"
        "[core]\nload_examples = False\n\n"
        f"[api_auth]\njwt_secret = {secrets.token_urlsafe(JWT_SECRET_BYTES)}\n\n"
        f"[api]\nsecret_key = {secrets.token_urlsafe(32)}\n")
    path.chmod(0o600)
    return path


def run_airflow(settings: Settings, arguments: list[str], check: bool = True, log_file: Path | None = None) -> int:
    """Run ``airflow <arguments>`` on Vigil's DAGs and home, migrating its database and setting
    its pools first when they changed (a stamp remembers: the 8-10 s of that is paid once).

    With ``log_file`` the output goes there instead of the terminal; a failure prints its tail.
    """
    env = airflow_env(settings)
    airflow_config(Path(env["AIRFLOW_HOME"]))
    airflow = str(Path(sys.executable).parent / "airflow")
    if arguments[:2] != ["db", "migrate"]:
        prepare_airflow(settings, env, airflow)
    if log_file is None:
        result = subprocess.run([airflow, *arguments], env=env)
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "w") as log:
            result = subprocess.run([airflow, *arguments], env=env, stdout=log, stderr=subprocess.STDOUT)
        if result.returncode:
            print("".join(log_file.read_text().splitlines(keepends=True)[-40:]), file=sys.stderr)
    if check and result.returncode:
        raise SystemExit(f"airflow {' '.join(arguments)} failed with exit code {result.returncode}"
                         + (f" (log: {log_file})" if log_file else ""))
    return result.returncode


POOLS = {GPU_POOL: ("gpu_pool_slots", "embedding tasks: one slot per GPU model replica"),
         TRAINING_POOL: ("training_pool_slots", "training tasks: what a night never has to wait for")}


def _version_or_none(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def prepare_airflow(settings: Settings, env: dict[str, str], airflow: str) -> None:
    """``airflow db migrate`` and the pools, unless this home's SQLite metadata database already
    has them for these Airflow versions and slots (``apache-airflow-core``, which holds the
    migrations, can be upgraded without the ``apache-airflow`` meta-package)."""
    from importlib.metadata import version

    slots = {pool: getattr(settings, attribute) for pool, (attribute, _) in POOLS.items()}
    database = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    stamp = Path(env["AIRFLOW_HOME"]) / ".vigil-prepared"
    wanted = json.dumps({"airflow": version("apache-airflow"), "airflow_core": _version_or_none("apache-airflow-core"),
                         "database": database, "pools": slots}, sort_keys=True)
    sqlite_file = database.removeprefix("sqlite:///") if database.startswith("sqlite:///") else None
    if sqlite_file and Path(sqlite_file).exists() and stamp.exists() and stamp.read_text() == wanted:
        return  # (a server database may have been recreated under the same URL: always prepared)
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    for pool, (_, description) in POOLS.items():
        subprocess.run([airflow, "pools", "set", pool, str(slots[pool]), description], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    stamp.write_text(wanted)


def cmd_airflow(args, settings: Settings) -> int:
    return run_airflow(settings, args.arguments, check=False)


def cmd_demo(args, settings: Settings) -> int:
    from pipeline.store import risk

    default_home = not os.environ.get("VIGIL_WAREHOUSE_URL")
    if default_home:
        for folder in ("warehouse", "files", "runs", "artifacts", "reports"):
            shutil.rmtree(settings.home / folder, ignore_errors=True)
    nights = [args.start + timedelta(days=args.days - 2), args.start + timedelta(days=args.days - 1)]
    print(f"== Vigil demo: {args.stays} synthetic ICU stays in {settings.home}")
    print("== 1/4 warehouse and synthetic multimodal cohort")
    cmd_init(args, settings)
    cmd_synth(argparse.Namespace(stays=args.stays, start=args.start, days=args.days, seed=args.seed,
                                 research=args.research, quiet=args.quiet), settings)
    print(f"== 2/4 training on outcomes known by {nights[0]}")
    cmd_train(argparse.Namespace(spec=None, as_of=nights[0], quiet=args.quiet, promote=True), settings)
    for i, night in enumerate(nights, start=3):
        print(f"== {i}/4 nightly scoring for {night}" + (" (Airflow: dags test)" if args.airflow else ""))
        if args.airflow:
            log_file = settings.home / "logs" / f"airflow-dags-test-vigil_nightly-{night}.log"
            run_airflow(settings, ["dags", "test", "vigil_nightly", night.isoformat()], log_file=log_file)
            print(f"   airflow dags test vigil_nightly {night}: success "
                  f"({_published_rows(settings, night)} risk rows; task log {log_file})")
        else:
            cmd_run(argparse.Namespace(date=night, stages=None), settings)
    cmd_top(argparse.Namespace(limit=5), settings)
    vigil = Path(sys.executable).parent / "vigil"
    prefix = "" if settings.home == load_settings({}).home else f"VIGIL_HOME={settings.home} "
    example = "\n".join(f"    {line}" for line in risk.bi_example(settings.sql_dir).splitlines())
    print(f"""
Look further:
  SQL (SQLite: {settings.home / 'warehouse' / 'vigil_risk.db'}, table risk_scores; on PostgreSQL vigil_risk.risk_scores):
{example}
  Training report:   {settings.reports_dir}
  Night reports:     {settings.home / 'runs'}/<night>/<run>/report/report.json
  Airflow UI:        {prefix}{vigil} airflow standalone    (then open http://localhost:8080)
""")
    return 0


def _published_rows(settings: Settings, night: date) -> int:
    from pipeline.store import risk

    return risk.night_rows(_warehouse(settings), night)


def _safe_url(url: str) -> str:
    """The URL without its password, for printing."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# ----------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description="Nightly multimodal clinical risk scoring.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", help="create every schema and table (idempotent)")
    init.add_argument("--roles", action="store_true",
                      help="then create the roles vigil_pipeline and vigil_bi_reader and grant them here (PostgreSQL)")
    init.set_defaults(func=cmd_init)

    synth = sub.add_parser("synth", help="write a seeded synthetic multimodal ICU cohort")
    synth.add_argument("--stays", type=int, default=2000)
    synth.add_argument("--start", type=_day, default=date(2026, 1, 1), help="first admission day")
    synth.add_argument("--days", type=int, default=60, help="admissions spread over this many days")
    synth.add_argument("--seed", type=int, default=7)
    synth.add_argument("--research", type=int, default=0, metavar="N",
                       help="also N stays in each research cohort (PE thrombolysis, liver steatosis, GIST resection)")
    synth.set_defaults(func=cmd_synth)

    demo_load = sub.add_parser("load-mimic-demo", help="load the MIMIC-IV demo CSVs (hosp/, icu/) into the source tables")
    demo_load.add_argument("path", help="folder holding hosp/ and icu/ (mimic-iv-clinical-database-demo-2.2)")
    demo_load.add_argument("--meds", help="MEDS events.parquet for charted vitals (default: ../mimic-iv-demo-meds beside PATH)")
    demo_load.set_defaults(func=cmd_load_mimic_demo)

    pn12 = sub.add_parser("load-physionet2012", help="load PhysioNet 2012 record files (and outcomes) into the source tables")
    pn12.add_argument("records", help="folder of record .txt files, or the set-*.tar.gz/.tar.xz archive")
    pn12.add_argument("--outcomes", help="Outcomes-*.txt (labels, length of stay, SAPS-I, SOFA)")
    pn12.add_argument("--start", type=_day, default=date(2025, 1, 1), help="first possible ICU admission day")
    pn12.add_argument("--days", type=int, default=365, help="admissions spread over this many days")
    pn12.set_defaults(func=cmd_load_physionet2012)

    pn19 = sub.add_parser("load-physionet2019", help="load PhysioNet 2019 .psv records into the source tables")
    pn19.add_argument("records", help="folder of p*.psv files, or a tar archive of them")
    pn19.add_argument("--start", type=_day, default=date(2025, 1, 1), help="first possible ICU admission day")
    pn19.add_argument("--days", type=int, default=365, help="admissions spread over this many days")
    pn19.set_defaults(func=cmd_load_physionet2019)

    cv = sub.add_parser("cross-validate", help="patient-level k-fold cross-validation of a spec on the loaded cohort")
    cv.add_argument("--spec", required=True, help="spec name (models/<name>.yaml or models/*/<name>.yaml)")
    cv.add_argument("--folds", type=int, default=5)
    cv.set_defaults(func=cmd_cross_validate)

    evaluate = sub.add_parser("evaluate", help="score a labelled cohort from files with the promoted model (no refitting)")
    evaluate.add_argument("--source", choices=["physionet2012", "physionet2019"], required=True)
    evaluate.add_argument("--records", required=True, help="record files (folder or archive) never used in training")
    evaluate.add_argument("--outcomes", help="the records' outcomes file (PhysioNet 2012: Outcomes-*.txt)")
    evaluate.add_argument("--spec", help="spec name (default: physionet2012_mortality / physionet2019_sepsis)")
    evaluate.set_defaults(func=cmd_evaluate)

    check = sub.add_parser("check-data", help="extract, validate and window all data; print data-quality counts")
    check.add_argument("--as-of", type=_day, help="only data known by this day (default: all data)")
    check.set_defaults(func=cmd_check_data)

    train = sub.add_parser("train", help="fit, evaluate and register the model(s) in models/; select the best")
    train.add_argument("--spec", help="one spec name (default: every models/*.yaml)")
    train.add_argument("--as-of", type=_day, help="use outcomes and data known by this day (default: now)")
    train.add_argument("--promote", action="store_true", help="also promote each selected version (else: vigil promote)")
    train.set_defaults(func=cmd_train)

    promote = sub.add_parser("promote", help="make a registered model version the one the nightly run scores with")
    promote.add_argument("model", help="the spec name, e.g. icu_mortality")
    promote.add_argument("--version", help="a registered version (default: the selected one of the latest training)")
    promote.set_defaults(func=cmd_promote)

    run = sub.add_parser("run", help="run one night without a scheduler")
    run.add_argument("--date", type=_day, required=True, help="the night D; scored as of D+1 00:00 UTC")
    run.add_argument("--stages", help="comma-separated subset, in order (default: all)")
    run.set_defaults(func=cmd_run)

    fill = sub.add_parser("backfill", help="run a range of nights in order; published nights are kept (resumable)")
    fill.add_argument("--start", type=_day, required=True, help="the first night")
    fill.add_argument("--end", type=_day, required=True, help="the last night (included)")
    fill.add_argument("--rescore", action="store_true", help="run published nights again too (their rows are replaced)")
    fill.set_defaults(func=cmd_backfill)

    top = sub.add_parser("top", help="print the highest risks of the latest night")
    top.add_argument("--limit", type=int, default=10)
    top.set_defaults(func=cmd_top)

    sql = sub.add_parser("sql", help="run a query on the warehouse (its schemas attached on SQLite) and print the rows")
    sql.add_argument("query", nargs="?", help="one SELECT; without it, queries are read from standard input")
    sql.set_defaults(func=cmd_sql)

    demo = sub.add_parser("demo", help="synthesise, train, run two nights through Airflow, print the top risks")
    demo.add_argument("--stays", type=int, default=2000)
    demo.add_argument("--start", type=_day, default=date(2026, 1, 1))
    demo.add_argument("--days", type=int, default=60)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--research", type=int, default=500, metavar="N",
                      help="stays in each research cohort (the three research models' data; 0: none)")
    demo.add_argument("--no-airflow", dest="airflow", action="store_false",
                      help="run the nights with `vigil run` instead of `airflow dags test`")
    demo.set_defaults(func=cmd_demo)

    airflow = sub.add_parser("airflow", help="run an airflow command on Vigil's DAGs and home (e.g. `standalone`)")
    airflow.add_argument("arguments", nargs=argparse.REMAINDER)
    airflow.set_defaults(func=cmd_airflow)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()  # may import Airflow (a connection id), which configures logging its way
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, force=True,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        _quiet_libraries()
        return args.func(args, settings)
    except (ValueError, RuntimeError, FileNotFoundError) as error:
        if args.verbose:
            raise
        print(f"vigil {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
