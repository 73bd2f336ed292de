"""The shape of the package: no import cycle, no module past ~400 lines without a reason, no front
end's words (a CLI flag, an `importer ...` command) below the front ends.

Import-linter (`make lint`) keeps the layering rule itself; these are what it does not check.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from importer.cli import cli

PACKAGE = Path(__file__).parent.parent / "importer"
MAX_LINES = 400
# The reason a longer module must give, at the start of its docstring.
LONG_REASON = re.compile(r"^Over 400 lines because \S", re.IGNORECASE | re.MULTILINE)
# The front ends' own files: they may name their flags and commands (docs.py writes the README).
FRONT_END_FILES = re.compile(r"^importer/(cli(\.py|/.*)|__main__\.py|docs\.py)$")


@dataclass(frozen=True, slots=True)
class Source:
    """One module of the package: its dotted name, path (relative to the checkout) and tree."""

    name: str
    path: str
    tree: ast.Module
    lines: int
    is_package: bool


def _sources() -> list[Source]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        text = path.read_text(encoding="utf-8")
        found.append(
            Source(
                name=".".join(parts),
                path=path.relative_to(PACKAGE.parent).as_posix(),
                tree=ast.parse(text, filename=str(path)),
                lines=len(text.splitlines()),
                is_package=is_package,
            )
        )
    return found


SOURCES = _sources()
MODULES = {source.name for source in SOURCES}


def _imported(source: Source) -> Iterator[tuple[str, int]]:
    """Every module of the package this one imports, with the line: at the top, inside functions,
    under TYPE_CHECKING alike (ast.walk visits them all)."""
    package = source.name if source.is_package else source.name.rpartition(".")[0]
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # `from x import y` imports the module x.y when there is one, else a name of x.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import a.b.c` of a name: its module
                target = target.rpartition(".")[0]
            if target and target != source.name:
                yield target, node.lineno


def _graph(unit: dict[str, str]) -> dict[str, dict[str, str]]:
    """unit -> {imported unit: one import that makes the edge, as `path:line module`}."""
    edges: dict[str, dict[str, str]] = {u: {} for u in unit.values()}
    for source in SOURCES:
        for target, line in _imported(source):
            if unit[source.name] != unit[target]:
                edges[unit[source.name]].setdefault(unit[target], f"{source.path}:{line} imports {target}")
    return edges


def _cycles(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in edges[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _describe(cycles: list[list[str]], edges: dict[str, dict[str, str]]) -> str:
    return "\n".join(
        f"cycle among {', '.join(cycle)}:\n"
        + "\n".join(f"  {edges[a][b]}" for a in cycle for b in cycle if b in edges[a])
        for cycle in cycles
    )


def _subpackage(module: str) -> str:
    """importer.reading.sheet -> importer.reading; importer.errors -> importer.errors."""
    return ".".join(module.split(".")[:2])


@pytest.mark.parametrize(
    ("level", "unit"),
    [("module", lambda module: module), ("subpackage", _subpackage)],
)
def test_no_import_cycle(level: str, unit: object) -> None:
    assert callable(unit)
    edges = _graph({module: unit(module) for module in MODULES})
    cycles = _cycles(edges)
    assert not cycles, f"import cycles between {level}s:\n{_describe(cycles, edges)}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b": "a->b"}, "b": {"c": "b->c"}, "c": {"a": "c->a"}, "d": {"a": "d->a"}}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_no_module_past_400_lines_without_a_reason() -> None:
    long = [
        f"{source.path} ({source.lines} lines)"
        for source in SOURCES
        if source.lines > MAX_LINES and not LONG_REASON.search(ast.get_docstring(source.tree) or "")
    ]
    assert not long, (
        f"modules over {MAX_LINES} lines whose docstring does not start with the reason "
        f"('Over 400 lines because ...'): {', '.join(long)}"
    )


def _commands(group: click.Group, ctx: click.Context) -> Iterator[click.Command]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None:
            continue
        yield command
        if isinstance(command, click.Group):
            yield from _commands(command, click.Context(command, parent=ctx, info_name=name))


def _front_end_words() -> re.Pattern[str]:
    """A pattern for the CLI's long flags and its commands (`importer import`), from click itself."""
    ctx = click.Context(cli, info_name="importer")
    commands = list(_commands(cli, ctx))
    flags = {
        opt
        for command in [cli, *commands]
        for param in command.params
        for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("--")
    }
    names = {command.name for command in commands if command.name}
    assert "--max-rows" in flags and "send-activations" in names  # the walk found the commands
    flag = "|".join(re.escape(f) for f in sorted(flags, key=len, reverse=True))
    command = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{flag})(?![\w-])|\bimporter (?:{command})(?![\w-])")


def _docstrings(tree: ast.Module) -> set[int]:
    """The ids of the docstring nodes: they speak to developers, not to users."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_no_front_end_words_below_the_front_ends() -> None:
    words = _front_end_words()
    offenders = []
    for source in SOURCES:
        if FRONT_END_FILES.match(source.path):
            continue
        docstrings = _docstrings(source.tree)
        for node in ast.walk(source.tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                for match in words.finditer(node.value):
                    offenders.append(f"{source.path}:{node.lineno}: {match.group()!r} in {node.value!r}")
    assert not offenders, (
        "strings below the front ends that name a CLI flag or command (give the fact, e.g. a Remedy, "
        "and let each front end word it):\n" + "\n".join(offenders)
    )


def test_the_word_finder_finds_flags_and_commands() -> None:
    words = _front_end_words()
    assert words.search("raise it with --max-rows")
    assert words.search("run `importer send-activations --resend`")
    assert words.search("use importer batches to list them")
    assert not words.search("member-importer/portal/v1")
    assert not words.search("newer than this importer knows")
    assert not words.search("--==boundary==")
