"""One module owns each table: its writes come from that module only, and the shells (``api/``,
``web/``, ``cli/``) hold no SQL against a table (they read through the owners' query functions).

The SQL is found by parsing every module of ``src/orchestrion`` (``ast``): every string literal
that is not a docstring, f-strings with their placeholders blanked, matched for ``INSERT INTO``,
``UPDATE``, ``DELETE FROM`` (writes) and ``FROM`` / ``JOIN`` (reads) followed by the name of a table
that a migration creates. The owner map is the one in docs/architecture.md ("Who writes each
table"), so the documentation and the code cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "orchestrion"
SHELLS = ("api/", "web/", "cli/")
_WRITE = re.compile(r"\b(?:INSERT (?:OR \w+ )?INTO|UPDATE|DELETE FROM|TRUNCATE|COPY)\s+(\w+)")
_READ = re.compile(r"\b(?:FROM|JOIN)\s+(\w+)")


def tables() -> set[str]:
    """Every table a migration creates."""
    found: set[str] = set()
    for sql in (PACKAGE / "migrations").glob("*.sql"):
        found |= set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", sql.read_text()))
    return found


def owners() -> dict[str, str]:
    """docs/architecture.md's map: table → the module (path under src/orchestrion) that writes it."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Who writes each table", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(\w+)` \| `([\w/]+\.py)` \|", section, flags=re.M))


def sql_strings(source: str) -> list[str]:
    """The string literals of a module that are not docstrings (f-strings with ``{}`` for their fields)."""
    tree = ast.parse(source)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skip.add(id(node.value))  # a docstring, or a bare string statement
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            out.append("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values))
            skip.update(id(v) for v in node.values)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            out.append(node.value)
    return out


def usage(package: Path = PACKAGE) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per table: the modules that write it, and the modules that read it."""
    known = tables()
    writes: dict[str, set[str]] = defaultdict(set)
    reads: dict[str, set[str]] = defaultdict(set)
    for path in sorted(package.rglob("*.py")):
        module = path.relative_to(package).as_posix()
        for text in sql_strings(path.read_text()):
            for table in _WRITE.findall(text):
                if table in known:
                    writes[table].add(module)
            for table in _READ.findall(text.replace("DELETE FROM", "DELETE")):
                if table in known:
                    reads[table].add(module)
    return writes, reads


def test_the_scanner_sees_sql() -> None:
    found = sql_strings('"""SELECT x FROM docs"""\nq = f"UPDATE t SET a = {b} FROM {c}"\nr = "DELETE FROM u"\n')
    assert found == ["UPDATE t SET a = {} FROM {}", "DELETE FROM u"]
    writes, reads = usage()
    assert "delivery/ledger.py" in writes["side_effects"] and "ingest/events.py" in writes["events"]
    assert "training/fits.py" in reads["events"]


def test_every_table_has_one_documented_owner() -> None:
    documented = owners()
    assert set(documented) == tables(), "docs/architecture.md 'Who writes each table' must name every table"
    for table, module in documented.items():
        assert (PACKAGE / module).is_file(), f"{table}: owner {module} does not exist"


def test_each_table_is_written_by_its_owner_only() -> None:
    documented = owners()
    writes, _ = usage()
    strays = {table: sorted(modules - {documented[table]}) for table, modules in writes.items()}
    strays = {table: modules for table, modules in strays.items() if modules}
    assert not strays, f"tables written outside their owner module: {strays}"


def test_the_shells_hold_no_sql_against_tables() -> None:
    writes, reads = usage()
    found = {
        table: sorted(m for m in writes[table] | reads[table] if m.startswith(SHELLS))
        for table in tables()
        if any(m.startswith(SHELLS) for m in writes[table] | reads[table])
    }
    assert not found, f"SQL against tables in api/, web/ or cli/ (call the owner's query function): {found}"
