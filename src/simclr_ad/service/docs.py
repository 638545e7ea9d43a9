"""The ``/docs`` page: the service's OpenAPI schema drawn as plain HTML, readable offline.

FastAPI's default ``/docs`` loads Swagger UI from a CDN, so on a machine without internet it is
a blank page. This page is rendered on the server from the same schema (``/openapi.json``), with
its style inline and no script, no font and no link to another host. Every text taken from the
schema is escaped where it is read; the helpers below return HTML.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
  color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; } h3 { font-size: 1rem; }
.method { display: inline-block; min-width: 3.5rem; padding: 0.1rem 0.4rem; border-radius: 4px;
  color: #fff; background: #3573d4; font-size: 0.9rem; text-align: center; }
.method.post { background: #1b7a28; }
section { border-top: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.4rem 0; }
th, td { text-align: left; vertical-align: top; padding: 0.2rem 0.8rem 0.2rem 0; }
th { border-bottom: 1px solid #ccc; }
"""


def render_docs(schema: dict[str, Any]) -> str:
    """One self-contained HTML page describing every operation and named schema of ``schema``."""
    info = schema.get("info", {})
    title = escape(f"{info.get('title', 'API')} {info.get('version', '')}".strip())
    schemas = schema.get("components", {}).get("schemas", {})
    operations = [
        _operation(path, method, operation, schemas)
        for path, methods in schema.get("paths", {}).items()
        for method, operation in methods.items()
    ]
    models = [_model(name, model) for name, model in schemas.items()]
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{title}</title><style>{STYLE}</style></head><body>",
            f"<h1>{title}</h1>",
            f"<p>{escape(info.get('description', ''))}</p>",
            '<p>The same, machine-readable: <a href="openapi.json">openapi.json</a>.</p>',
            *operations,
            '<h2 id="schemas">Schemas</h2>' if models else "",
            *models,
            "</body></html>",
        ]
    )


def _operation(path: str, method: str, operation: dict[str, Any], schemas: dict[str, Any]) -> str:
    parts = [
        f'<section id="{_anchor(method + path)}">',
        f'<h2><span class="method {escape(method)}">{escape(method.upper())}</span> '
        f"<code>{escape(path)}</code> {escape(operation.get('summary', ''))}</h2>",
        f"<p>{escape(operation.get('description', ''))}</p>",
    ]
    parameters = [
        (
            escape(p["name"]),
            escape(p.get("in", "")),
            _type(p.get("schema", {})),
            _yes(p.get("required", False)),
            escape(p.get("description", "")),
        )
        for p in operation.get("parameters", [])
    ]
    if parameters:
        header = ("name", "in", "type", "required", "description")
        parts += ["<h3>Parameters</h3>", _table(header, parameters)]
    for content_type, body in operation.get("requestBody", {}).get("content", {}).items():
        spec = body.get("schema", {})
        parts += [f"<h3>Request body: <code>{escape(content_type)}</code> {_type(spec)}</h3>"]
        parts += [_fields(_resolve(spec, schemas))]
    responses = [
        (escape(status), escape(answer.get("description", "")), _bodies(answer))
        for status, answer in operation.get("responses", {}).items()
    ]
    parts += ["<h3>Responses</h3>", _table(("status", "when", "body"), responses), "</section>"]
    return "\n".join(parts)


def _model(name: str, model: dict[str, Any]) -> str:
    return "\n".join(
        [
            f'<section id="schema-{escape(name)}"><h3>{escape(name)}</h3>',
            f"<p>{escape(model.get('description', ''))}</p>",
            _fields(model),
            "</section>",
        ]
    )


def _fields(model: dict[str, Any]) -> str:
    """The table of an object schema's properties; empty for a schema without any."""
    required = set(model.get("required", []))
    rows = [
        (escape(name), _type(spec), _yes(name in required), escape(spec.get("description", "")))
        for name, spec in model.get("properties", {}).items()
    ]
    return _table(("field", "type", "required", "description"), rows) if rows else ""


def _resolve(spec: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The named schema ``spec`` points to (``{"$ref": "#/components/schemas/NAME"}``) or spec."""
    if "$ref" not in spec:
        return spec
    resolved: dict[str, Any] = schemas.get(spec["$ref"].rsplit("/", 1)[-1], {})
    return resolved


def _bodies(answer: dict[str, Any]) -> str:
    return "<br>".join(
        f"<code>{escape(kind)}</code> {_type(spec.get('schema', {}))}"
        for kind, spec in answer.get("content", {}).items()
    )


def _type(spec: dict[str, Any]) -> str:
    """A schema's type: a link to a named schema, ``a | b`` for alternatives, ``file`` for bytes."""
    if "$ref" in spec:
        name = escape(spec["$ref"].rsplit("/", 1)[-1])
        return f'<a href="#schema-{name}">{name}</a>'
    for key in ("anyOf", "oneOf"):
        if key in spec:
            return " | ".join(_type(option) for option in spec[key])
    if spec.get("format") == "binary" or "contentMediaType" in spec:
        return "file"
    if spec.get("type") == "array":
        return f"array of {_type(spec.get('items', {}))}"
    return escape(str(spec.get("type", "any")))


def _anchor(text: str) -> str:
    """An element id from ``text``: ``post/v1/predict`` -> ``post-v1-predict``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    """An HTML table of cells that are already HTML."""
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
