"""The Vigil page as HTML: Jinja2 templates (``pipeline/ui/templates/``, autoescaped, inline
CSS and inline SVG charts: no script, no external resource) and training reports rendered from
Markdown by markdown-it with raw HTML off, so every value from the warehouse or a report file
is escaped."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

from pipeline.ui.views import PSI_SHIFT, PSI_WATCH, ModelDrift, Overview, ScoreHistogram


def render_markdown(text: str) -> str:
    """A training report's Markdown (headings, lists, pipe tables, paragraphs) as HTML. Raw HTML
    in the text is escaped, never passed through, and links and images stay text, so a report
    loads nothing from outside. A table right after a list starts its own block (reports
    written before they left a blank line between them).

    >>> render_markdown("# T <x>\\n- a\\n| h |\\n|---|\\n| <i> |\\n\\n![x](https://e.org/x.png)")
    '<h1>T &lt;x&gt;</h1>\\n<ul>\\n<li>a</li>\\n</ul>\\n<table>\\n<thead>\\n<tr>\\n<th>h</th>\\n</tr>\\n</thead>\\n<tbody>\\n<tr>\\n<td>&lt;i&gt;</td>\\n</tr>\\n</tbody>\\n</table>\\n<p>![x](https://e.org/x.png)</p>\\n'
    """
    return _markdown().render(_TABLE_AFTER_TEXT.sub(r"\1\n\n\2", text))


_TABLE_AFTER_TEXT = re.compile(r"^([ \t]*[^|\s].*)\n([ \t]*\|)", flags=re.M)


@cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable("table").disable(["link", "image", "autolink"])


def render_page(ov: Overview, *, base: str = "/vigil", airflow_base: str = "/") -> str:
    """The Vigil page: latest night, runs and row accounting, data quality, scores, drift, models."""
    latest = ov.latest_run
    alerts = sum(h.alerts or 0 for h in ov.histograms if latest and h.night == latest.night)
    return _template("page.html").render(
        title="Vigil", ov=ov, latest=latest, alerts=alerts, base=base, airflow=airflow_base.rstrip("/"),
        histograms=[(h, histogram_chart(h)) for h in ov.histograms],
        drift=[(d, drift_chart(d)) for d in ov.drift or ()], psi_watch=PSI_WATCH, psi_shift=PSI_SHIFT)


def render_report_page(title: str, markdown: str, *, base: str = "/vigil") -> str:
    """A training report as a page of its own, with a way back to the Vigil page."""
    return _template("report.html").render(title=title, base=base, report=Markup(render_markdown(markdown)))


def render_message(title: str, message: str, *, base: str = "/vigil") -> str:
    return _template("message.html").render(title=title, message=message, base=base)


# ----------------------------------------------------------------------------- charts


@dataclass(frozen=True)
class Chart:
    """An SVG chart's geometry; the template ``charts.html`` draws it."""

    width: int
    height: int
    left: float
    top: float
    plot_w: float
    plot_h: float
    marks: tuple[dict, ...]    # bars or points, with their labels
    ticks: tuple[dict, ...]    # x-axis labels
    lines: tuple[dict, ...]    # reference lines (threshold, PSI levels)
    peak: float


def histogram_chart(h: ScoreHistogram, width: int = 420, height: int = 200) -> Chart:
    """Bars per bin with their counts, the [0, 1] axis and the operating threshold."""
    left, right, top, bottom = 34, 10, 30, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(max(h.counts), 1)
    bar_w = plot_w / len(h.counts)
    bars = []
    for i, count in enumerate(h.counts):
        bar_h = plot_h * count / peak
        lo, hi = h.edges[i], h.edges[i + 1]
        bars.append({"x": left + i * bar_w, "y": top + plot_h - bar_h, "w": bar_w, "h": bar_h, "count": count,
                     "lo": lo, "hi": hi,
                     "alert": h.operating_threshold is not None and lo >= h.operating_threshold})
    ticks = [{"x": left + i * bar_w, "label": f"{h.edges[i]:.1f}", "anchor": "middle"}
             for i in range(0, len(h.edges), 2)]
    lines = []
    if h.operating_threshold is not None:
        x = left + plot_w * min(max(h.operating_threshold, 0.0), 1.0)
        anchor = "start" if x < left + plot_w * 0.7 else "end"
        lines.append({"x": x, "anchor": anchor, "label_x": x + (3 if anchor == "start" else -3),
                      "label": f"operating threshold {h.operating_threshold:g}"})
    return Chart(width, height, left, top, plot_w, plot_h, tuple(bars), tuple(ticks), tuple(lines), peak)


def drift_chart(d: ModelDrift, width: int = 420, height: int = 180) -> Chart:
    """Score PSI per night with the 0.1 and alert-limit reference lines."""
    left, right, top, bottom = 40, 40, 16, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [n.score_psi for n in d.nights]
    known = [v for v in values if v is not None]
    peak = max([d.limit * 1.2, *known]) if known else d.limit * 1.2
    n = len(d.nights)

    def x_of(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    def y_of(v: float) -> float:
        return top + plot_h - plot_h * v / peak

    points = [{"x": x_of(i), "y": y_of(v), "value": v, "night": d.nights[i].night}
              for i, v in enumerate(values) if v is not None]
    ticks = [{"x": x_of(i), "label": str(d.nights[i].night),
              "anchor": "middle" if n == 1 else "start" if i == 0 else "end"} for i in sorted({0, n - 1})]
    lines = [{"y": y_of(level), "color": color, "label": f"{level:g}"}
             for level, color in ((PSI_WATCH, "#b7791f"), (d.limit, "#c53030"))]
    return Chart(width, height, left, top, plot_w, plot_h, tuple(points), tuple(ticks), tuple(lines), peak)


# ----------------------------------------------------------------------------- templates


def _number(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _percent(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def _psi_class(psi: float | None, limit: float = PSI_SHIFT) -> str:
    if psi is None:
        return "muted"
    return "bad" if psi > limit else "warn" if psi > PSI_WATCH else "ok"


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _discrimination(metrics: dict) -> str:
    """A version's headline held-out metric for its task: Harrell's C (survival), the macro
    one-vs-rest AUROC (multiclass, told by its macro F1) or the AUROC.

    >>> _discrimination({"c_index": 0.7412, "auroc": 0.69}), _discrimination({"macro_f1": 0.5, "auroc": 0.735})
    ('0.741 C-index', '0.735 macro AUROC')
    """
    for key, label in (("c_index", "C-index"), ("macro_f1", "macro AUROC"), ("auroc", "AUROC")):
        if key in metrics:
            value = metrics.get("auroc" if key == "macro_f1" else key)
            return "–" if value is None else f"{value:.3f} {label}"
    return "–"


@cache
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("pipeline.ui"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(number=_number, percent=_percent, psi_class=_psi_class, when=_when,
                       discrimination=_discrimination, quote=lambda value: quote(str(value), safe=""))
    return env


def _template(name: str):
    return _environment().get_template(name)
