"""``GET /swagger.json``: the service's API description.

As the Azure ML inference server does:

* a ``swagger.json`` (or ``swagger2.json``, ``swagger3.json``,
  ``swagger3.1.json``) found in the app root or beside the entry script
  is served as the user wrote it;
* otherwise the document is generated: when ``run`` is decorated with
  inference-schema, ``ServiceInput`` / ``ServiceOutput`` are its input
  and output schemas and only the versions all its parameter types
  support are offered; an undecorated ``run`` gets open object schemas.

``?version=`` picks ``2`` (default), ``3`` or ``3.1``; an unknown or
unsupported version is a 404 with a message. ``SERVICE_NAME``,
``SERVICE_VERSION`` and ``SERVICE_PATH_PREFIX`` fill the document's
title, version and paths. Documents are built once, at start.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from modelform.runtime.script import EntryScript, is_schema_decorated

#: Accepted ``?version=`` values and the document each names.
VERSIONS = {"2": "2", "2.0": "2", "3": "3", "3.0": "3", "3.1": "3.1"}
_USER_FILES = {
    "2": ("swagger.json", "swagger2.json"),
    "3": ("swagger3.json",),
    "3.1": ("swagger3.1.json",),
}
_OPEN_SCHEMA: dict[str, Any] = {"type": "object", "example": {}}
_HEALTH_TEXT = "Simple health check endpoint to ensure the service is up at any given point."
_INPUT_TEXT = "The input payload for executing the real-time machine learning service."
_ERROR_SCHEMA = {"type": "object", "properties": {"message": {"type": "string"}}}


class SwaggerDocs:
    def __init__(self, documents: Mapping[str, bytes]) -> None:
        self.documents = dict(documents)

    def answer(self, version: str | None) -> tuple[int, bytes]:
        """(200, document) or (404, JSON error) for a ``?version=`` value."""
        supported = ", ".join(sorted(self.documents))
        wanted = VERSIONS.get(version or "2")
        if wanted is None:
            message = (
                f"Swagger version [{version}] is not valid. Supported versions: [{supported}]."
            )
            return 404, orjson.dumps({"message": message})
        document = self.documents.get(wanted)
        if document is None:
            message = (
                f"Swagger version [{version}] is not supported for the scoring script. "
                f"Supported swagger versions: [{supported}]."
            )
            return 404, orjson.dumps({"message": message})
        return 200, document


def build_swagger(
    script: EntryScript, roots: Iterable[Path], environ: Mapping[str, str] | None = None
) -> SwaggerDocs:
    env = os.environ if environ is None else environ
    roots = list(dict.fromkeys(roots))
    schemas = _schemas(script)
    documents: dict[str, bytes] = {}
    for version in ("2", "3", "3.1"):
        user_file = _find_user_file(version, roots)
        if user_file is not None:
            documents[version] = user_file.read_bytes()
        elif schemas is not None and version in schemas[2]:
            documents[version] = orjson.dumps(_generate(version, schemas[0], schemas[1], env))
    return SwaggerDocs(documents)


def _find_user_file(version: str, roots: list[Path]) -> Path | None:
    for root in roots:
        for name in _USER_FILES[version]:
            candidate = root / name
            if candidate.is_file():
                try:
                    json.loads(candidate.read_bytes())
                except ValueError:
                    continue  # not JSON: ignore it rather than serve garbage
                return candidate
    return None


def _schemas(script: EntryScript) -> tuple[Any, Any, set[str]] | None:
    if not is_schema_decorated(script.run):
        return _OPEN_SCHEMA, _OPEN_SCHEMA, {"2", "3", "3.1"}
    schema_util = sys.modules["inference_schema.schema_util"]
    try:
        inputs = schema_util.get_input_schema(script.run)
        outputs = schema_util.get_output_schema(script.run)
        versions = {
            VERSIONS[v] for v in schema_util.get_supported_versions(script.run) if v in VERSIONS
        }
    except Exception:
        return None
    return inputs, outputs, versions


def _generate(version: str, inputs: Any, outputs: Any, env: Mapping[str, str]) -> dict[str, Any]:
    title = env.get("SERVICE_NAME", "ML service")
    info = {
        "title": title,
        "description": f"API specification for the Azure Machine Learning service {title}",
        "version": env.get("SERVICE_VERSION", "1.0"),
    }
    raw_prefix = env.get("SERVICE_PATH_PREFIX", "").strip("/")
    prefix = f"/{raw_prefix}" if raw_prefix else ""
    if version == "2":
        return _swagger2(info, prefix, inputs, outputs)
    document = _openapi3(info, prefix, inputs, outputs)
    document["openapi"] = "3.1.0" if version == "3.1" else "3.0.1"
    return document


def _swagger2(info: dict[str, Any], prefix: str, inputs: Any, outputs: Any) -> dict[str, Any]:
    error = {
        "description": "The service failed to execute due to an error.",
        "schema": {"$ref": "#/definitions/ErrorResponse"},
    }
    return {
        "swagger": "2.0",
        "info": info,
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            "Bearer": {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "description": "For example: Bearer abc123",
            }
        },
        "paths": {
            f"{prefix}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": _HEALTH_TEXT,
                    "responses": {
                        "200": {
                            "description": "The service is up: 'Healthy'.",
                            "schema": {"type": "string"},
                        },
                        "default": error,
                    },
                }
            },
            f"{prefix}/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": "Run web service's model and get the prediction output",
                    "security": [{"Bearer": []}],
                    "parameters": [
                        {
                            "name": "serviceInputPayload",
                            "in": "body",
                            "description": _INPUT_TEXT,
                            "schema": {"$ref": "#/definitions/ServiceInput"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The prediction.",
                            "schema": {"$ref": "#/definitions/ServiceOutput"},
                        },
                        "default": error,
                    },
                }
            },
            f"{prefix}/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "Get the Swagger specification.",
                    "parameters": [
                        {
                            "name": "version",
                            "in": "query",
                            "required": False,
                            "type": "string",
                            "enum": ["2", "3", "3.1"],
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The Swagger specification.",
                            "schema": {"type": "string"},
                        },
                        "default": error,
                    },
                }
            },
        },
        "definitions": {
            "ServiceInput": inputs,
            "ServiceOutput": outputs,
            "ErrorResponse": _ERROR_SCHEMA,
        },
    }


def _openapi3(info: dict[str, Any], prefix: str, inputs: Any, outputs: Any) -> dict[str, Any]:
    def json_content(ref: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}

    error = {
        "description": "The service failed to execute due to an error.",
        "content": json_content("ErrorResponse"),
    }
    return {
        "openapi": "3.0.1",
        "info": info,
        "paths": {
            f"{prefix}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": _HEALTH_TEXT,
                    "responses": {
                        "200": {
                            "description": "The service is up: 'Healthy'.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "default": error,
                    },
                }
            },
            f"{prefix}/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": "Run web service's model and get the prediction output",
                    "security": [{"Bearer": []}],
                    "requestBody": {
                        "description": _INPUT_TEXT,
                        "content": json_content("ServiceInput"),
                    },
                    "responses": {
                        "200": {
                            "description": "The prediction.",
                            "content": json_content("ServiceOutput"),
                        },
                        "default": error,
                    },
                }
            },
            f"{prefix}/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "Get the Swagger specification.",
                    "parameters": [
                        {
                            "name": "version",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["2", "3", "3.1"]},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The Swagger specification.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "default": error,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "Bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "For example: Bearer abc123",
                }
            },
            "schemas": {
                "ServiceInput": inputs,
                "ServiceOutput": outputs,
                "ErrorResponse": _ERROR_SCHEMA,
            },
        },
    }
