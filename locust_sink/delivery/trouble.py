"""Problems worth telling the user, each once: logged when first seen, kept for the run document."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..config import redact

log = logging.getLogger("locust_sink")


class TroubleLog:
    """Distinct problem messages of one node, oldest first, with every secret value removed."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self._secrets = list(secrets)
        self.messages: list[str] = []

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def note(self, message: str, error: bool = False, again: bool = False) -> bool:
        """Log `message` (redacted) unless it was noted before (`again`: log it anyway, e.g. a second
        outage); keep it once. Returns whether it is new."""
        message = self.redact(message)
        new = message not in self.messages
        if new:
            self.messages.append(message)
        if new or again:
            (log.error if error else log.warning)("locust-sink: %s", message)
        return new

    def __len__(self) -> int:
        return len(self.messages)
