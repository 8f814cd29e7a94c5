"""Small HTTP calls to the Serve app and the Ray job API; every failure becomes a (status 0, reason) answer."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status (0 if nothing answered), content type, body, and the error text if any."""

    status: int
    content_type: str
    body: bytes
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def request(url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
            timeout: float = 5.0) -> Answer:
    """GET (or POST ``body`` as JSON) ``url``; never raises for network or HTTP errors."""
    data = json.dumps(body).encode() if body is not None else None
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    call = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET", headers=all_headers)
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:
            return Answer(response.status, response.headers.get("Content-Type", ""), response.read())
    except urllib.error.HTTPError as error:
        payload = error.read()
        return Answer(error.code, error.headers.get("Content-Type", ""), payload, payload.decode(errors="replace")[:500])
    except (urllib.error.URLError, OSError, ValueError) as error:
        return Answer(0, "", b"", str(getattr(error, "reason", error)))
