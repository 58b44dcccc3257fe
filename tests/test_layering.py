"""The project's layers, checked on the source with ``ast``: the monitor imports nothing of the project;
the harness never imports the monitor, the reports, the tests or the command line; the reports read a
run directory and the harness's public types only; the command line and the pytest plugin
(``wschaos/``) sit on top and never import the tests. No import cycle between the project's modules,
no file of harness/, monitor/ or reports/ over ``MAX_LINES`` lines, and no source citing a Markdown
file the repository does not have.

Every import counts: at the top, in a function, under ``if TYPE_CHECKING``. ``python
tests/test_layering.py`` prints every finding.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("monitor", "harness", "reports", "wschaos")
MAX_LINES = 700
SIZE_CHECKED = ("harness", "monitor", "reports")

# package: top-level names it must never import
FORBIDDEN = {
    "monitor": {"harness", "reports", "tests", "wschaos"},
    "harness": {"monitor", "reports", "tests", "wschaos"},
    "reports": {"monitor", "tests", "wschaos"},
    "wschaos": {"tests"},
}
# What the reports may take from the harness: the types a run directory is read into, the error
# they raise, the few constants that name where things are, and the checkers' public reading of a
# history (the registry's guarantee texts, statuses, latency and connection figures). None of the
# checkers' machinery (no CheckContext, no checker function).
REPORTS_MAY_USE = {
    "harness": {"__version__"},
    "harness.errors": {"HarnessError"},
    "harness.history": {"History"},
    "harness.targetspec": {"PROJECT_ROOT", "TARGETS_DIR"},
    "harness.toxiproxy": {"find_server_binary"},
    "harness.checkers": {
        "checker_name", "GUARANTEES", "guarantee_of", "read_status", "client_cohorts", "connected_counts",
        "latency_quantiles", "live_latencies", "target_down_windows",
    },
}
SOURCE_SUFFIXES = {".py", ".json", ".yaml", ".j2", ".js", ".css", ".html"}
MARKDOWN_RE = re.compile(r"[\w./-]+\.md\b")
WRITTEN_MARKDOWN = {"mutants.md"}  # written by ``wschaos mutants`` into its run directory


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    path: Path
    line: int
    target: str  # the imported module, as resolved
    names: tuple[str, ...]  # the names taken from it; () for ``import x``

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                files[module_name(path)] = path
    return files


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    """Every import in the file, wherever it is; ``from pkg import mod`` resolves to the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, path, node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            modules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            names = tuple(a.name for a in node.names if f"{base}.{a.name}" not in known)
            found += [Import(module, path, node.lineno, sub, ()) for sub in modules]
            if names:
                found.append(Import(module, path, node.lineno, base, names))
    return found


def all_imports() -> list[Import]:
    files = project_files()
    known = set(files)
    return [imp for module, path in files.items() for imp in imports_of(module, path, known)]


def layer_problems(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        layer, top = imp.module.split(".")[0], imp.target.split(".")[0]
        if top in FORBIDDEN.get(layer, set()):
            problems.append(f"{imp.where}: {layer}/ must not import {top}: {imp.module} imports {imp.target}")
        elif layer == "reports" and top == "harness":
            allowed = REPORTS_MAY_USE.get(imp.target)
            taken = set(imp.names) if imp.names else {"*"}
            if imp.target == "harness" and not imp.names:
                continue  # ``import harness`` for harness.__version__
            if allowed is None or not taken <= allowed:
                extra = sorted(taken - (allowed or set()))
                problems.append(f"{imp.where}: reports/ uses harness internals: {imp.module} takes "
                                f"{', '.join(extra)} from {imp.target}")  # fmt: skip
    return problems


def graph(imports: list[Import]) -> dict[str, dict[str, list[Import]]]:
    """module -> imported project module -> the imports that make the edge."""
    known = set(project_files())
    edges: dict[str, dict[str, list[Import]]] = {m: {} for m in known}
    for imp in imports:
        if imp.target in known and imp.target != imp.module:
            edges[imp.module].setdefault(imp.target, []).append(imp)
    return edges


def strongly_connected(edges: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """Tarjan's algorithm; only the components of more than one module (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(components)


def shortest_cycle(start: str, members: set[str], edges: dict[str, dict[str, list[Import]]]) -> list[str]:
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(edges[node]):
            if nxt not in members:
                continue
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    return []


def cycle_problems(imports: list[Import]) -> list[str]:
    edges = graph(imports)
    problems = []
    for component in strongly_connected(edges):
        members = set(component)
        cycles = {tuple(shortest_cycle(m, members, edges)) for m in component}
        described = set()
        for cycle in sorted(cycles, key=lambda c: (len(c), c)):
            steps = []
            for a, b in itertools.pairwise(cycle):
                lines = ", ".join(dict.fromkeys(imp.where for imp in edges[a][b]))
                steps.append(f"{a} -> {b} ({lines})")
            text = "; ".join(steps)
            if frozenset(cycle) not in described:
                described.add(frozenset(cycle))
                problems.append(f"import cycle among {', '.join(component)}: {text}")
    return problems


def size_problems() -> list[str]:
    problems = []
    for package in SIZE_CHECKED:
        for path in sorted((ROOT / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                lines = path.read_bytes().count(b"\n")
                if lines > MAX_LINES:
                    problems.append(f"{path.relative_to(ROOT)}: {lines} lines, more than {MAX_LINES}")
    return problems


def test_each_layer_imports_only_what_is_below_it() -> None:
    problems = layer_problems(all_imports())
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_the_projects_modules() -> None:
    problems = cycle_problems(all_imports())
    assert not problems, "\n".join(problems)


def test_no_file_of_the_harness_monitor_or_reports_is_over_the_size_limit() -> None:
    problems = size_problems()
    assert not problems, "\n".join(problems)


def cited_files() -> list[str]:
    """Mentions of a Markdown file in the source that name no file of the repository."""
    present = {p.name for p in ROOT.rglob("*.md") if not {".git", ".venv", ".tools"} & set(p.parts)}
    problems = []
    for folder in (*PACKAGES, "tests", "scenarios", "benchmarks", "scripts"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in SOURCE_SUFFIXES or not path.is_file() or "__pycache__" in path.parts:
                continue
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for match in MARKDOWN_RE.finditer(line):
                    name = match.group(0).rsplit("/", 1)[-1]
                    if name not in present and name not in WRITTEN_MARKDOWN:
                        where = f"{path.relative_to(ROOT)}:{lineno}"
                        problems.append(f"{where}: cites {match.group(0)}, not in the repository")
    return problems


def test_no_source_cites_a_file_outside_the_repository() -> None:
    problems = cited_files()
    assert not problems, "\n".join(problems)


def test_the_checks_find_what_they_look_for() -> None:
    """The graph and the rules on hand-made imports: a cycle of three, an upward import, an internal."""
    fake = ROOT / "harness" / "x.py"

    def imp(module: str, target: str, *names: str) -> Import:
        return Import(module, fake, 1, target, names)

    made = [imp("harness.feed", "harness.target"), imp("harness.target", "harness.history"),
            imp("harness.history", "harness.feed"), imp("harness.feed", "monitor.logparse", "format_line"),
            imp("reports.timeline", "harness.checkers", "CheckContext"),
            imp("reports.run", "harness.history", "History")]  # fmt: skip
    cycles = cycle_problems(made)
    assert len(cycles) == 1 and "harness.feed, harness.history, harness.target" in cycles[0]
    assert "harness.feed -> harness.target" in cycles[0] and "harness.history -> harness.feed" in cycles[0]
    layers = layer_problems(made)
    assert len(layers) == 2
    assert "harness/ must not import monitor" in layers[0] and "takes CheckContext from harness.checkers" in layers[1]


def test_from_package_import_module_resolves_to_the_module() -> None:
    files = project_files()
    runner = imports_of("harness.runner", files["harness.runner"], set(files))
    assert any(i.target == "harness.browser" and i.names == () for i in runner)
    assert any(i.target == "harness.checkers" and "run_checks" in i.names for i in runner)


if __name__ == "__main__":
    found = all_imports()
    for problem in layer_problems(found) + cycle_problems(found) + size_problems() + cited_files():
        print(problem)
