"""The Vigil page in the Airflow UI (``plugins/vigil_plugin.py`` over ``pipeline/ui/``).

- ``pipeline.ui`` on a real warehouse after two real nights, on SQLite and on PostgreSQL: every
  number on the page is checked against the audit, risk and registry tables it comes from;
- the page's edge cases on an empty warehouse (no runs, no drift table) and the report viewer's
  escaping and path checks;
- a real ``airflow api-server`` over a copy of the trained home, after a real ``airflow dags test``
  of the nightly DAG: every plugin route refuses a request without an Airflow token and serves
  one with it, and headless Chromium logs in through Airflow's login form, opens the Vigil page
  (on its own and inside the UI) and the nightly DAG's grid, and saves screenshots.

Screenshots go to a temporary folder that the test prints, and are copied to
``$VIGIL_SCREENSHOTS`` when it is set. Without Chromium, chromedriver or selenium the browser
test skips, saying why; with VIGIL_CI=1 it fails instead.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from pipeline import ui
from pipeline.stages.context import run_folder
from tests.conftest import E2E_NIGHTS, ROOT, clone_home, unavailable

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
USER = "vigil_viewer"  # SimpleAuthManager role "viewer": may read DAGs, nothing more
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- pipeline/ui on real nights


def _runs_table(wh):
    return wh.read("SELECT * FROM vigil_audit.runs ORDER BY started_at DESC, run_id DESC")


@pytest.mark.slow
def test_last_runs_match_the_audit_tables_and_the_accounting_closes(trained):
    wh = trained["warehouse"]
    runs = ui.last_runs(wh, limit=10)
    audit = _runs_table(wh)
    assert [r.run_id for r in runs] == audit["run_id"].tolist()
    assert {r.night for r in runs} >= set(E2E_NIGHTS)
    counts = wh.read("SELECT * FROM vigil_audit.run_counts")
    for run, row in zip(runs, audit.itertuples(index=False)):
        assert (run.stays_active, run.stays_scored, run.stays_unscored, run.risk_rows) == \
               (row.stays_active, row.stays_scored, row.stays_unscored, row.risk_rows)
        assert run.models == json.loads(row.models) and run.status == row.status
        mine = counts[counts["run_id"] == run.run_id].set_index("source_table")
        assert {t.source_table for t in run.tables} == set(mine.index) and run.tables
        for t in run.tables:
            assert (t.records_in, t.used, t.quarantined, t.excluded) == tuple(
                int(mine.loc[t.source_table, c]) for c in ("records_in", "used", "quarantined", "excluded"))
            assert t.closes and t.records_in == t.used + t.quarantined + t.excluded
        assert run.closes and run.records_in == run.used + run.quarantined + run.excluded
        assert run.quarantined == int(mine["quarantined"].sum()) and run.excluded == int(mine["excluded"].sum())
    assert len(ui.last_runs(wh, limit=1)) == 1 and ui.last_runs(wh, limit=1)[0].run_id == runs[0].run_id


@pytest.mark.slow
def test_data_quality_rates_are_the_nights_results(trained):
    wh, settings = trained["warehouse"], trained["settings"]
    dq = ui.data_quality(wh, limit_for=settings.failure_rate_limit)
    night = max(E2E_NIGHTS)
    assert dq.night == night
    results = wh.read("SELECT * FROM vigil_audit.dq_results WHERE night = :n", {"n": night})
    assert len(dq.expectations) == len(results) > 0
    assert sum(e.unexpected_count for e in dq.expectations) == int(results["unexpected_count"].sum())
    assert sum(e.element_count for e in dq.expectations) == int(results["element_count"].sum())
    for e in dq.expectations:
        assert e.failure_rate == pytest.approx(e.unexpected_count / e.element_count if e.element_count else 0.0)
    assert len(dq.failing) == int(((results["unexpected_count"] > 0) | ~results["success"].astype(bool)).sum())
    rates = [e.failure_rate for e in dq.failing]
    assert rates == sorted(rates, reverse=True)  # the worst first
    # per table: the night's latest run, quarantined / (used + quarantined), against the configured limit
    latest = _runs_table(wh)
    run_id = latest[latest["night"].astype(str) == str(night)]["run_id"].iloc[0]
    assert dq.run_id == run_id
    counts = wh.read("SELECT * FROM vigil_audit.run_counts WHERE run_id = :r", {"r": run_id}).set_index("source_table")
    for t in dq.tables:
        row = counts.loc[t.source_table]
        assert t.quarantined == row["quarantined"] and t.validated == row["used"] + row["quarantined"]
        assert t.failure_rate == pytest.approx(row["quarantined"] / (row["used"] + row["quarantined"]))
        assert t.limit == settings.failure_rate_limit(t.source_table) and not t.over_limit
    earlier = ui.data_quality(wh, min(E2E_NIGHTS))
    assert earlier.night == min(E2E_NIGHTS) and earlier.expectations


@pytest.mark.slow
def test_score_histograms_count_every_risk_row_of_the_latest_night(trained):
    wh = trained["warehouse"]
    histograms = ui.score_histograms(wh)
    night = max(E2E_NIGHTS)
    risk = wh.read("SELECT model_name, probability, risk_band, operating_threshold FROM vigil_risk.risk_scores "
                   "WHERE night = :n", {"n": night})
    run = _runs_table(wh).iloc[0]
    assert {h.model_name for h in histograms} == set(risk["model_name"])
    assert sum(h.total for h in histograms) == len(risk) == run["risk_rows"]
    for h in histograms:
        mine = risk[risk["model_name"] == h.model_name]
        assert h.night == night and len(h.counts) == ui.HISTOGRAM_BINS and len(h.edges) == ui.HISTOGRAM_BINS + 1
        assert h.edges[0] == 0.0 and h.edges[-1] == 1.0 and h.total == len(mine)
        for lo, hi, count in zip(h.edges, h.edges[1:], h.counts):
            inside = (mine["probability"] >= lo) & ((mine["probability"] < hi) if hi < 1 else (mine["probability"] <= hi))
            assert count == int(inside.sum())
        assert h.alerts == int((mine["probability"] >= mine["operating_threshold"]).sum())
        assert h.bands == mine["risk_band"].value_counts().to_dict()
        assert h.mean == pytest.approx(mine["probability"].mean())
    runs = _runs_table(wh)
    first = runs[runs["night"].astype(str).str[:10] == min(E2E_NIGHTS).isoformat()].iloc[0]
    assert sum(h.total for h in ui.score_histograms(wh, min(E2E_NIGHTS))) == first["risk_rows"]


@pytest.mark.slow
def test_score_drift_is_the_report_stages_psi_per_night(trained):
    wh, settings = trained["warehouse"], trained["settings"]
    drift = ui.score_drift(wh, nights=30, top=5, limit=settings.alert_psi)
    table = wh.read("SELECT night, model_name, feature, psi FROM vigil_audit.drift")
    if table.empty:
        assert drift is None
        pytest.skip("the report stage wrote no drift rows")
    table["night"] = table["night"].astype(str).str[:10]
    assert {d.model_name for d in drift} == set(table["model_name"])
    for d in drift:
        mine = table[table["model_name"] == d.model_name]
        assert [str(n.night) for n in d.nights] == sorted(mine["night"].unique())
        for n in d.nights:
            tonight = mine[mine["night"] == str(n.night)]
            score = tonight.loc[tonight["feature"] == "score", "psi"]
            assert n.score_psi == (pytest.approx(float(score.iloc[0])) if len(score) else None)
            features = tonight[tonight["feature"] != "score"]
            assert n.features == len(features)
            assert n.features_over_limit == int((features["psi"] > settings.alert_psi).sum())
        latest = mine[(mine["night"] == str(d.latest.night)) & (mine["feature"] != "score")]
        assert [p for _, p in d.top_features] == sorted(latest["psi"], reverse=True)[:5]
        report = json.loads((run_folder(d.latest.night, settings) / "report" / "report.json").read_text())
        assert d.latest.score_psi == pytest.approx(report["models"][d.model_name]["score_psi_vs_training"])


@pytest.mark.slow
def test_model_versions_and_their_training_reports(trained):
    wh, settings = trained["warehouse"], trained["settings"]
    models = ui.model_versions(wh)
    registry = wh.read("SELECT model_name, version, promoted, metrics_json, report_uri FROM vigil_models.model_versions")
    assert {(m.model_name, m.version) for m in models} == set(zip(registry["model_name"], registry["version"]))
    assert sum(m.promoted for m in models) == int(registry["promoted"].astype(bool).sum()) == 1
    promoted = next(m for m in models if m.promoted)
    assert promoted.candidate == trained["report"]["selected"]
    assert promoted.metrics["auroc"] == trained["report"]["candidates"][promoted.candidate]["auroc"]
    path = ui.report_path(wh, settings.home / "reports", promoted.model_name, promoted.version)
    assert path is not None and path.read_text().startswith("# ")
    page = ui.render_report_page("report", path.read_text())
    assert "<table>" in page and promoted.candidate in page and "(selected)" in page
    assert ui.report_path(wh, settings.home / "reports", promoted.model_name, "no-such-version") is None
    assert ui.report_path(wh, settings.home / "elsewhere", promoted.model_name, promoted.version) is None


@pytest.mark.slow
def test_the_page_shows_the_latest_nights_numbers(trained):
    wh, settings = trained["warehouse"], trained["settings"]
    overview = ui.overview(wh, limit_for=settings.failure_rate_limit, alert_psi=settings.alert_psi)
    latest = _runs_table(wh).iloc[0]
    assert overview.latest_run.run_id == latest["run_id"]
    page = ui.render_page(overview)
    assert f"<div class='v' id='kpi-stays-scored'>{latest['stays_scored']:,}</div>" in page
    assert f"<div class='v' id='kpi-night'>{latest['night']}</div>" in page
    assert f"id='kpi-risk-rows'>{latest['risk_rows']:,}<" in page
    assert page.count("<svg") >= len(overview.histograms) and "/vigil/reports/" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # nothing loaded from outside
    assert json.loads(json.dumps(ui.to_json(overview)))["runs"][0]["stays_scored"] == latest["stays_scored"]


# ----------------------------------------------------------------------------- edge cases, no trained home


def test_an_empty_warehouse_renders_without_numbers(warehouse):
    overview = ui.overview(warehouse)
    assert overview.runs == () and overview.histograms == () and overview.models == ()
    assert overview.drift is None and overview.data_quality.night is None
    page = ui.render_page(overview)
    assert "No night has been published yet" in page and "No drift figures yet" in page


def test_no_drift_table_says_no_drift_figures_yet(warehouse):
    from sqlalchemy import text

    with warehouse.begin() as conn:
        conn.execute(text("DROP TABLE vigil_audit.drift"))
    assert ui.score_drift(warehouse) is None
    assert "No drift figures yet" in ui.render_page(ui.overview(warehouse))


def test_markdown_reports_are_escaped(tmp_path, warehouse):
    hostile = "# Report <script>alert(1)</script>\n\n- a <img src=x onerror=alert(1)>\n\n| h |\n|---|\n| </td><b> |\n"
    rendered = ui.render_markdown(hostile)
    assert "<script" not in rendered and "<img" not in rendered and "<b>" not in rendered
    assert "&lt;script&gt;" in rendered and "<h1>" in rendered and "<li>" in rendered and "<td>&lt;/td&gt;&lt;b&gt;</td>" in rendered
    # a report path outside $VIGIL_HOME/reports, or not Markdown, is never served; a moved home's is found
    reports = tmp_path / "reports"
    (reports / "m").mkdir(parents=True)
    (reports / "m" / "ok.md").write_text("# ok\n")
    (tmp_path / "secret.md").write_text("# secret\n")
    rows = [("ok", str(reports / "m" / "ok.md")), ("escape", str(reports / "m" / ".." / ".." / "secret.md")),
            ("json", str(reports / "m" / "ok.json")), ("none", None),
            ("moved", "/old/home/reports/m/ok.md")]  # a home restored at another path
    from datetime import datetime

    import pandas as pd

    frame = pd.DataFrame([{"model_name": "m", "version": v, "candidate": "c", "task": "binary", "spec_sha256": "x",
                           "training_as_of": datetime(2026, 1, 1), "trained_at": datetime(2026, 1, 2), "n_train": 1,
                           "n_test": 1, "metrics_json": "{}", "artifact_uri": "a", "report_uri": uri, "promoted": False}
                          for v, uri in rows])
    with warehouse.begin() as conn:
        warehouse.bulk_insert(conn, "vigil_models.model_versions", frame)
    assert ui.report_path(warehouse, reports, "m", "ok") == (reports / "m" / "ok.md").resolve()
    assert ui.report_path(warehouse, reports, "m", "moved") == (reports / "m" / "ok.md").resolve()
    for version in ("escape", "json", "none", "missing"):
        assert ui.report_path(warehouse, reports, "m", version) is None


def test_the_plugin_registers_the_app_and_nav_entry_behind_airflow_auth():
    sys.path.insert(0, str(ROOT / "plugins"))
    try:
        import vigil_plugin
    finally:
        sys.path.remove(str(ROOT / "plugins"))
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse, FastAPIAppResponse

    plugin = vigil_plugin.VigilPlugin
    (entry,) = plugin.fastapi_apps
    assert entry["url_prefix"] == "/vigil" and not any(entry["url_prefix"].startswith(p) for p in RESERVED_URL_PREFIXES)
    FastAPIAppResponse(app=str(entry["app"]), url_prefix=entry["url_prefix"], name=entry["name"])
    (view,) = plugin.external_views
    assert ExternalViewResponse(**view).destination == "nav" and view["href"] == "/vigil/"
    routes = [r for r in entry["app"].routes if getattr(r, "endpoint", None) and r.path not in ("/openapi.json",)]
    assert {r.path for r in routes} == {"/", "/api/overview", "/reports/{model_name}/{version}"}
    for route in routes:  # every route depends on Airflow's requires_access_dag (which depends on get_user)
        calls = [d.call for d in route.dependant.dependencies]
        assert any(getattr(c, "__qualname__", "").startswith("requires_access_dag") for c in calls), route.path


# ----------------------------------------------------------------------------- a real API server and browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the API server exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise AssertionError(f"the API server was not healthy within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """End the server's whole process group (uvicorn workers included)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def airflow_server(trained_sqlite, tmp_path_factory):
    """A copy of the trained home with one real ``airflow dags test`` night, served by ``airflow api-server``."""
    from pipeline.cli import airflow_env

    clone = clone_home(trained_sqlite, tmp_path_factory.mktemp("ui") / "home")
    settings = clone["settings"]
    airflow_home = settings.home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    passwords = airflow_home / "passwords.json"
    passwords.write_text(json.dumps({USER: password}))
    port = _free_port()
    env = airflow_env(settings)
    env.update({  # this home's own metadata DB and Airflow settings, whatever the test process has set
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__EXPOSE_CONFIG": "False",
    })
    airflow = str(Path(sys.executable).parent / "airflow")
    for command in (["db", "migrate"], ["pools", "set", "gpu", "1", "embedding"]):
        subprocess.run([airflow, *command], env=env, check=True, capture_output=True, timeout=300)
    night = E2E_NIGHTS[1]
    test = subprocess.run([airflow, "dags", "test", "vigil_nightly", night.isoformat()], env=env,
                          capture_output=True, text=True, timeout=900)
    assert test.returncode == 0 and "state=success" in test.stdout + test.stderr, (test.stdout + test.stderr)[-4000:]
    log = settings.home / "api-server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log)
        yield {"url": url, "user": USER, "password": password, "clone": clone, "night": night, "log": log}
    finally:
        _stop(proc)
        clone["warehouse"].dispose()


def _token(server) -> str:
    response = requests.post(f"{server['url']}/auth/token", json={"username": server["user"],
                                                                 "password": server["password"]}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


def _latest_run(server):
    return _runs_table(server["clone"]["warehouse"]).iloc[0]


@pytest.mark.slow
def test_every_plugin_route_needs_an_airflow_login(airflow_server):
    url = airflow_server["url"]
    wh = airflow_server["clone"]["warehouse"]
    version = wh.read("SELECT model_name, version FROM vigil_models.model_versions WHERE promoted = :y", {"y": True})
    report = f"/vigil/reports/{version['model_name'].iloc[0]}/{version['version'].iloc[0]}"
    routes = ["/vigil/", "/vigil/api/overview", report]
    for route in routes:
        anonymous = requests.get(url + route, timeout=60, allow_redirects=False)
        assert anonymous.status_code in (401, 403), (route, anonymous.status_code, anonymous.text[:300])
        assert "stays" not in anonymous.text
        forged = requests.get(url + route, headers={"Authorization": "Bearer not.a.token"}, timeout=60,
                              allow_redirects=False)
        assert forged.status_code in (401, 403), (route, forged.status_code)
        wrong_cookie = requests.get(url + route, cookies={"_token": "not.a.token"}, timeout=60, allow_redirects=False)
        assert wrong_cookie.status_code in (401, 403), (route, wrong_cookie.status_code)
    # a browser without a session is sent to Airflow's login, which comes back to the page afterwards
    browser = requests.get(url + "/vigil/", headers={"Accept": "text/html"}, timeout=60, allow_redirects=False)
    assert browser.status_code in (302, 307), browser.status_code
    assert browser.headers["location"].startswith("/api/v2/auth/login?next=")
    assert "%2Fvigil%2F" in browser.headers["location"]
    login = requests.get(url + browser.headers["location"], timeout=60, allow_redirects=False)
    assert login.status_code == 307 and "/auth/login" in login.headers["location"], login.text
    wrong = requests.post(f"{url}/auth/token", json={"username": USER, "password": "wrong"}, timeout=30)
    assert wrong.status_code == 401

    token = _token(airflow_server)
    latest = _latest_run(airflow_server)
    for headers, cookies in (({"Authorization": f"Bearer {token}"}, None), ({}, {"_token": token})):
        page = requests.get(url + "/vigil/", headers=headers, cookies=cookies, timeout=120)
        assert page.status_code == 200, page.text[:500]
        assert f"id='kpi-stays-scored'>{latest['stays_scored']:,}<" in page.text
        assert latest["run_id"] in page.text and page.headers["cache-control"] == "no-store"
    data = requests.get(url + "/vigil/api/overview", headers={"Authorization": f"Bearer {token}"}, timeout=120).json()
    assert data["runs"][0]["run_id"] == latest["run_id"] and data["runs"][0]["stays_scored"] == latest["stays_scored"]
    assert data["runs"][0]["run_id"].startswith("manual__")  # the night published by `airflow dags test`
    shown = requests.get(url + report, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert shown.status_code == 200 and "training report" in shown.text and "<table>" in shown.text
    missing = requests.get(url + "/vigil/reports/icu_mortality/..%2F..%2Fetc", headers={"Authorization": f"Bearer {token}"},
                           timeout=60)
    assert missing.status_code == 404
    plugins = requests.get(url + "/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    if plugins.status_code == 200:  # a viewer may not list plugins under every auth manager
        (vigil,) = [p for p in plugins.json()["plugins"] if p["name"] == "vigil"]
        assert vigil["fastapi_apps"][0]["url_prefix"] == "/vigil" and vigil["external_views"][0]["name"] == "Vigil"


def _screenshot_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots: {folder}")
    return folder


def _chrome():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        unavailable(f"headless Chromium needs {', '.join(missing)} "
                    "(apt-get install chromium chromium-driver; pip install selenium)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1440,1100", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _full_page(driver, path: Path, min_height: int = 1000) -> Path:
    driver.set_window_size(1440, min_height)
    time.sleep(0.3)
    height = driver.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    driver.set_window_size(1440, max(min_height, min(int(height) + 40, 6000)))
    time.sleep(0.5)
    driver.save_screenshot(str(path))
    return path


@pytest.mark.slow
def test_the_vigil_page_and_the_dag_grid_in_headless_chromium(airflow_server, tmp_path_factory):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chrome()
    folder = _screenshot_folder(tmp_path_factory)
    url, latest = airflow_server["url"], _latest_run(airflow_server)
    shots = []
    try:
        wait = WebDriverWait(driver, 90)
        # not logged in: the page sends the browser to Airflow's login form, which brings it back
        driver.get(url + "/vigil/")
        wait.until(ec.presence_of_element_located((By.NAME, "username")))
        assert "/auth/login" in driver.current_url
        shots.append(_full_page(driver, folder / "00-airflow-login.png", 800))
        driver.find_element(By.NAME, "username").send_keys(airflow_server["user"])
        driver.find_element(By.NAME, "password").send_keys(airflow_server["password"])
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(ec.presence_of_element_located((By.ID, "kpi-stays-scored")))
        assert driver.current_url.rstrip("/").endswith("/vigil")
        assert driver.find_element(By.ID, "kpi-stays-scored").text == f"{latest['stays_scored']:,}"
        assert driver.find_element(By.ID, "kpi-night").text == str(latest["night"])
        body = driver.find_element(By.TAG_NAME, "body").text
        assert latest["run_id"] in body and "Score distribution" in body and "Drift versus training" in body
        shots.append(_full_page(driver, folder / "01-vigil-page.png"))

        # the training report behind the page's link: its HTML with the plots, rendered
        driver.find_element(By.LINK_TEXT, "training report").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "img[alt='ROC and precision-recall curves']")))
        shown = driver.execute_script(
            "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 200).length")
        assert shown >= 4, shown  # curves, calibration, a confusion matrix per candidate
        assert "Modality ablation" in driver.find_element(By.TAG_NAME, "body").text
        shots.append(_full_page(driver, folder / "02-training-report.png", 800))

        # the same page inside the Airflow UI, from its navigation entry
        driver.set_window_size(1440, 1100)
        driver.get(url + "/plugin/vigil")
        frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe")))
        driver.switch_to.frame(frame)
        wait.until(ec.presence_of_element_located((By.ID, "kpi-stays-scored")))
        assert driver.find_element(By.ID, "kpi-stays-scored").text == f"{latest['stays_scored']:,}"
        driver.switch_to.default_content()
        time.sleep(1)
        driver.save_screenshot(str(folder / "03-vigil-in-airflow-ui.png"))
        shots.append(folder / "03-vigil-in-airflow-ui.png")

        # the nightly DAG's grid, with the run `airflow dags test` made
        driver.get(url + "/dags/vigil_nightly")
        wait.until(lambda d: "extract" in d.find_element(By.TAG_NAME, "body").text
                   and "report" in d.find_element(By.TAG_NAME, "body").text)
        time.sleep(3)  # let the grid's cells paint
        driver.save_screenshot(str(folder / "04-vigil-nightly-grid.png"))
        shots.append(folder / "04-vigil-nightly-grid.png")
        assert "vigil_nightly" in driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
    for shot in shots:
        data = shot.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 20_000, shot
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width >= 1000 and height >= 500, (shot, width, height)
    if os.environ.get("VIGIL_SCREENSHOTS"):
        target = Path(os.environ["VIGIL_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy2(shot, target / shot.name)
        print(f"screenshots copied to {target}")
