"""One way to turn JSON/TOML dicts into frozen config dataclasses, with typed errors.

Configs (preprocessing specs, training configs, bundle manifests) are frozen dataclasses. Instead of
validating keys and types by hand in each of them, :func:`from_dict` checks unknown and missing keys
and coerces simple field types; each dataclass adds its own value checks in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, TypeVar

from cxr_edge.errors import SpecError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], *, what: str | None = None) -> T:
    """Builds the frozen dataclass ``cls`` from ``data``.

    Args:
        cls: A dataclass type.
        data: Field values (e.g. parsed JSON). Unknown keys are errors; missing keys take defaults.
        what: Name used in error messages (defaults to the class name).

    Returns:
        The dataclass instance.

    Raises:
        SpecError: Unknown keys, missing required keys, or values of the wrong type.
    """
    what = what or cls.__name__
    if not isinstance(data, dict):
        raise SpecError(f"invalid {what}", expected="a JSON object", received=type(data).__name__)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SpecError(
            f"unknown keys in {what}", expected=f"keys among {sorted(fields)}", received=str(unknown)
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{what}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # missing required fields
        raise SpecError(f"incomplete {what}", expected="all required keys", received=str(exc)) from exc


def to_dict(obj: Any) -> Any:
    """Turns a (nested) config dataclass into JSON-ready data (tuples become lists, enums values)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: the error about X says more than "not X or None"
            return _coerce(value, options[0], where)
        for arg in options:
            try:
                return _coerce(value, arg, where)
            except SpecError:
                continue
        raise SpecError(f"invalid value for {where}", expected=str(hint), received=repr(value))
    if origin is typing.Literal:
        if value not in args:
            raise SpecError(
                f"invalid value for {where}", expected=f"one of {list(args)}", received=repr(value)
            )
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise SpecError(f"invalid value for {where}", expected="a list", received=repr(value))
        if len(args) == 2 and args[1] is Ellipsis:
            # Hot path: heat-map weight matrices hold thousands of numbers (bool is not int here).
            if args[0] is float and all(type(v) is float or type(v) is int for v in value):
                try:
                    return tuple(float(v) for v in value)
                except OverflowError:  # an integer beyond any float (found by fuzzing the manifest)
                    pass  # the element-wise path below names the value
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise SpecError(f"invalid value for {where}", expected=f"{len(args)} items", received=repr(value))
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise SpecError(f"invalid value for {where}", expected="an object", received=repr(value))
        if len(args) == 2:
            return {k: _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, what=where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError as exc:
            raise SpecError(
                f"invalid value for {where}",
                expected=f"one of {[m.value for m in hint]}",
                received=repr(value),
            ) from exc
    if hint is bool:
        if not isinstance(value, bool):
            raise SpecError(f"invalid value for {where}", expected="true or false", received=repr(value))
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"invalid value for {where}", expected="an integer", received=repr(value))
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"invalid value for {where}", expected="a number", received=repr(value))
        try:
            return float(value)
        except OverflowError as exc:
            raise SpecError(
                f"invalid value for {where}",
                expected="a number a float can hold",
                received=f"an integer of {len(str(abs(value)))} digits",
            ) from exc
    if hint is str:
        if not isinstance(value, str):
            raise SpecError(f"invalid value for {where}", expected="a string", received=repr(value))
        return value
    return value


def json_schema(cls: type, *, title: str | None = None) -> dict:
    """A JSON Schema (draft 2020-12) describing the JSON form of a config dataclass.

    It is derived from the dataclass's type hints, so the schema and the parser cannot drift apart:
    unknown keys are refused, fields without defaults are required, enums and literals become ``enum``.
    """
    schema = _schema_for(cls)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    if title:
        schema["title"] = title
    return schema


def _schema_for(hint: Any) -> dict:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema_for(a) for a in args]}
    if hint is type(None):
        return {"type": "null"}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema_for(args[0])}
        return {
            "type": "array",
            "prefixItems": [_schema_for(a) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin is dict or hint is dict:
        value = _schema_for(args[1]) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": value}
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        fields = [f for f in dataclasses.fields(hint) if f.init]
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        return {
            "type": "object",
            "properties": {f.name: _schema_for(hints[f.name]) for f in fields},
            "required": required,
            "additionalProperties": False,
        }
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [m.value for m in hint]}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint in simple:
        return {"type": simple[hint]}
    return {}
