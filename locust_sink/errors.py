"""The failure text of a request, as Locust's own failure stats write it, cached where that is safe."""

from __future__ import annotations

from typing import Any

from locust.stats import StatsError

_PLAIN = frozenset({str, int, float, bool, type(None)})
try:  # FastHttpUser's errors carry the URL as this object; its repr is made of its text
    from geventhttpclient.url import URL as _URL
except ImportError:  # pragma: no cover - Locust depends on geventhttpclient
    _URL = None
_PLAIN_OR_URL = _PLAIN | {_URL} if _URL is not None else _PLAIN
error_texts: dict[Any, str] = {}  # (type, args, attributes) -> StatsError.parse_error text


def _key_part(values: Any) -> Any:
    """`values` as a hashable key that determines their reprs, or None when they are not plain values."""
    types = set(map(type, values))
    if types <= _PLAIN:
        return tuple(values)
    if types <= _PLAIN_OR_URL:
        return tuple((v if type(v) is not _URL else (_URL, str(v))) for v in values)
    return None


def error_text(exception: Any) -> str:
    """`StatsError.parse_error(exception)`, the text Locust's own failure stats use, cached by what it is made of.

    parse_error builds a repr (FastHttpUser's status errors: several Python-level reprs, a few µs), and every
    failed request pays it on the hot path. An exception whose args and attributes are plain values (str, int,
    ..., and geventhttpclient's URL) of a class from Locust, its HTTP clients or the standard library has a repr
    made of exactly those, so equal ones share the text. Anything else (a response object among the
    attributes, a user's own class) is not cached.
    """
    cls = type(exception)
    module = getattr(cls, "__module__", "")
    if module.startswith(("locust.", "geventhttpclient.", "requests.", "urllib3.", "builtins")):
        try:
            attrs = getattr(exception, "__dict__", None) or {}
            args_key = _key_part(exception.args)
            attrs_key = _key_part(attrs.values()) if args_key is not None else None
            if attrs_key is not None:
                key = (cls, args_key, tuple(attrs), attrs_key)
                text = error_texts.get(key)
                if text is None:
                    if len(error_texts) >= 1000:
                        error_texts.clear()  # bounded: error texts with ever-new values are not worth keeping
                    text = error_texts[key] = StatsError.parse_error(exception)
                return text
        except Exception:  # noqa: BLE001 - odd exception objects: no caching, same text as Locust's
            pass
    return StatsError.parse_error(exception)
