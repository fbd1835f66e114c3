"""Helpers for the static deploy checks: compose interpolation, a compose schema subset.

Docker and a cluster are not available here, so the files in deploy/ are validated the way
their tools would read them: compose variables interpolated like ``docker compose config``
does, service keys checked against the Compose Specification's service fields (a subset
written for the keys this project uses, with unknown keys rejected so a typo fails).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariableError(ValueError):
    """A ``${VAR:?message}`` variable is unset (compose refuses to start)."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose-style interpolation of every string in a parsed compose document."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("named")
        op, arg = m.group("op") or "", m.group("arg") or ""
        current = env.get(name)
        unset_or_empty = current is None or (op.startswith(":") and current == "")
        if op in (":-", "-"):
            return arg if unset_or_empty else current
        if op in (":?", "?"):
            if unset_or_empty:
                raise MissingVariableError(f"{name}: required variable is not set ({arg})")
            return current
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return current or ""

    return _VAR.sub(sub, value)


def variables(value: Any) -> set[str]:
    """Every variable name a compose document references."""
    if isinstance(value, dict):
        return set().union(*(variables(v) for v in value.values()), set())
    if isinstance(value, list):
        return set().union(*(variables(v) for v in value), set())
    if not isinstance(value, str):
        return set()
    return {m.group("braced") or m.group("named") for m in _VAR.finditer(value)} - {None}


_DURATION = {"type": "string", "pattern": r"^(\d+(\.\d+)?(us|ms|s|m|h))+$"}
_STR_OR_LIST = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_ENV = {
    "oneOf": [
        {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        },
        {"type": "array", "items": {"type": "string"}},
    ]
}

#: The Compose Specification's fields for the parts this project uses; unknown keys fail.
COMPOSE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["services"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"},
        "services": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": "^[a-zA-Z0-9._-]+$"},
            "additionalProperties": {"$ref": "#/$defs/service"},
        },
        "volumes": {
            "type": "object",
            "additionalProperties": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "properties": {
                            "driver": {"type": "string"},
                            "driver_opts": {"type": "object"},
                            "external": {"type": "boolean"},
                            "name": {"type": "string"},
                            "labels": _ENV,
                        },
                        "additionalProperties": False,
                    },
                ]
            },
        },
        "networks": {"type": "object"},
        "secrets": {"type": "object"},
        "configs": {"type": "object"},
    },
    "patternProperties": {"^x-": {}},
    "additionalProperties": False,
    "$defs": {
        "service": {
            "type": "object",
            "properties": {
                "image": {"type": "string", "minLength": 1},
                "build": {
                    "oneOf": [
                        {"type": "string"},
                        {
                            "type": "object",
                            "properties": {
                                "context": {"type": "string"},
                                "dockerfile": {"type": "string"},
                                "args": _ENV,
                                "target": {"type": "string"},
                            },
                            "additionalProperties": False,
                        },
                    ]
                },
                "command": _STR_OR_LIST,
                "entrypoint": _STR_OR_LIST,
                "environment": _ENV,
                "env_file": _STR_OR_LIST,
                "ports": {
                    "type": "array",
                    "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                },
                "expose": {"type": "array"},
                "volumes": {"type": "array", "items": {"type": "string"}},
                "depends_on": {
                    "oneOf": [
                        {"type": "array", "items": {"type": "string"}},
                        {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "required": ["condition"],
                                "properties": {
                                    "condition": {
                                        "enum": [
                                            "service_started",
                                            "service_healthy",
                                            "service_completed_successfully",
                                        ]
                                    },
                                    "restart": {"type": "boolean"},
                                    "required": {"type": "boolean"},
                                },
                                "additionalProperties": False,
                            },
                        },
                    ]
                },
                "healthcheck": {
                    "type": "object",
                    "properties": {
                        "test": _STR_OR_LIST,
                        "interval": _DURATION,
                        "timeout": _DURATION,
                        "start_period": _DURATION,
                        "start_interval": _DURATION,
                        "retries": {"type": "integer", "minimum": 0},
                        "disable": {"type": "boolean"},
                    },
                    "additionalProperties": False,
                },
                "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
                "user": {"type": "string"},
                "working_dir": {"type": "string"},
                "labels": _ENV,
                "networks": {"oneOf": [{"type": "array"}, {"type": "object"}]},
                "deploy": {"type": "object"},
                "stop_grace_period": _DURATION,
                "read_only": {"type": "boolean"},
            },
            "additionalProperties": False,
            "anyOf": [{"required": ["image"]}, {"required": ["build"]}],
        }
    },
}
