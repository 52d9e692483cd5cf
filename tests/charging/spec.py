"""Check JSON against the 3GPP schemas themselves (TS 32.291 Rel-17, vendored in spec/, see its README).

    spec.validate(body, "ChargingDataRequest")                        # TS32291 component
    spec.validate(body, "ProblemDetails", spec.COMMON_DATA)           # TS29571 component
    spec.validate_answer("/chargingdata", r.status_code, r.headers.get("content-type"), r.json())
    spec.validate_notify_request(body)                                # what tongka will POST to notifyUri

The files are OpenAPI 3.0, whose Schema Objects are a dialect of JSON Schema draft 4 (`nullable`,
`discriminator`, formats `int64`, `uuid`, `date-time`), so they are read with
openapi-schema-validator's OAS30Validator; `referencing` resolves the `$ref`s between files
(`TS29571_CommonData.yaml#/components/schemas/Uint32`) from the vendored copies only: a file
that is missing raises `Unresolvable` instead of being fetched.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import yaml
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4

SPEC = Path(__file__).parent / "spec"
CONVERGED_CHARGING = "TS32291_Nchf_ConvergedCharging.yaml"
COMMON_DATA = "TS29571_CommonData.yaml"
_BASE = (SPEC / CONVERGED_CHARGING).as_uri()


@cache
def registry() -> Registry:
    # Each file is a resource at its own file: URI, so a relative "$ref: 'TS29571_CommonData.yaml#/…'"
    # resolves to the file beside it. (PyYAML reads YAML 1.1, where an unquoted YES/NO is a boolean:
    # only the SMS schema DeliveryReportRequested is written so, which tongka does not use.)
    return Registry().with_resources(
        (path.as_uri(), DRAFT4.create_resource(yaml.safe_load(path.read_text(encoding="utf-8"))))
        for path in SPEC.glob("*.yaml")
    )


def _validator_for(schema: dict[str, Any]) -> Any:
    return OAS30Validator(schema, registry=registry(), format_checker=OAS30Validator.FORMAT_CHECKER)


@cache
def _validator(schema: str, file: str) -> Any:
    return _validator_for({"$ref": f"{(SPEC / file).as_uri()}#/components/schemas/{schema}"})


def _describe(error: ValidationError) -> str:
    # anyOf/oneOf say only "not valid under any of the given schemas": say why for each alternative.
    if error.context:
        return " | ".join(_describe(e) for e in error.context)
    return f"{error.json_path}: {error.message}"


def errors(instance: Any, schema: str, file: str = CONVERGED_CHARGING) -> list[str]:
    """Every way `instance` breaks the component schema `schema` of `file`, as "$.json.path: message"."""
    return [_describe(e) for e in _validator(schema, file).iter_errors(instance)]


def validate(instance: Any, schema: str, file: str = CONVERGED_CHARGING) -> None:
    problems = errors(instance, schema, file)
    assert not problems, f"not a valid {schema} ({file}):\n" + "\n".join(problems)


def validate_notify_request(body: Any) -> None:
    """A ChargingNotifyRequest (the CHF's POST to the consumer's notifyUri, e.g. REAUTHORIZATION)."""
    validate(body, "ChargingNotifyRequest")


def validate_answer(path: str, status: int, content_type: str | None, body: Any) -> None:
    """An answer to POST `path` (as the spec's `paths` name it, "/chargingdata/{ChargingDataRef}/update"):
    the status must be one the operation defines, with its media type and body schema."""
    responses = registry().contents(_BASE)["paths"][path]["post"]["responses"]
    assert str(status) in responses, f"POST {path} defines no {status} answer"
    base, response = _BASE, responses[str(status)]
    if "$ref" in response:  # e.g. 500: TS29571_CommonData.yaml#/components/responses/500
        base = urljoin(_BASE, response["$ref"])
        response = registry().resolver().lookup(base).contents
    content = response.get("content")
    if not content:
        assert not body, f"POST {path} {status} has no body in the spec, got {body!r}"
        return
    media_type = (content_type or "").split(";")[0].strip()
    assert media_type in content, (
        f"POST {path} {status} is {' or '.join(content)} in the spec, not {media_type!r}"
    )
    schema = content[media_type]["schema"]
    # 3GPP writes error bodies as oneOf [ProblemDetails, ChargingDataResponse]. ProblemDetails requires no
    # member, so every ChargingDataResponse matches both and a literal oneOf would refuse it: read anyOf.
    alternatives = [{"$ref": urljoin(base, one["$ref"])} for one in schema.get("oneOf", [schema])]
    problems = [_describe(e) for e in _validator_for({"anyOf": alternatives}).iter_errors(body)]
    assert not problems, f"not a valid {status} answer to POST {path}:\n" + "\n".join(problems)
