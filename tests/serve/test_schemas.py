"""The published OpenAPI contract: every status a route can answer is declared with the body Serve sends."""

from __future__ import annotations

from serve.app import api
from serve.schemas import ERRORS


def test_every_route_declares_each_status_it_answers_with_its_body() -> None:
    spec = api.openapi()
    for path in ("/sample", "/path"):
        responses = spec["paths"][path]["post"]["responses"]
        assert set(responses) == {"200", *map(str, ERRORS)}, (path, sorted(responses))
        for status in ERRORS:  # the 422 too: the app's one-message body, not FastAPI's list of errors
            schema = responses[str(status)]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status, schema)
        assert "Retry-After" in responses["503"]["headers"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, model in (("/healthz", "Health"), ("/models", "HostedModelInfo")):
        schema = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert model in str(schema), (path, schema)
