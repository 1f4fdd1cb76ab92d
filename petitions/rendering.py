"""Letter bodies: Markdown with raw HTML off, then sanitized on an explicit allow list."""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

_markdown = MarkdownIt(
    "commonmark", {"html": False, "linkify": False, "typographer": False}
).enable(["table", "strikethrough"])

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}


#: bodies up to this long are kept rendered (a published letter's text never changes)
CACHED_SOURCE_MAX = 64 * 1024


def render_markdown(source: str) -> Markup:
    """Safe HTML for a letter body: no raw HTML, no images, only http(s) and mailto links.

    The same text always gives the same HTML, so the last few are kept, by their text.
    """
    if len(source) <= CACHED_SOURCE_MAX:
        return _render_cached(source)
    return _render(source)


@lru_cache(maxsize=128)
def _render_cached(source: str) -> Markup:
    return _render(source)


def _render(source: str) -> Markup:
    html = _markdown.render(source)
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener noreferrer",
    )
    return Markup(clean)  # noqa: S704 - nh3 has just sanitized it on an allow list
