"""Callback definitions, ``CallbackRegistry`` and schema inference (API.md §7.1-7.2)."""

from __future__ import annotations

import json
import typing
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar, overload

from ._validate import is_valid_unicode, type_name

__all__ = ["CallbackDef", "CallbackRegistry", "infer_schema", "resolve_callbacks"]

_F = TypeVar("_F", bound=Callable[..., Any])

_SIMPLE_TYPES: dict[object, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    None: "null",
    type(None): "null",
}


class CallbackDef(NamedTuple):
    """One validated callback: what the engine is told plus the host function."""

    name: str
    fn: Callable[..., Any]
    description: str
    schema: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"name": self.name, "fn": self.fn, "description": self.description}
        if self.schema is not None:
            item["schema"] = json.loads(json.dumps(self.schema))
        return item

    def to_config(self) -> dict[str, Any]:
        """The ``CallbackSpec`` of the engine configuration (goeryx/config.go)."""
        spec: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.schema is not None:
            spec["schema"] = self.schema
        return spec


def _annotation_schema(annotation: object, globalns: dict[str, Any]) -> dict[str, Any]:
    import inspect  # slow to import: only when a schema is inferred

    if annotation is inspect.Parameter.empty:
        return {}
    if isinstance(annotation, str):
        try:
            annotation = eval(annotation, globalns)  # noqa: S307 - the function's own annotation
        except Exception:
            return {}
    origin = typing.get_origin(annotation)
    if origin in (list, dict):
        annotation = origin
    try:
        kind = _SIMPLE_TYPES.get(annotation)
    except TypeError:  # unhashable annotation object
        return {}
    return {"type": kind} if kind is not None else {}


def infer_schema(fn: Callable[..., Any]) -> dict[str, Any] | None:
    """``{"type": "object", "properties": ..., "required": ...}`` from ``fn``'s signature, or
    ``None`` if the signature cannot be inspected."""
    try:
        import inspect

        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    globalns = getattr(inspect.unwrap(fn), "__globals__", None)
    if not isinstance(globalns, dict):
        globalns = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        properties[param.name] = _annotation_schema(param.annotation, globalns)
        if param.default is param.empty:
            required.append(param.name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _first_doc_line(fn: Callable[..., Any]) -> str:
    doc = getattr(fn, "__doc__", None)
    if not isinstance(doc, str):
        return ""
    doc = doc.strip()
    return doc.splitlines()[0].strip() if doc else ""


def _check_schema(name: str, schema: object) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise ValueError(
            f"invalid schema for callback '{name}': expected a dict, not {type_name(schema)}"
        )
    try:
        # A round trip proves it is JSON and gives the engine a private copy, order kept.
        copied: dict[str, Any] = json.loads(json.dumps(schema, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"invalid schema for callback '{name}': {exc}") from None
    return copied


def make_callback(
    fn: object,
    name: object = None,
    description: object = None,
    schema: object = None,
) -> CallbackDef:
    """Validate one callback definition and fill in the defaults."""
    if not callable(fn):
        raise TypeError(f"callback fn must be callable, not {type_name(fn)}")
    if name is None:
        name = getattr(fn, "__name__", None)
        if not isinstance(name, str):
            raise TypeError(f"callback name is required: {type_name(fn)} object has no __name__")
    if not isinstance(name, str):
        raise TypeError(f"callback name must be str, not {type_name(name)}")
    if not name or "\0" in name:
        raise ValueError(f"invalid callback name {name!r}: must be non-empty and without NUL")
    if not is_valid_unicode(name):
        raise ValueError(
            f"invalid callback name {name!r}: must be valid Unicode (no lone surrogates)"
        )
    if description is None:
        description = _first_doc_line(fn)
    elif not isinstance(description, str):
        raise TypeError(f"callback '{name}' description must be str, not {type_name(description)}")
    if not is_valid_unicode(description):
        raise ValueError(
            f"callback '{name}' description must be valid Unicode (no lone surrogates)"
        )
    checked = infer_schema(fn) if schema is None else _check_schema(name, schema)
    return CallbackDef(str.__str__(name), fn, str.__str__(description), checked)


class CallbackRegistry:
    """An ordered collection of host functions that guest code may ``await``.

    Register with ``@registry.callback``, ``@registry.callback(name=..., ...)`` or
    ``registry.add(fn, ...)``, then pass the registry as ``callbacks=`` to a ``Sandbox`` or
    ``Session`` (it is read at their construction). ``len(registry)`` counts the
    registrations; iterating yields ``{"name", "fn", "description", "schema"}`` dicts in
    registration order (``schema`` is omitted when none could be inferred).

    Each callback's name defaults to ``fn.__name__``, its description to the first line of its
    docstring, and its JSON schema is inferred from the signature: every parameter except
    ``*args``/``**kwargs`` becomes a property in signature order (``str``, ``int``, ``float``,
    ``bool``, ``list``, ``dict`` and ``None`` annotations map to JSON types, anything else to
    ``{}``) and parameters without a default are required.

    Example:
        ```python
        import eryx

        registry = eryx.CallbackRegistry()

        @registry.callback
        def add(a: int, b: int) -> int:
            '''Add two integers.'''
            return a + b

        sandbox = eryx.Sandbox(callbacks=registry)
        print(sandbox.execute("print(await add(2, 3))").stdout)  # 5
        ```
    """

    __slots__ = ("_defs",)

    def __init__(self) -> None:
        self._defs: list[CallbackDef] = []

    @overload
    def callback(self, name: _F, description: None = None, schema: None = None) -> _F: ...
    @overload
    def callback(
        self,
        name: str | None = None,
        description: str | None = None,
        schema: dict[str, Any] | None = None,
    ) -> Callable[[_F], _F]: ...
    def callback(
        self,
        name: Any = None,
        description: str | None = None,
        schema: dict[str, Any] | None = None,
    ) -> Any:
        """Decorator that registers the function and returns it unchanged.

        Use it bare (``@registry.callback``) or called (``@registry.callback(name=...)``).

        Args:
            name: The name the guest uses; a dotted name such as ``"db.query"`` makes the
                callback reachable as ``await db.query(...)``. Default: ``fn.__name__``.
            description: Shown to the guest by ``list_callbacks()``. Default: the first line
                of the function's docstring.
            schema: A JSON-Schema dict of the parameters; replaces the inferred one.

        Returns:
            The decorator (or, in the bare form, the function itself).
        """
        if callable(name) and description is None and schema is None:
            return self.add(name)  # bare @registry.callback

        def decorator(fn: _F) -> _F:
            return self.add(fn, name=name, description=description, schema=schema)

        return decorator

    def add(
        self,
        fn: _F,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        schema: dict[str, Any] | None = None,
    ) -> _F:
        """Register ``fn`` and return it.

        Args:
            fn: A function or other callable, sync or ``async def``. The host calls it as
                ``fn(**kwargs)`` with the guest's arguments.
            name: The name the guest uses. Default: ``fn.__name__``.
            description: Default: the first line of ``fn.__doc__``.
            schema: A JSON-Schema dict of the parameters; replaces the inferred one.

        Returns:
            ``fn`` unchanged.

        Raises:
            TypeError: ``fn`` is not callable, or ``name``/``description`` is not a ``str``.
            ValueError: The name is empty or contains NUL, or the schema is not a
                JSON-serialisable dict.
        """
        self._defs.append(make_callback(fn, name, description, schema))
        return fn

    def __len__(self) -> int:
        return len(self._defs)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter([d.as_dict() for d in self._defs])

    def __repr__(self) -> str:
        return f"CallbackRegistry({[d.name for d in self._defs]!r})"

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError("cannot pickle 'CallbackRegistry' object")

    def __copy__(self) -> Any:
        raise TypeError("cannot copy 'CallbackRegistry' object")

    def __deepcopy__(self, memo: object) -> Any:
        raise TypeError("cannot copy 'CallbackRegistry' object")


CallbackRegistry.__module__ = "eryx"


def _from_dict(item: dict[Any, Any]) -> CallbackDef:
    if "name" not in item:
        raise KeyError("Callback dict missing 'name' key")
    if "fn" not in item:
        raise KeyError("Callback dict missing 'fn' key")
    name = item["name"]
    if not isinstance(name, str):
        raise TypeError(f"callback name must be str, not {type_name(name)}")
    description = item.get("description")
    return make_callback(
        item["fn"], name, "" if description is None else description, item.get("schema")
    )


def resolve_callbacks(callbacks: object) -> list[CallbackDef]:
    """The ``callbacks=`` argument as a list in registration order; a later definition with the
    same name replaces the earlier one (keeping the earlier position)."""
    if callbacks is None:
        return []
    if isinstance(callbacks, CallbackRegistry):
        defs = list(callbacks._defs)
    elif isinstance(callbacks, (list, tuple)):
        defs = []
        for item in callbacks:
            if isinstance(item, CallbackRegistry):
                defs.extend(item._defs)
            elif isinstance(item, dict):
                defs.append(_from_dict(item))
            else:
                raise TypeError("callback list items must be dicts or CallbackRegistry instances")
    else:
        raise TypeError("callbacks must be a CallbackRegistry or a list of callback dicts")
    by_name: dict[str, CallbackDef] = {}
    for d in defs:
        by_name[d.name] = d
    for name in by_name:
        _warn_if_reserved(name)
    return list(by_name.values())


# Guest names a callback cannot take (the guest's builtins, which match the host's closely
# enough for a warning, and the names the guest reserves): such a callback is reachable only
# through invoke().
_RESERVED_EXTRA = frozenset(
    ("invoke", "list_callbacks", "eryx_guest", "asyncio", "json", "math", "re", "os",
     "subprocess", "socket")
)


def _warn_if_reserved(name: str) -> None:
    import builtins

    root = name.split(".", 1)[0]
    if root in _RESERVED_EXTRA or root in dir(builtins):
        import warnings

        warnings.warn(
            f"callback {name!r} is not injected into the guest: {root!r} is a reserved name "
            f"(a builtin or a common module); call it there as await invoke({name!r}, ...)",
            UserWarning,
            stacklevel=4,
        )
