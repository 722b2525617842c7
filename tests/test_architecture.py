"""The package's shape: no import circle anywhere in ``pipeline/``, counting imports inside
functions too (a late import hides a circle from Python, not from the next reader)."""

from __future__ import annotations

import ast
import re

from pipeline.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "pipeline"


def _module_name(path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``pipeline`` modules it imports (``from pipeline.x import y`` names module
    ``pipeline.x.y`` when that is a module, else ``pipeline.x``)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    targets.add(child if child in modules else node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("pipeline")}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan).

    >>> circles({"a": {"b"}, "b": {"a"}, "c": {"a"}})
    [['a', 'b']]
    """
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert len(graph) > 50 and graph["pipeline.nightly"], "the graph must see the package's imports"
    assert circles(graph) == []


def test_metric_primitives_live_in_one_module_that_imports_no_modelling_code():
    graph = import_graph()
    assert not {m for m in graph["pipeline.modeling.metrics"] if m.startswith("pipeline.")}
    users = {m for m, targets in graph.items() if "pipeline.modeling.metrics" in targets}
    assert {"pipeline.modeling.evaluation", "pipeline.modeling.report_html", "pipeline.monitoring",
            "pipeline.report", "pipeline.modeling.train", "pipeline.modeling.tuning"} <= users


STORE = PACKAGE / "store"
# A statement's opening words; a WHERE fragment a caller would hand the gateway (``night = :night``).
SQL_TEXT = re.compile(
    r"\b(SELECT\s+(\*|DISTINCT\b|COUNT\(|MAX\(|MIN\(|\w+\s*(,|FROM\b))|INSERT\s+INTO|DELETE\s+FROM|UPDATE\s+[\w.]+\s+SET"
    r"|CREATE\s+(TABLE|SCHEMA|DATABASE|INDEX|VIEW|ROLE|FUNCTION)|ALTER\s+(TABLE|ROLE)|DROP\s+(TABLE|DATABASE|VIEW|ROLE)"
    r"|GRANT\s+\w+|REVOKE\s+\w+|ATTACH\s+DATABASE|COPY\s+[\w.]+\s*\()"
    r"|[\w.]+\s*(=|<>|<=|>=|<|>|\bIN)\s*:\w+")


def sql_text(source: str) -> list[str]:
    """The string literals of a Python source that hold SQL (docstrings included; f-strings by
    their literal parts).

    >>> sql_text('q = "SELECT stay_id FROM vigil_risk.risk_scores"')
    ['SELECT stay_id FROM vigil_risk.risk_scores']
    >>> sql_text('wh.replace_rows(conn, table, "night = :night", {})')
    ['night = :night']
    >>> sql_text('wh.read(f"SELECT {key} FROM {table}")')
    ['SELECT x FROM x']
    >>> sql_text('print("select a model, then run it")')
    []
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):  # an f-string: its literal parts around a stand-in name
            text = "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if SQL_TEXT.search(text):
            found.append(text)
    return found


def test_no_sql_text_outside_sql_and_the_store_layer():
    checked, offenders = 0, {}
    for folder in (PACKAGE, PROJECT_ROOT / "dags", PROJECT_ROOT / "plugins"):
        for path in folder.rglob("*.py"):
            if path.is_relative_to(STORE):
                continue
            checked += 1
            found = sql_text(path.read_text())
            if found:
                offenders[str(path.relative_to(PROJECT_ROOT))] = found
    assert checked > 50, "the walk must see the package"
    assert offenders == {}
    assert len(list((PROJECT_ROOT / "sql" / "queries").rglob("*.sql"))) > 30
    store_sources = "\n".join(p.read_text() for p in STORE.glob("*.py"))
    assert sql_text(store_sources), "the detector must see the store's own SQL"
