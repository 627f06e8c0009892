"""Argument validation shared by the public classes (API.md §12).

Every helper raises ``TypeError`` for a wrong type and ``ValueError`` for a wrong value, with a
message that names the argument.
"""

from __future__ import annotations

import keyword
import os
import posixpath
import re
from collections.abc import Callable
from typing import Any, Literal, TypeVar, overload

INT64_MAX = 2**63 - 1
UINT32_MAX = 2**32 - 1

_T = TypeVar("_T")


def type_name(value: object) -> str:
    return type(value).__name__


@overload
def check_int(name: str, value: object, lo: int, hi: int, *, optional: Literal[False]) -> int: ...
@overload
def check_int(name: str, value: object, lo: int, hi: int, *, optional: bool) -> int | None: ...
def check_int(name: str, value: object, lo: int, hi: int, *, optional: bool) -> int | None:
    """An ``int`` (not ``bool``) in ``lo..hi``, or ``None`` when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        what = "an int or None" if optional else "an int"
        raise TypeError(f"{name} must be {what}, not {type_name(value)}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return int(value)


def check_bool(name: str, value: object, *, optional: bool = False) -> bool | None:
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        what = "a bool or None" if optional else "a bool"
        raise TypeError(f"{name} must be {what}, not {type_name(value)}")
    return value


def check_instance(name: str, value: object, cls: type[_T], cls_name: str) -> _T | None:
    """``None`` or an instance of ``cls``."""
    if value is None or isinstance(value, cls):
        return value
    raise TypeError(f"{name} must be {cls_name} or None, not {type_name(value)}")


def check_callable(name: str, value: object) -> Callable[[str], Any] | None:
    if value is None or callable(value):
        return value
    raise TypeError(f"{name} must be callable or None, not {type_name(value)}")


def check_stdin(stdin: object) -> bytes | None:
    """The stdin of a run: ``None``, or ``str`` (encoded as UTF-8) or bytes-like."""
    if stdin is None:
        return None
    if isinstance(stdin, str):
        try:
            return stdin.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"stdin is not valid Unicode: lone surrogate at position {exc.start}"
            ) from None
    if isinstance(stdin, (bytes, bytearray, memoryview)):
        return bytes(stdin)
    raise TypeError(f"stdin must be str, bytes or None, not {type_name(stdin)}")


def check_code(code: object) -> str:
    """The code of a run: a ``str`` without NUL or lone surrogates."""
    if not isinstance(code, str):
        raise TypeError(f"code must be str, not {type_name(code)}")
    code = str.__str__(code)  # an exact str, even for a str subclass
    if "\0" in code:
        raise ValueError("code contains NUL characters")
    try:
        code.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"code is not valid Unicode: lone surrogate at position {exc.start}"
        ) from None
    return code


def is_valid_unicode(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8, i.e. holds no lone surrogate (``'\\ud800'``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_SPACE = re.compile(r"\s")


def check_host_pattern(pattern: object) -> str:
    if not isinstance(pattern, str):
        raise TypeError(f"host patterns must be str, not {type_name(pattern)}")
    if (
        not pattern
        or len(pattern) > 255
        or "\0" in pattern
        or "/" in pattern
        or _SPACE.search(pattern)  # str.isspace's characters, without a loop per character
    ):
        raise ValueError(f"invalid host pattern '{pattern}'")
    return str.__str__(pattern)


def check_host_patterns(name: str, value: object) -> list[str]:
    """A list or tuple of valid host patterns, returned as a new list."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple of str, not {type_name(value)}")
    return [check_host_pattern(p) for p in value]


def check_identifier(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type_name(value)}")
    if not value.isidentifier() or keyword.iskeyword(value):
        raise ValueError(f"{name} must be an identifier that is not a keyword, got {value!r}")
    return str.__str__(value)


def check_path(name: str, value: object) -> str:
    """A host path: ``str`` or ``os.PathLike[str]`` without NUL."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be str or os.PathLike, not {type_name(value)}")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise TypeError(f"{name} must be a str path, not {type_name(path)}")
    if "\0" in path:
        raise ValueError(f"{name} contains NUL characters")
    return str.__str__(path)


def check_guest_path(name: str, value: object) -> str:
    """An absolute POSIX guest path other than ``/``, returned normalised."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type_name(value)}")
    if "\0" in value:
        raise ValueError(f"{name} contains NUL characters")
    if not value.startswith("/"):
        raise ValueError(f"{name} must be an absolute path, got {value!r}")
    if ".." in value.split("/"):
        raise ValueError(f"{name} must not contain '..', got {value!r}")
    normalised = posixpath.normpath(value)
    if normalised.startswith("//"):  # normpath keeps a leading "//"
        normalised = "/" + normalised.lstrip("/")
    if normalised == "/":
        raise ValueError(f"{name} must not be '/'")
    return normalised


def paths_overlap(a: str, b: str) -> bool:
    """Whether two normalised absolute paths are equal or one contains the other."""
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def check_bytes_like(name: str, value: object) -> memoryview:
    if isinstance(value, str):
        raise TypeError(f"{name} must be a bytes-like object, not str")
    try:
        return memoryview(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be a bytes-like object, not {type_name(value)}") from None
