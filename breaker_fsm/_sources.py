"""Reading a policy from a file or the environment, with errors that name their source.

:meth:`BreakerPolicy.from_file <breaker_fsm.BreakerPolicy.from_file>` and
:meth:`~breaker_fsm.BreakerPolicy.from_env` are thin: they read here, then validate with
:func:`validate_titled`, whose errors carry the file's name or the variable's.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from .exceptions import PolicyFileError

__all__ = [
    "guess_section",
    "read_policy_env",
    "read_policy_file",
    "validate_titled",
    "validation_error",
]

M = TypeVar("M", bound=BaseModel)

#: What ``from_env`` reads as ``None`` (stripped, any case).
_NONE_WORDS = frozenset({"", "none", "null"})

#: The words ``from_env`` reads as ``True`` or ``False`` for a field that is one of them.
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "on": True}
_BOOL_WORDS |= {"false": False, "0": False, "no": False, "off": False}


def validation_error(
    field: str, value: object, message: str, title: str = "BreakerPolicy"
) -> ValidationError:
    """A pydantic error for ``field``, as a validator of the model would raise it."""
    return ValidationError.from_exception_data(
        title,
        [{"type": "value_error", "loc": (field,), "input": value, "ctx": {"error": message}}],
    )


def validate_titled(
    cls: type[M], data: object, title: str, sources: Mapping[str, str] | None = None
) -> M:
    """Validate ``data``; errors are titled ``title``, fields renamed by ``sources``."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        renamed = sources or {}
        for error in errors:
            field = error["loc"][0] if error["loc"] else None
            if isinstance(field, str) and field in renamed:
                error["loc"] = (renamed[field], *error["loc"][1:])
        raise ValidationError.from_exception_data(
            title,
            errors,  # type: ignore[arg-type]  # same error dicts
        ) from None


def read_policy_file(path: str | os.PathLike[str], section: str | None) -> tuple[object, str]:
    """The data of a ``.json`` or ``.toml`` policy file (``section``'s table), and a title."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise PolicyFileError(str(file), "unknown policy file type: use .json or .toml")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyFileError(str(file), "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(str(file), f"cannot read: {exc}") from None
    data: object
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyFileError(str(file), f"invalid JSON: {exc.msg}", line=exc.lineno) from None
        except (RecursionError, ValueError) as exc:  # too deep, or an int too long
            raise PolicyFileError(str(file), f"cannot parse: {exc}") from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"line (\d+)", str(exc))
            raise PolicyFileError(
                str(file), f"invalid TOML: {exc}", line=int(found[1]) if found else None
            ) from None
        except (RecursionError, ValueError) as exc:  # too deep, or an int too long
            raise PolicyFileError(str(file), f"cannot parse: {exc}") from None
    for key in section.split(".") if section else ():
        if not isinstance(data, dict) or key not in data:
            raise PolicyFileError(str(file), f"no [{section}] table")
        data = data[key]
    return data, f"BreakerPolicy from {file}"


def guess_section(exc: ValidationError) -> str | None:
    """The table a policy file read whole seems to hold the policy in, from its errors.

    A table holding a ``breaker_fsm`` table (``[tool.breaker_fsm]`` in a pyproject.toml)
    is the likeliest; else the first table the policy does not know.
    """
    tables = [
        (str(error["loc"][0]), error["input"])
        for error in exc.errors(include_url=False)
        if error["type"] == "extra_forbidden"
        and len(error["loc"]) == 1
        and isinstance(error["input"], dict)
    ]
    ours = [f"{name}.breaker_fsm" for name, value in tables if "breaker_fsm" in value]
    guesses = ours or [name for name, _ in tables]
    return guesses[0] if guesses else None


@functools.cache
def _kinds(cls: type[BaseModel]) -> tuple[frozenset[str], frozenset[str]]:
    """The fields of ``cls`` that may be ``None``, and those that are ``True`` or ``False``."""
    fields = cls.model_fields.items()
    optional = frozenset(
        name for name, field in fields if type(None) in typing.get_args(field.annotation)
    )
    return optional, frozenset(name for name, field in fields if field.annotation is bool)


def read_policy_env(
    cls: type[BaseModel], prefix: str, environ: Mapping[str, str] | None
) -> tuple[dict[str, object], dict[str, str], str]:
    """The fields set by variables named ``prefix*``, the variable of each, and a title."""
    if not isinstance(prefix, str):
        raise TypeError(f"from_env() prefix must be a str, got {type(prefix).__name__}")
    title = f"BreakerPolicy from environment ({prefix}*)"
    optional, bools = _kinds(cls)
    env = os.environ if environ is None else environ
    data: dict[str, object] = {}
    variables: dict[str, str] = {}  # field -> the variable that set it
    for key, raw in env.items():
        if not key.upper().startswith(prefix.upper()):
            continue
        name = key[len(prefix) :].lower()
        variables[name] = key
        word = raw.strip().lower()
        if word in _NONE_WORDS:
            if name in optional:
                data[name] = None
                continue
            if word and name in cls.model_fields:  # "" is an empty list of exceptions
                raise validation_error(
                    key,
                    raw,
                    f"{name} cannot be none (only {', '.join(sorted(optional))} can): write "
                    f"a value, or leave {key} unset for the default "
                    f"({cls.model_fields[name].default!r})",
                    title,
                )
        if name in bools and word in _BOOL_WORDS:
            data[name] = _BOOL_WORDS[word]
            continue
        try:
            data[name] = json.loads(raw)
        except ValueError:
            data[name] = raw
    return data, variables, title
