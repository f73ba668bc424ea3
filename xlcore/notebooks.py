"""What a reader sees of an executed chapter: the parameters cell with the values it ran with,
no injected-parameters cell, no log streams.

Papermill adds a cell of injected parameters after the chapter's ``parameters`` cell; a reader
of the book should see one parameters cell, so the injected values are written into it (each
line keeps its comment) and the injected cell is dropped. Text written to stderr (library
warnings, progress lines) is a log, not a result: it is removed from the outputs.
"""

from __future__ import annotations

import ast
import json

INJECTED = "injected-parameters"
PARAMETERS = "parameters"
# The builder's runs directory is a path of its machine: the cell keeps its default ("").
KEPT_DEFAULTS = frozenset({"runs"})


def reader_view(nb) -> None:
    """Rewrite executed notebook ``nb`` (nbformat, in place) for the book's readers."""
    injected = [c for c in nb.cells if INJECTED in c.get("metadata", {}).get("tags", [])]
    target = next((c for c in nb.cells if PARAMETERS in c.metadata.get("tags", [])), None)
    if injected and target is not None:
        values = {k: v for k, v in _values(injected[0].source).items() if k not in KEPT_DEFAULTS}
        target.source = with_values(target.source, values)
        nb.cells = [c for c in nb.cells if c not in injected]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not _is_log(o)]


def with_values(source: str, values: dict[str, object]) -> str:
    """``source`` (a parameters cell) with each ``name = value`` assignment given its new
    value (the comment after it kept); a name the cell lacks is added at the end."""
    lines = source.splitlines()
    seen = set()
    for node in reversed(ast.parse(source).body):  # bottom-up: earlier line numbers stay valid
        name = _assigned_name(node)
        if name not in values:
            continue
        seen.add(name)
        first, last = node.lineno - 1, node.end_lineno - 1
        rest = lines[last].encode()[node.end_col_offset :].decode()  # "  # comment"; byte offset
        lines[first : last + 1] = [f"{name} = {_literal(values[name])}{rest}"]
    lines += [f"{name} = {_literal(v)}" for name, v in values.items() if name not in seen]
    return "\n".join(lines)


def _assigned_name(node: ast.stmt) -> str | None:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        if isinstance(node.targets[0], ast.Name):
            return node.targets[0].id
    return None


def _literal(value: object) -> str:
    """A Python literal in the chapters' style (double-quoted strings)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


def _values(source: str) -> dict[str, object]:
    """The literal assignments of papermill's injected cell."""
    out = {}
    for node in ast.parse(source).body:
        name = _assigned_name(node)
        if name is not None:
            out[name] = ast.literal_eval(node.value)
    return out


def _is_log(output) -> bool:
    return output.get("output_type") == "stream" and output.get("name") == "stderr"
