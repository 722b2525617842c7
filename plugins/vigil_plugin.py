"""The Vigil page in the Airflow UI: a FastAPI app mounted by the API server at ``/vigil`` and a
top-level navigation entry that shows it inside the UI (``/plugin/vigil``).

Wiring only: the numbers and the HTML come from ``pipeline.ui``. Every route sits behind
Airflow's own authentication and authorization: the dependency is Airflow's
``requires_access_dag`` (``airflow.api_fastapi.core_api.security``), which reads the JWT from an
``Authorization: Bearer`` header or the UI's ``_token`` cookie, and asks the configured auth
manager whether the user may read the DAG whose data the route shows (``vigil_nightly`` for the
page, ``vigil_training`` for the training reports). Without a valid token an API client gets
401 (403 for an invalid one or a user without access); a browser navigating to the page is sent
to Airflow's login, and back here afterwards.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from urllib.parse import urlencode

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

URL_PREFIX = "/vigil"
NIGHTLY_DAG, TRAINING_DAG = "vigil_nightly", "vigil_training"

try:  # the API server's packages; a worker with only the task SDK has no page to serve
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

    from airflow.api_fastapi.app import API_ROOT_PATH
    from airflow.api_fastapi.core_api.security import requires_access_dag
except ImportError:  # pragma: no cover - exercised only on task-SDK-only workers
    FastAPI = None


@lru_cache(maxsize=1)
def _context():
    """Settings and warehouse of this API server process (``VIGIL_*`` environment), made once."""
    from pipeline.config import load_settings
    from pipeline.store.warehouse import connect

    settings = load_settings()
    return settings, connect(settings)


HEADERS = {  # aggregated numbers only, yet never cached; no script, no outside resource
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}


def _create_app():
    app = FastAPI(title="Vigil", docs_url=None, redoc_url=None, openapi_url=None)
    page_access = [Depends(requires_access_dag(method="GET", param_dag_id=NIGHTLY_DAG))]
    report_access = [Depends(requires_access_dag(method="GET", param_dag_id=TRAINING_DAG))]
    airflow_base = API_ROOT_PATH or "/"
    base = airflow_base.rstrip("/") + URL_PREFIX

    @app.exception_handler(HTTPException)
    async def _unauthenticated(request: Request, error: HTTPException):
        """A browser without a session goes to Airflow's login (which validates ``next``)."""
        browser = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if error.status_code == 401 and browser:
            login = f"{airflow_base.rstrip('/')}/api/v2/auth/login?{urlencode({'next': str(request.url)})}"
            return RedirectResponse(login, status_code=307)
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    def _overview():
        from pipeline import ui

        settings, wh = _context()
        return ui.overview(wh, limit_for=settings.failure_rate_limit, alert_psi=settings.alert_psi)

    @app.get("/", response_class=HTMLResponse, dependencies=page_access)
    def page() -> HTMLResponse:
        from pipeline import ui

        try:
            html = ui.render_page(_overview(), base=base, airflow_base=airflow_base)
        except Exception as error:  # noqa: BLE001 - shown to the operator instead of a bare 500
            log.exception("Vigil page: reading the warehouse failed")
            return HTMLResponse(ui.render_message("Vigil: the warehouse could not be read",
                                                  f"{type(error).__name__}; see the API server log.", base=base),
                                status_code=503, headers=HEADERS)
        return HTMLResponse(html, headers=HEADERS)

    @app.get("/api/overview", dependencies=page_access)
    def overview() -> JSONResponse:
        from pipeline import ui

        return JSONResponse(ui.to_json(_overview()), headers=HEADERS)

    @app.get("/reports/{model_name}/{version}", response_class=HTMLResponse, dependencies=report_access)
    def report(model_name: str, version: str) -> HTMLResponse:
        from pipeline import ui

        settings, wh = _context()
        path = ui.report_path(wh, settings.reports_dir, model_name, version)
        if path is None:
            return HTMLResponse(ui.render_message("No training report",
                                                  f"No report file for {model_name} {version}.", base=base),
                                status_code=404, headers=HEADERS)
        page = path.with_suffix(".html")  # the report with its plots, written beside the Markdown
        if page.is_file():
            return HTMLResponse(page.read_text(), headers=HEADERS)
        return HTMLResponse(ui.render_report_page(f"{model_name} {version}", path.read_text(), base=base),
                            headers=HEADERS)

    return app


app = _create_app() if FastAPI is not None else None


class VigilPlugin(AirflowPlugin):
    name = "vigil"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Vigil"}] if app is not None else []
    external_views = [{
        "name": "Vigil",
        "href": f"{URL_PREFIX}/",
        "destination": "nav",
        "url_route": "vigil",       # shown inside the UI at /plugin/vigil
        "nav_top_level": True,
    }]
