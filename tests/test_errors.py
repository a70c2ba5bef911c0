"""errors.py: the failure text of a request, cached only where that is safe."""

from __future__ import annotations


def test_error_text_is_locusts_parse_error_cached_only_when_safe():
    """The hot path's cached error text equals StatsError.parse_error for Locust's, the HTTP clients' and
    builtin exceptions (first call and cached), and is not cached for objects that are not plain values."""
    import requests
    from locust.contrib.fasthttp import LocustBadStatusCode
    from locust.exception import CatchResponseError
    from locust.stats import StatsError

    from locust_sink import errors as texts

    class Mine(Exception):
        calls = 0

        def __repr__(self) -> str:
            Mine.calls += 1
            return f"Mine#{Mine.calls}"

    response = requests.Response()
    response.status_code = 500
    from geventhttpclient.url import URL

    errors = [
        LocustBadStatusCode(URL("http://h/x"), code=404),  # what FastHttpUser raises for a 404
        LocustBadStatusCode(URL("http://h/x"), code=500),
        LocustBadStatusCode("http://h/x", code=404),
        LocustBadStatusCode("http://h/y", code=500),
        CatchResponseError("404 Client Error: Not Found for url: /missing"),
        ConnectionRefusedError(111, "Connection refused"),
        requests.HTTPError("500 Server Error", response=response),
        ValueError(object()),
        "already a string",
    ]
    texts.error_texts.clear()
    for _ in range(2):
        for error in errors:
            assert texts.error_text(error) == StatsError.parse_error(error), error
    assert texts.error_text(Mine()) == "Mine#1" and texts.error_text(Mine()) == "Mine#2"  # not cached
    cached_types = {key[0] for key in texts.error_texts}
    assert cached_types == {LocustBadStatusCode, CatchResponseError, ConnectionRefusedError}
    assert len(texts.error_texts) == 6
