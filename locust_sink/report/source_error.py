"""The one error a report source raises: a source that cannot be read, said in one line."""


class SourceError(Exception):
    """A source that cannot be read (missing folder, no run, unreachable or refusing cluster): one clear line."""
