"""httpbin as the system under test of the locust-sink tests and demo.

httpbin 0.10.2's /bytes/N and /range/N bodies are bytearrays, which gunicorn rejects after sending the
headers (the client then sees a 200 with a cut body). This WSGI wrapper hands gunicorn bytes instead.
Run it from the SUT's own virtualenv: gunicorn --pythonpath scripts sut_app:app
"""

from httpbin import app as httpbin_app


class _Body:
    def __init__(self, body):
        self._body = body

    def __iter__(self):
        for chunk in self._body:
            yield bytes(chunk) if isinstance(chunk, bytearray) else chunk

    def close(self):
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


def app(environ, start_response):
    return _Body(httpbin_app(environ, start_response))
