#!/usr/bin/env python3
"""Fetch Enclave's OpenAPI document, validate it, and check its coverage.

Environment:
  ENCLAVE_URL  e.g. http://127.0.0.1:8080; the document is read from
               ENCLAVE_URL + "/api/v1/openapi.json" (no authentication).

Checks:
  * the document is valid OpenAPI 3.0 or 3.1 (openapi_spec_validator.validate);
  * every expected (method, path) operation is present (path parameters are
    compared by position only: every {...} is treated as {});
  * every operation declares at least one response;
  * components.securitySchemes holds an http/bearer scheme.

Exit status 0 when all pass, 1 when any fails, 2 when ENCLAVE_URL is unset.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request

from openapi_spec_validator import validate

EXPECTED = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/v1/collections"),
    ("POST", "/api/v1/collections"),
    ("GET", "/api/v1/collections/{name}"),
    ("DELETE", "/api/v1/collections/{name}"),
    ("GET", "/api/v1/documents"),
    ("POST", "/api/v1/documents"),
    ("GET", "/api/v1/documents/{id}"),
    ("PUT", "/api/v1/documents/{external_id}"),
    ("DELETE", "/api/v1/documents/{id}"),
    ("POST", "/api/v1/documents/{id}/reindex"),
    ("GET", "/api/v1/documents/{id}/pages"),
    ("GET", "/api/v1/documents/{id}/chunks"),
    ("GET", "/api/v1/documents/{id}/file"),
    ("POST", "/api/v1/search"),
    ("POST", "/api/v1/ask"),
    ("GET", "/api/v1/webhooks/deliveries"),
    ("POST", "/api/v1/webhooks/deliveries/{id}/redeliver"),
    ("GET", "/v1/models"),
    ("POST", "/v1/chat/completions"),
]

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PARAM_RE = re.compile(r"\{[^}]*\}")


def normalize(path: str) -> str:
    return PARAM_RE.sub("{}", path)


def fetch(url: str) -> dict:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        status = resp.status
        ctype = resp.headers.get("Content-Type", "")
        raw = resp.read()
    print(f"    HTTP {status}, Content-Type {ctype!r}, {len(raw)} bytes")
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    return doc


def main() -> int:
    base = os.environ.get("ENCLAVE_URL", "").rstrip("/")
    if not base:
        print("missing environment variable ENCLAVE_URL", file=sys.stderr)
        return 2
    url = base + "/api/v1/openapi.json"
    failures: list[str] = []

    print(f"STEP fetch {url}")
    try:
        spec = fetch(url)
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace")
        print(f"FAIL fetch: expected HTTP 200, got HTTP {e.code}: {body}")
        return 1
    except Exception as e:  # noqa: BLE001
        print(f"FAIL fetch: expected a JSON document, got {type(e).__name__}: {e}")
        return 1
    print("ok   fetch")

    print("STEP validate")
    version = spec.get("openapi")
    print(f"    openapi: {version!r}")
    if not (isinstance(version, str) and re.match(r"^3\.[01]\.\d+", version)):
        print(f"FAIL validate: expected openapi 3.0.x or 3.1.x, got {version!r}")
        failures.append("validate")
    else:
        try:
            validate(spec)
        except Exception as e:  # noqa: BLE001 - validator raises several error types
            print(f"FAIL validate: expected a valid OpenAPI {version} document, got {type(e).__name__}: {e}")
            failures.append("validate")
        else:
            print("ok   validate")

    paths = spec.get("paths") or {}
    operations: dict[tuple[str, str], tuple[str, dict]] = {}
    for path, item in paths.items():
        if not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            op = item.get(method)
            if isinstance(op, dict):
                operations[(method.upper(), normalize(path))] = (path, op)
    print(f"    {len(operations)} operations in the document:")
    for (method, _), (path, _) in sorted(operations.items(), key=lambda kv: (kv[1][0], kv[0][0])):
        print(f"      {method:6} {path}")

    print("STEP expected operations are present")
    missing = [(m, p) for m, p in EXPECTED if (m, normalize(p)) not in operations]
    if missing:
        print(f"FAIL expected operations: {len(missing)} of {len(EXPECTED)} missing:")
        for m, p in missing:
            print(f"      {m:6} {p}")
        failures.append("operations")
    else:
        print(f"ok   all {len(EXPECTED)} expected operations present")

    print("STEP every operation declares a response")
    no_responses = [
        f"{method} {path}"
        for (method, _), (path, op) in sorted(operations.items())
        if not (isinstance(op.get("responses"), dict) and op["responses"])
    ]
    if no_responses:
        print("FAIL responses: expected at least one response per operation; none declared for:")
        for name in no_responses:
            print(f"      {name}")
        failures.append("responses")
    else:
        print("ok   every operation declares at least one response")

    print("STEP bearer security scheme")
    schemes = (spec.get("components") or {}).get("securitySchemes") or {}
    bearer = [
        name
        for name, s in schemes.items()
        if isinstance(s, dict)
        and s.get("type") == "http"
        and str(s.get("scheme", "")).lower() == "bearer"
    ]
    if bearer:
        print(f"ok   bearer scheme(s): {bearer}")
    else:
        print(
            "FAIL security: expected components.securitySchemes to hold a scheme with "
            f"type 'http' and scheme 'bearer', got {json.dumps(schemes)}"
        )
        failures.append("security")

    if failures:
        print(f"FAILED: {', '.join(failures)}")
        return 1
    print("all OpenAPI checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
