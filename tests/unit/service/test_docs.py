"""The offline /docs page drawn from a hand-made OpenAPI schema."""

import re

from simclr_ad.service.docs import render_docs

SCHEMA = {
    "info": {"title": "svc <b>", "version": "1.2", "description": "scores & verdicts"},
    "paths": {
        "/v1/thing": {
            "post": {
                "summary": "Make a thing",
                "parameters": [
                    {
                        "name": "flag",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "boolean"},
                        "description": "say <yes>",
                    }
                ],
                "requestBody": {
                    "content": {
                        "multipart/form-data": {"schema": {"$ref": "#/components/schemas/Body"}}
                    }
                },
                "responses": {
                    "200": {
                        "description": "made",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Out"}}
                        },
                    },
                    "415": {"description": "not an image"},
                },
            }
        }
    },
    "components": {
        "schemas": {
            "Body": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "format": "binary"},
                    "category": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                },
            },
            "Out": {
                "type": "object",
                "required": ["detail"],
                "properties": {"detail": {"type": "array", "items": {"type": "integer"}}},
            },
        }
    },
}


def _row(page: str, first_cell: str) -> list[str]:
    """The cells of the first table row starting with ``first_cell``."""
    match = re.search(rf"<tr><td>{re.escape(first_cell)}</td>(.*?)</tr>", page)
    assert match, f"no row {first_cell}"
    return re.findall(r"<td>(.*?)</td>", match.group(1))


def test_operations_parameters_bodies_and_responses_are_listed() -> None:
    page = render_docs(SCHEMA)
    assert '<section id="post-v1-thing">' in page and "<code>/v1/thing</code> Make a thing" in page
    assert _row(page, "flag") == ["query", "boolean", "", "say &lt;yes&gt;"]
    assert _row(page, "image") == ["file", "yes", ""]  # the body's fields, drawn in place
    assert _row(page, "category") == ["string | null", "", ""]
    assert _row(page, "detail") == ["array of integer", "yes", ""]
    out = '<a href="#schema-Out">Out</a>'
    assert _row(page, "200") == ["made", f"<code>application/json</code> {out}"]
    assert _row(page, "415") == ["not an image", ""]
    assert '<section id="schema-Out">' in page


def test_text_from_the_schema_is_escaped_and_nothing_is_fetched() -> None:
    page = render_docs(SCHEMA)
    assert "<title>svc &lt;b&gt; 1.2</title>" in page and "scores &amp; verdicts" in page
    assert "<b>" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script" not in page
