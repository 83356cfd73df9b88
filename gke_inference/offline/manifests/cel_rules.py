"""CEL validation rules (``x-kubernetes-validations``) of custom resource schemas, checked offline.

A CRD's schema may carry CEL rules at any node; the API server evaluates each
one with ``self`` bound to the value at that node and rejects the object when
a rule is false (or fails to evaluate). :class:`SchemaRules` does the same
with the pure-Python evaluator cel-python (``celpy``), following the API
server (k8s.io/apiextensions-apiserver, Kubernetes 1.33) where celpy differs:

* **Where rules run**: the object is walked alongside its schema
  (``properties``, ``additionalProperties``, ``items``; local ``$ref``s and
  ``allOf`` members apply to the same value). References into the Kubernetes
  definitions are not walked: built-in types carry no CEL rules there.
  A rule anywhere else (under ``anyOf``, ``not``, ``if``, an unused ``$defs``
  entry...) would never run: :meth:`SchemaRules.compile_errors` reports it, so
  a schema cannot hide a rule there.
* **Defaults first**: the API server defaults an object before validating it,
  so each ``default`` of the schema is filled in (on a copy) before the rules
  read it (a listener's ``tls.mode``, a backendRef's ``kind``...).
* **Values**: absent fields are absent (``self.x`` on a missing ``x`` is the
  error "no such key: x", reported like the API server reports it, so rules
  guard optional fields with ``has()``); ``format: duration`` strings are
  durations (parsed like strfmt.ParseDuration: Go durations, or ``1d``,
  ``2w``); ``format: date``/``date-time`` are timestamps; ``type: number`` is
  a double. Reserved words used as field names may be written escaped
  (``self.__namespace__``) or plain (``self.namespace``, accepted since 1.32).
* **Semantics celpy 0.5.0 gets wrong**: an error in a ``?:`` condition is that
  error; ``has(e.f)`` is an error when ``e`` is; ``exists_one``/``filter``/
  ``map`` propagate errors from the predicate instead of counting them as
  true; ``all``/``exists`` follow the spec (false/true wins over errors);
  ``==``/``!=`` across types are false/true (heterogeneous equality) and
  numbers compare across int/uint/double; ``||``/``&&`` of two errors is the
  first error; ``duration(string)`` parses Go durations only.
* **Kubernetes libraries**: the string extension (``split``, ``join``,
  ``lowerAscii``, ``upperAscii``, ``replace``, ``trim``, ``indexOf``,
  ``lastIndexOf``, ``substring``, ``charAt``, ``reverse``, ``format``), the
  list library (``isSorted``, ``sum``, ``min``, ``max``, ``indexOf``,
  ``lastIndexOf``), the regex library (``find``, ``findAll``) and
  ``isURL`` (Go's ``url.ParseRequestURI``: an absolute URI or an absolute
  path). Anything else (``quantity``, ``ip``, ``cidr``, ``url()``, sets,
  authorizer...) is *not* available: a rule using it does not compile here.
* **Transition rules** (``oldSelf``) compare an update with the stored object;
  offline there is no stored object, so they are skipped
  (:data:`TRANSITION_RULE`). Nothing else is skipped.

Messages follow the API server: a false rule reports its ``messageExpression``
(when it evaluates to a string), else its ``message``, else
``failed rule: <rule>``; a rule that fails to evaluate reports
``<error> evaluating rule: <message or rule>``. A rule that does not compile
is reported as a problem at its node, never passed.

Over 500 lines because it is one evaluation environment: the schema walk, the
conversion of values, the corrections to celpy's interpreter and the
Kubernetes function libraries together make "what the API server would say";
each part relies on the others' conventions (absent fields, error values,
escaped names), and parity with the API server is reviewed against one list,
the one above.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, cast

import celpy
import lark
from celpy import celtypes
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError, Evaluator

#: The schema keyword holding a node's CEL rules.
RULES = "x-kubernetes-validations"

#: Why a rule that mentions ``oldSelf`` is not evaluated offline.
TRANSITION_RULE = (
    "transition rule (mentions oldSelf): it compares an update with the stored object, "
    "which offline validation does not have"
)

#: Keys a rule may have (apiextensions.k8s.io/v1 ValidationRule).
RULE_KEYS = frozenset(
    {"rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"}
)

#: Resolves an absolute ``$id`` (the part of a ``$ref`` before ``#``) to its document.
ExternalDocuments = Callable[[str], Mapping[str, Any] | None]

_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


class CelRuleError(ValueError):
    """A rule that cannot be evaluated here (syntax, unknown function, unknown field...)."""


# --------------------------------------------------------------------------
# Compiling


_RESERVED = frozenset(
    {
        "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
        "function", "if", "import", "let", "loop", "package", "namespace", "return", "var",
        "void", "while",
    }
)  # fmt: skip
_ESCAPES = {"underscores": "__", "dot": ".", "dash": "-", "slash": "/"}
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
#: Type names a rule may mention (``type(x) == string``).
_TYPE_IDENTS = frozenset(
    {"bool", "bytes", "double", "duration", "int", "list", "map", "null_type", "string",
     "timestamp", "uint", "type", "dyn"}
)  # fmt: skip


def unescape(name: str) -> str:
    """A CEL field name as the property it stands for (``__namespace__`` -> ``namespace``)."""
    if name.startswith("__") and name.endswith("__") and name[2:-2] in _RESERVED:
        return name[2:-2]
    return re.sub(r"__(underscores|dot|dash|slash)__", lambda m: _ESCAPES[m.group(1)], name)


@dataclass(frozen=True)
class CompiledRule:
    """One rule, parsed and checked; ``skip`` says why it is not evaluated (else empty)."""

    rule: str
    message: str
    message_expression: str
    field_path: tuple[str, ...]
    program: Any
    message_program: Any
    skip: str = ""

    def failure(self) -> str:
        return self.message or f"failed rule: {self.rule}"

    def error_subject(self) -> str:
        return self.message or self.rule


def _environment() -> celpy.Environment:
    return celpy.Environment(runner_class=_Runner)


@lru_cache(maxsize=1)
def _env() -> celpy.Environment:
    return _environment()


@lru_cache(maxsize=2048)
def _parse(text: str) -> lark.Tree[Any]:
    try:
        return _env().compile(text)
    except CELParseError as exc:
        raise CelRuleError(f"syntax error: {' '.join(str(exc).split())}") from exc


def _check_names(tree: lark.Tree[Any], fields: frozenset[str] | None) -> None:
    """Unknown functions, variables and (when ``fields`` is given) field names are errors."""
    known_functions = set(_FUNCTIONS) | set(celpy.evaluation.base_functions) | _MACROS | {"has"}
    bound: set[str] = {"self", "oldSelf"}
    for node in tree.iter_subtrees():
        if node.data == "member_dot_arg":
            name = str(node.children[1])
            if name not in known_functions and name != "min":
                raise CelRuleError(f"unknown function {name}() (not available offline)")
            if name in _MACROS and len(node.children) > 2:
                args = node.children[2]
                first = args.children[0] if isinstance(args, lark.Tree) and args.children else None
                idents = list(first.find_data("ident")) if isinstance(first, lark.Tree) else []
                if len(idents) != 1:
                    raise CelRuleError(f"{name}() needs a variable name as its first argument")
                bound.add(str(idents[0].children[0]))
        elif node.data == "ident_arg":
            name = str(node.children[0])
            if name not in known_functions:
                raise CelRuleError(f"unknown function {name}() (not available offline)")
            if name == "has":
                args = node.children[1] if len(node.children) > 1 else None
                if not isinstance(args, lark.Tree) or _field_selection(args) is None:
                    raise CelRuleError("has() takes a field selection, e.g. has(self.field)")
        elif node.data == "dot_ident_arg":
            raise CelRuleError("leading-dot function calls are not supported offline")
    for node in tree.iter_subtrees():
        if node.data == "ident":
            name = str(node.children[0])
            if name not in bound and name not in _TYPE_IDENTS:
                raise CelRuleError(f"undeclared reference to {name!r}")
        elif node.data == "member_dot" and fields is not None:
            name = str(node.children[1])
            if unescape(name) not in fields:
                raise CelRuleError(
                    f"undefined field {name!r} (no property of that name in the schema)"
                )


def _mentions_old_self(tree: lark.Tree[Any]) -> bool:
    return any(str(n.children[0]) == "oldSelf" for n in tree.find_data("ident"))


def _field_path(text: str) -> tuple[str, ...]:
    if not text:
        return ()
    if not re.fullmatch(r"(\.[A-Za-z_][A-Za-z0-9_]*)+", text):
        raise CelRuleError(f"fieldPath {text!r}: only .a.b paths are supported offline")
    return tuple(text[1:].split("."))


def compile_rule(spec: Mapping[str, Any], fields: frozenset[str] | None = None) -> CompiledRule:
    """Parse and check one ``x-kubernetes-validations`` entry; raise :class:`CelRuleError`."""
    unknown = sorted(set(spec) - RULE_KEYS)
    if unknown:
        raise CelRuleError(f"unknown keys in a validation rule: {', '.join(unknown)}")
    text = spec.get("rule")
    if not isinstance(text, str) or not text.strip():
        raise CelRuleError("a validation rule needs a non-empty 'rule'")
    message = spec.get("message", "")
    expression = spec.get("messageExpression", "")
    if not isinstance(message, str) or not isinstance(expression, str):
        raise CelRuleError("message and messageExpression are strings")
    if "\n" in message:
        raise CelRuleError("message must not contain line breaks")
    tree = _parse(text)
    _check_names(tree, fields)
    message_tree = None
    if expression:
        message_tree = _parse(expression)
        _check_names(message_tree, fields)
    path = _field_path(str(spec.get("fieldPath", "")))
    skip = TRANSITION_RULE if _mentions_old_self(tree) or spec.get("optionalOldSelf") else ""
    env = _env()
    return CompiledRule(
        rule=text,
        message=message.strip(),
        message_expression=expression,
        field_path=path,
        program=env.program(tree, functions=_FUNCTIONS),
        message_program=None
        if message_tree is None
        else env.program(message_tree, functions=_FUNCTIONS),
        skip=skip,
    )


# --------------------------------------------------------------------------
# Schemas


def _pointer(document: Mapping[str, Any], fragment: str) -> Any:
    node: Any = document
    for part in fragment.lstrip("/").split("/") if fragment.strip("/") else []:
        key = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def rules_in(schema: Any, where: str = "#") -> Iterator[tuple[str, Any]]:
    """(JSON pointer, rule) for every rule anywhere in a schema document."""
    if not isinstance(schema, Mapping):
        return
    for i, rule in enumerate(schema.get(RULES) or []):
        yield f"{where}/{RULES}/{i}", rule
    for key in _SCHEMA_MAPS:
        subs = schema.get(key)
        for name, sub in subs.items() if isinstance(subs, Mapping) else ():
            yield from rules_in(sub, f"{where}/{key}/{name.replace('~', '~0').replace('/', '~1')}")
    for key in _SCHEMA_LISTS:
        subs = schema.get(key)
        for i, sub in enumerate(subs) if isinstance(subs, list) else ():
            yield from rules_in(sub, f"{where}/{key}/{i}")
    for key in _SCHEMA_ONE:
        yield from rules_in(schema.get(key), f"{where}/{key}")


class SchemaRules:
    """The CEL rules of one schema document, ready to check objects against.

    ``external`` resolves documents that ``$ref``s point into (the Kubernetes
    definitions): their property names count as known fields of rules; they
    are not walked for rules.
    """

    def __init__(self, schema: Mapping[str, Any], external: ExternalDocuments | None = None):
        self.schema = schema
        self._external = external or (lambda _id: None)
        self._compiled: dict[int, CompiledRule | CelRuleError] = {}
        self._fields: frozenset[str] | None = None

    # -- compiling --------------------------------------------------------

    def fields(self) -> frozenset[str]:
        """Every property name of the schema and of the documents it references."""
        if self._fields is None:
            self._fields = frozenset(_property_names(self.schema, self._external))
        return self._fields

    def compiled(self, spec: Any) -> CompiledRule | CelRuleError:
        key = id(spec)
        if key not in self._compiled:
            try:
                if not isinstance(spec, Mapping):
                    raise CelRuleError("a validation rule is an object with a 'rule'")
                self._compiled[key] = compile_rule(spec, self.fields())
            except CelRuleError as exc:
                self._compiled[key] = exc
        return self._compiled[key]

    def compile_errors(self) -> list[str]:
        """``<pointer>: <error>`` for every rule that does not compile or is never evaluated."""
        errors = []
        reachable = self._reachable_rules()
        for where, spec in rules_in(self.schema):
            if id(spec) not in reachable:
                errors.append(
                    f"{where}: never evaluated (rules are walked through properties, items, "
                    "additionalProperties, local $refs and allOf only)"
                )
                continue
            result = self.compiled(spec)
            if isinstance(result, CelRuleError):
                errors.append(f"{where}: {result}")
        return errors

    def _reachable_rules(self) -> set[int]:
        """The rules :meth:`check` can reach from the root (ids of their objects)."""
        found: set[int] = set()
        seen: set[int] = set()
        stack: list[Any] = [self.schema]
        while stack:
            for part in self._parts(stack.pop()):
                if id(part) in seen:
                    continue
                seen.add(id(part))
                found.update(id(r) for r in part.get(RULES) or [])
                props = part.get("properties")
                if isinstance(props, Mapping):
                    stack.extend(props.values())
                stack.extend(
                    part[k]
                    for k in ("items", "additionalProperties")
                    if isinstance(part.get(k), Mapping)
                )
        return found

    # -- checking ---------------------------------------------------------

    def check(self, obj: Mapping[str, Any]) -> Iterator[tuple[list[str | int], str]]:
        """(path, message) for every rule the object breaks."""
        parts = self._parts(self.schema)
        value = self._defaulted(dict(obj), parts)
        yield from self._walk(value, parts, [])

    def _parts(self, node: Any) -> list[Mapping[str, Any]]:
        """The schema objects that apply to a value: the node, its local $refs, its allOf members."""
        out: list[Mapping[str, Any]] = []
        seen: set[int] = set()
        stack = [node]
        while stack:
            current = stack.pop(0)
            if not isinstance(current, Mapping) or id(current) in seen:
                continue
            seen.add(id(current))
            out.append(current)
            ref = current.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                stack.append(_pointer(self.schema, ref[1:]))
            stack.extend(current.get("allOf") or [])
        return out

    def _child(self, parts: Sequence[Mapping[str, Any]], key: str) -> list[Mapping[str, Any]]:
        found: list[Mapping[str, Any]] = []
        declared = False
        for part in parts:
            props = part.get("properties")
            if isinstance(props, Mapping) and key in props:
                declared = True
                found.extend(self._parts(props[key]))
        if not declared:
            for part in parts:
                extra = part.get("additionalProperties")
                if isinstance(extra, Mapping):
                    found.extend(self._parts(extra))
        return found

    def _items(self, parts: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        found: list[Mapping[str, Any]] = []
        for part in parts:
            if isinstance(part.get("items"), Mapping):
                found.extend(self._parts(part["items"]))
        return found

    def _defaulted(self, value: Any, parts: Sequence[Mapping[str, Any]]) -> Any:
        """The value with the schema's defaults filled in, as the API server does on create."""
        if isinstance(value, Mapping):
            out = dict(value)
            for part in parts:
                for key, sub in (part.get("properties") or {}).items():
                    if key not in out:
                        default = _first(self._parts(sub), "default")
                        if default is not _MISSING:
                            out[key] = copy.deepcopy(default)
            return {
                key: self._defaulted(child, self._child(parts, key)) for key, child in out.items()
            }
        if isinstance(value, list):
            items = self._items(parts)
            return [self._defaulted(v, items) for v in value]
        return value

    def _walk(
        self, value: Any, parts: Sequence[Mapping[str, Any]], path: list[str | int]
    ) -> Iterator[tuple[list[str | int], str]]:
        for part in parts:
            for spec in part.get(RULES) or []:
                yield from self._evaluate(spec, value, parts, path)
        if isinstance(value, Mapping):
            for key, child in value.items():
                sub = self._child(parts, key)
                if sub:
                    yield from self._walk(child, sub, [*path, key])
        elif isinstance(value, list):
            items = self._items(parts)
            if items:
                for i, child in enumerate(value):
                    yield from self._walk(child, items, [*path, i])

    def _evaluate(
        self, spec: Any, value: Any, parts: Sequence[Mapping[str, Any]], path: list[str | int]
    ) -> Iterator[tuple[list[str | int], str]]:
        compiled = self.compiled(spec)
        if isinstance(compiled, CelRuleError):
            text = spec.get("rule") if isinstance(spec, Mapping) else spec
            yield path, f"cannot check CEL rule {text!r} offline: {compiled}"
            return
        if compiled.skip:
            return
        at: list[str | int] = [*path, *compiled.field_path]
        activation = {"self": self._to_cel(value, parts)}
        try:
            result = compiled.program.evaluate(activation)
        except CELEvalError as exc:
            yield at, f"{error_text(exc)} evaluating rule: {compiled.error_subject()}"
            return
        except Exception as exc:  # noqa: BLE001 -- an evaluator crash is a problem, never a pass
            yield (
                at,
                f"cannot evaluate rule offline ({type(exc).__name__}: {exc}): {compiled.error_subject()}",
            )
            return
        if not isinstance(result, celtypes.BoolType):
            yield (
                at,
                f"rule did not evaluate to a bool ({type(result).__name__}): {compiled.error_subject()}",
            )
        elif not result:
            yield at, self._message(compiled, activation)

    @staticmethod
    def _message(compiled: CompiledRule, activation: Mapping[str, Any]) -> str:
        if compiled.message_program is not None:
            try:
                text = compiled.message_program.evaluate(activation)
            except Exception:  # noqa: BLE001 -- the API server falls back to message likewise
                text = None
            if isinstance(text, str) and text.strip() and "\n" not in text:
                return str(text).strip()
        return compiled.failure()

    def _to_cel(self, value: Any, parts: Sequence[Mapping[str, Any]]) -> Any:
        """A JSON value as the CEL value the API server builds for it (UnstructuredToVal)."""
        if value is None:
            return None
        fmt = _first(parts, "format")
        kind = _first(parts, "type")
        if isinstance(value, bool):
            return celtypes.BoolType(value)
        if isinstance(value, int):
            return celtypes.DoubleType(value) if kind == "number" else celtypes.IntType(value)
        if isinstance(value, float):
            if kind == "integer" and value.is_integer():
                return celtypes.IntType(int(value))
            return celtypes.DoubleType(value)
        if isinstance(value, str):
            return _string_value(value, fmt)
        if isinstance(value, Mapping):
            declared = not parts or any(isinstance(p.get("properties"), Mapping) for p in parts)
            items = {
                celtypes.StringType(k): self._to_cel(v, self._child(parts, k))
                for k, v in value.items()
            }
            return _Object(items) if declared else celtypes.MapType(items)
        if isinstance(value, list):
            element = self._items(parts)
            return celtypes.ListType([self._to_cel(v, element) for v in value])
        return value


_MISSING = object()


def _first(parts: Iterable[Mapping[str, Any]], key: str) -> Any:
    for part in parts:
        if key in part:
            return part[key]
    return _MISSING


def _property_names(schema: Mapping[str, Any], external: ExternalDocuments) -> set[str]:
    names: set[str] = set()
    seen: set[int] = set()
    stack: list[tuple[Any, Mapping[str, Any]]] = [(schema, schema)]
    while stack:
        node, document = stack.pop()
        if isinstance(node, list):
            stack.extend((n, document) for n in node)
            continue
        if not isinstance(node, Mapping) or id(node) in seen:
            continue
        seen.add(id(node))
        props = node.get("properties")
        if isinstance(props, Mapping):
            names.update(str(k) for k in props)
        for key, sub in node.items():
            if key == "$ref" and isinstance(sub, str):
                base, _, fragment = sub.partition("#")
                target_doc = external(base) if base else document
                if target_doc is not None:
                    stack.append((_pointer(target_doc, fragment), target_doc))
            elif key in ("properties", "patternProperties", "$defs", "definitions") and isinstance(
                sub, Mapping
            ):
                stack.extend((v, document) for v in sub.values())
            elif isinstance(sub, (Mapping, list)) and key not in (
                "default",
                "enum",
                "const",
                "examples",
            ):
                stack.append((sub, document))
    return names


# --------------------------------------------------------------------------
# Values


class _Object(celtypes.MapType):
    """An object with declared properties: escaped names (``__namespace__``) find their field."""

    def _key(self, key: Any) -> Any:
        if dict.__contains__(self, key):
            return key
        plain = unescape(str(key)) if isinstance(key, str) else key
        return celtypes.StringType(plain) if isinstance(plain, str) else plain

    def __getitem__(self, key: Any) -> Any:
        return dict.__getitem__(self, self._key(key))

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, self._key(key))

    def get(self, key: Any, default: Any = None) -> Any:
        return dict.get(self, self._key(key), default)


_GO_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip
_GO_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_LOOSE_PART = re.compile(r"(\d+)\s*([A-Za-zµ]+)")
_LOOSE_UNITS = (
    (("ns", "nano"), 1),
    (("us", "µs", "micro"), 10**3),
    (("ms", "milli"), 10**6),
    (("s", "sec"), 10**9),
    (("m", "min"), 60 * 10**9),
    (("h", "hr", "hour"), 3600 * 10**9),
    (("d", "day"), 24 * 3600 * 10**9),
    (("w", "wk", "week"), 7 * 24 * 3600 * 10**9),
)


def go_duration(text: str) -> datetime.timedelta | None:
    """Go's time.ParseDuration (``1h30m``, ``1.5s``, ``0``), or None."""
    sign, rest = (-1, text[1:]) if text[:1] == "-" else (1, text[1:] if text[:1] == "+" else text)
    if rest == "0":
        return datetime.timedelta(0)
    if not rest:
        return None
    total = Decimal(0)
    pos = 0
    while pos < len(rest):
        match = _GO_PART.match(rest, pos)
        if not match or match.group(1) in ("", "."):
            return None
        try:
            total += Decimal(match.group(1)) * _GO_UNITS[match.group(2)]
        except InvalidOperation:
            return None
        pos = match.end()
    return datetime.timedelta(microseconds=int(sign * total / 1000))


def strfmt_duration(text: str) -> datetime.timedelta | None:
    """kube-openapi strfmt.ParseDuration (``format: duration``): Go durations, else ``1d``, ``2 weeks``."""
    parsed = go_duration(text)
    if parsed is not None:
        return parsed
    total = 0
    found = False
    for number, unit_text in _LOOSE_PART.findall(text):
        unit = unit_text.strip().lower()
        for variants, nanos in _LOOSE_UNITS:
            last = len(variants) - 1
            if any(unit == v or (i == last and unit.startswith(v)) for i, v in enumerate(variants)):
                found = True
                total += int(number) * nanos
    return datetime.timedelta(microseconds=total // 1000) if found else None


def _string_value(value: str, fmt: Any) -> Any:
    if fmt == "duration":
        parsed = strfmt_duration(value)
        if parsed is None:
            return CELEvalError(f"Invalid duration {value}", ValueError, None)
        return celtypes.DurationType(parsed)
    if fmt in ("date", "date-time"):
        try:
            text = f"{value}T00:00:00Z" if fmt == "date" else value
            return celtypes.TimestampType(text)
        except (ValueError, TypeError):
            return CELEvalError(f"Invalid {fmt} formatted string {value}", ValueError, None)
    return celtypes.StringType(value)


def error_text(exc: BaseException) -> str:
    """An evaluation error in the API server's words where they differ from celpy's."""
    text = str(exc.args[0]) if exc.args else str(exc)
    match = re.fullmatch(r"no such member in mapping: '(.*)'", text)
    if match:
        return f"no such key: {match.group(1)}"
    return " ".join(text.split())[:200]


# --------------------------------------------------------------------------
# Evaluation: celpy's interpreter with the API server's semantics


def _field_selection(tree: lark.Tree[Any]) -> lark.Tree[Any] | None:
    """The ``member_dot`` node an expression consists of (``has()``'s argument), else None."""
    node: Any = tree
    while isinstance(node, lark.Tree):
        if node.data == "member_dot":
            return node
        if len(node.children) != 1:
            return None
        node = node.children[0]
    return None


def _error(message: str) -> CELEvalError:
    return CELEvalError(message, TypeError, None)


class _Evaluator(Evaluator):
    def sub_evaluator(self, ast: lark.Tree[Any]) -> Evaluator:
        return _Evaluator(ast, activation=self.activation)

    def expr(self, tree: lark.Tree[Any]) -> Any:
        if len(tree.children) != 3:
            return super().expr(tree)
        condition = self.visit(cast("lark.Tree[Any]", tree.children[0]))
        if isinstance(condition, CELEvalError):
            return condition
        if not isinstance(condition, celtypes.BoolType):
            return _error("no such overload: ?: needs a bool condition")
        return self.visit(
            cast("lark.Tree[Any]", tree.children[1] if condition else tree.children[2])
        )

    def macro_has_eval(self, exprlist: lark.Tree[Any]) -> Any:
        select = _field_selection(exprlist)
        if select is None:
            return _error("invalid argument to has() macro")
        target = self.visit(cast("lark.Tree[Any]", select.children[0]))
        if isinstance(target, CELEvalError):
            return target
        if isinstance(target, celtypes.MapType):
            return celtypes.BoolType(str(select.children[1]) in target)
        return _error(f"has() on a value of type {type(target).__name__}")

    def member_dot_arg(self, tree: lark.Tree[Any]) -> Any:
        name = str(tree.children[1])
        if name not in _MACROS:
            return super().member_dot_arg(tree)
        target = self.visit(cast("lark.Tree[Any]", tree.children[0]))
        if isinstance(target, CELEvalError):
            return target
        if not isinstance(target, (celtypes.ListType, celtypes.MapType)):
            return _error(f"no such overload: {name}() on {type(target).__name__}")
        predicate = self.build_macro_eval(tree)
        results: list[tuple[Any, Any]] = []
        for item in target:
            try:
                results.append((item, predicate(item)))
            except CELEvalError as exc:
                results.append((item, exc))
        errors = [r for _, r in results if isinstance(r, CELEvalError)]
        if name == "map":
            return errors[0] if errors else celtypes.ListType([r for _, r in results])
        bad = [r for _, r in results if not isinstance(r, (celtypes.BoolType, CELEvalError))]
        if bad:
            return _error(f"no such overload: {name}() predicate is not a bool")
        if name == "all":
            if any(isinstance(r, celtypes.BoolType) and not r for _, r in results):
                return celtypes.BoolType(False)
            return errors[0] if errors else celtypes.BoolType(True)
        if name == "exists":
            if any(isinstance(r, celtypes.BoolType) and r for _, r in results):
                return celtypes.BoolType(True)
            return errors[0] if errors else celtypes.BoolType(False)
        if errors:
            return errors[0]
        chosen = [item for item, r in results if r]
        if name == "exists_one":
            return celtypes.BoolType(len(chosen) == 1)
        return celtypes.ListType(chosen)


class _Runner(celpy.InterpretedRunner):
    def evaluate(self, context: Any) -> Any:
        return _Evaluator(ast=self.ast, activation=self.new_activation()).evaluate(context)


# -- operators -------------------------------------------------------------


def _family(value: Any) -> str:
    """Values of one family compare with each other (ints, uints and doubles are one family)."""
    if isinstance(value, celtypes.BoolType):
        return "bool"
    if isinstance(value, (celtypes.IntType, celtypes.UintType, celtypes.DoubleType)):
        return "number"
    for family, kinds in (
        ("duration", celtypes.DurationType),
        ("timestamp", celtypes.TimestampType),
        ("string", str),
        ("bytes", bytes),
        ("list", list),
        ("map", dict),
    ):
        if isinstance(value, kinds):
            return family
    return "null" if value is None else type(value).__name__


def _equal(a: Any, b: Any) -> Any:
    if isinstance(a, CELEvalError):
        return a
    if isinstance(b, CELEvalError):
        return b
    if _family(a) != _family(b):
        return celtypes.BoolType(False)
    if isinstance(a, list):
        if len(a) != len(b):
            return celtypes.BoolType(False)
        for x, y in zip(a, b, strict=True):
            same = _equal(x, y)
            if not isinstance(same, celtypes.BoolType) or not same:
                return same
        return celtypes.BoolType(True)
    if isinstance(a, dict):
        if set(a) != set(b):
            return celtypes.BoolType(False)
        for key in a:
            same = _equal(dict.__getitem__(a, key), dict.__getitem__(b, key))
            if not isinstance(same, celtypes.BoolType) or not same:
                return same
        return celtypes.BoolType(True)
    return celtypes.BoolType(_plain(a) == _plain(b))


def _not_equal(a: Any, b: Any) -> Any:
    same = _equal(a, b)
    return celtypes.BoolType(not same) if isinstance(same, celtypes.BoolType) else same


def _ordering(test: Callable[[Any, Any], bool], symbol: str) -> Callable[[Any, Any], Any]:
    def compare(a: Any, b: Any) -> Any:
        if isinstance(a, CELEvalError):
            return a
        if isinstance(b, CELEvalError):
            return b
        family = _family(a)
        if family != _family(b) or family in ("null", "list", "map"):
            return _error(f"no such overload: {type(a).__name__} {symbol} {type(b).__name__}")
        return celtypes.BoolType(test(_plain(a), _plain(b)))

    return compare


def _plain(value: Any) -> Any:
    """Numbers as Python numbers, so ints, uints and doubles compare by value."""
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    return value


def _logical(short_circuit: bool) -> Callable[[Any, Any], Any]:
    """``||`` (short_circuit=True) or ``&&``: the deciding value wins over errors, else the first error."""

    def combine(a: Any, b: Any) -> Any:
        if any(isinstance(v, celtypes.BoolType) and bool(v) is short_circuit for v in (a, b)):
            return celtypes.BoolType(short_circuit)
        for v in (a, b):
            if isinstance(v, CELEvalError):
                return v
            if not isinstance(v, celtypes.BoolType):
                return _error(
                    f"no such overload: {'||' if short_circuit else '&&'} on {type(v).__name__}"
                )
        return celtypes.BoolType(not short_circuit)

    return combine


def _logical_condition(condition: Any, left: Any, right: Any) -> Any:
    if isinstance(condition, CELEvalError):
        return condition
    return left if condition else right


# -- library ---------------------------------------------------------------


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}() needs a string, not {type(value).__name__}")
    return str(value)


def _split(text: Any, sep: Any, limit: Any = -1) -> Any:
    s, sep_ = _string(text, "split"), _string(sep, "split")
    n = int(limit)
    if n == 0:
        return celtypes.ListType([])
    parts = list(s) if sep_ == "" else s.split(sep_)
    if n > 0 and len(parts) > n:
        parts = [*parts[: n - 1], sep_.join(parts[n - 1 :])]
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _join(items: Any, sep: Any = "") -> Any:
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise TypeError("join() needs a list of strings")
    return celtypes.StringType(_string(sep, "join").join(items))


def _replace(text: Any, old: Any, new: Any, limit: Any = -1) -> Any:
    s = _string(text, "replace")
    return celtypes.StringType(
        s.replace(_string(old, "replace"), _string(new, "replace"), int(limit))
    )


def _position(items: list[Any], item: Any) -> list[int]:
    found = []
    for i, x in enumerate(items):
        same = _equal(x, item)
        if isinstance(same, celtypes.BoolType) and same:
            found.append(i)
    return found


def _index_of(target: Any, item: Any, offset: Any = 0) -> Any:
    if isinstance(target, list):
        found = _position(target, item)
        return celtypes.IntType(found[0] if found else -1)
    s = _string(target, "indexOf")
    if not 0 <= int(offset) <= len(s):
        return CELEvalError(f"index out of range: {offset}", IndexError, None)
    return celtypes.IntType(s.find(_string(item, "indexOf"), int(offset)))


def _last_index_of(target: Any, item: Any, offset: Any = None) -> Any:
    if isinstance(target, list):
        found = _position(target, item)
        return celtypes.IntType(found[-1] if found else -1)
    s, sub = _string(target, "lastIndexOf"), _string(item, "lastIndexOf")
    end = len(s) if offset is None else int(offset)
    if not 0 <= end <= len(s):
        return CELEvalError(f"index out of range: {offset}", IndexError, None)
    return celtypes.IntType(s.rfind(sub, 0, end + len(sub)))


def _substring(text: Any, start: Any, end: Any = None) -> Any:
    s = _string(text, "substring")
    a, b = int(start), len(s) if end is None else int(end)
    if not 0 <= a <= b <= len(s):
        return CELEvalError(f"index out of range: {start}, {end}", IndexError, None)
    return celtypes.StringType(s[a:b])


def _char_at(text: Any, index: Any) -> Any:
    s = _string(text, "charAt")
    i = int(index)
    if not 0 <= i <= len(s):
        return CELEvalError(f"index out of range: {index}", IndexError, None)
    return celtypes.StringType(s[i : i + 1])


def _trim(text: Any) -> Any:
    return celtypes.StringType(_string(text, "trim").strip())


def _ascii_case(upper: bool) -> Callable[[Any], Any]:
    def convert(text: Any) -> Any:
        s = _string(text, "upperAscii" if upper else "lowerAscii")
        table = str.maketrans(
            "abcdefghijklmnopqrstuvwxyz" if upper else "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if upper else "abcdefghijklmnopqrstuvwxyz",
        )
        return celtypes.StringType(s.translate(table))

    return convert


def _reverse(text: Any) -> Any:
    return celtypes.StringType(_string(text, "reverse")[::-1])


def format_value(value: Any) -> str:
    """A value as cel-go's ``%s`` prints it (durations in seconds, ``20s``)."""
    if isinstance(value, CELEvalError):
        raise value
    if isinstance(value, celtypes.BoolType):
        return "true" if value else "false"
    if isinstance(value, celtypes.DurationType):
        seconds = Decimal(value.days * 86400 + value.seconds) + Decimal(value.microseconds) / 10**6
        text = format(seconds.normalize(), "f")
        return f"{text}s"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_quoted(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = sorted(f"{_quoted(k)}:{_quoted(dict.__getitem__(value, k))}" for k in value)
        return "{" + ", ".join(pairs) + "}"
    return str(value)


def _quoted(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else format_value(value)


def _format(template: Any, args: Any) -> Any:
    text = _string(template, "format")
    if not isinstance(args, list):
        raise TypeError("format() needs a list of arguments")
    out: list[str] = []
    index = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        match = re.match(r"%(?:\.(\d+))?([sdfeboxX%])", text[i:])
        if not match:
            return CELEvalError(
                f"could not parse formatting clause at {text[i:]!r}", ValueError, None
            )
        verb = match.group(2)
        i += match.end()
        if verb == "%":
            out.append("%")
            continue
        if index >= len(args):
            return CELEvalError(
                "index out of range: not enough arguments for format", IndexError, None
            )
        arg = args[index]
        index += 1
        if verb == "s":
            out.append(format_value(arg))
        elif verb == "d":
            out.append(str(int(arg)))
        elif verb in "fe":
            digits = int(match.group(1) or 6)
            out.append(f"{float(arg):.{digits}{verb}}")
        else:
            out.append(format(int(arg), verb))
    return celtypes.StringType("".join(out))


def _is_sorted(items: Any) -> Any:
    if not isinstance(items, list):
        raise TypeError("isSorted() needs a list")
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


def _sum(items: Any) -> Any:
    if not isinstance(items, list):
        raise TypeError("sum() needs a list")
    if not items:
        return celtypes.IntType(0)
    total = items[0]
    for item in items[1:]:
        total = total + item
    return total


def _max(items: Any) -> Any:
    if not isinstance(items, list) or not items:
        return CELEvalError("max() needs a non-empty list", ValueError, None)
    return max(items)


def _find(text: Any, pattern: Any) -> Any:
    match = re.search(_string(pattern, "find"), _string(text, "find"))
    return celtypes.StringType(match.group(0) if match else "")


def _find_all(text: Any, pattern: Any, limit: Any = -1) -> Any:
    found = [m.group(0) for m in re.finditer(_string(pattern, "findAll"), _string(text, "findAll"))]
    n = int(limit)
    return celtypes.ListType([celtypes.StringType(f) for f in (found if n < 0 else found[:n])])


_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):(.*)$", re.DOTALL)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def is_url(value: Any) -> Any:
    """Kubernetes ``isURL``: Go's url.ParseRequestURI accepts it (absolute URI or absolute path)."""
    text = _string(value, "isURL")
    if not text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text) or text.startswith(":"):
        return celtypes.BoolType(False)
    match = _URL_SCHEME.match(text)
    rest = match.group(2) if match else text
    if not match and not text.startswith("/"):
        return celtypes.BoolType(False)
    if rest.startswith("//"):
        authority = re.split(r"[/?]", rest[2:], maxsplit=1)[0]
        host = authority.rsplit("@", 1)[-1]
        if host.startswith("["):
            close = host.find("]")
            if close < 0 or (host[close + 1 :] and not re.fullmatch(r":\d*", host[close + 1 :])):
                return celtypes.BoolType(False)
        elif ":" in host and not re.fullmatch(r"[^:]*:\d*", host):
            return celtypes.BoolType(False)
        if _BAD_ESCAPE.search(host) or " " in host:
            return celtypes.BoolType(False)
    path = rest.split("?", 1)[0]
    if _BAD_ESCAPE.search(path):
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _duration(value: Any) -> Any:
    if isinstance(value, celtypes.DurationType):
        return value
    parsed = go_duration(_string(value, "duration"))
    if parsed is None:
        return CELEvalError(
            f"type conversion error from 'string' to 'google.protobuf.Duration': {value}",
            ValueError,
            None,
        )
    return celtypes.DurationType(parsed)


_FUNCTIONS: dict[str, Any] = {
    "_==_": _equal,
    "_!=_": _not_equal,
    "_<_": _ordering(lambda a, b: a < b, "<"),
    "_<=_": _ordering(lambda a, b: a <= b, "<="),
    "_>_": _ordering(lambda a, b: a > b, ">"),
    "_>=_": _ordering(lambda a, b: a >= b, ">="),
    "_?_:_": _logical_condition,
    "_||_": _logical(short_circuit=True),
    "_&&_": _logical(short_circuit=False),
    "duration": _duration,
    # strings extension
    "charAt": _char_at,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "lowerAscii": _ascii_case(upper=False),
    "upperAscii": _ascii_case(upper=True),
    "replace": _replace,
    "split": _split,
    "substring": _substring,
    "trim": _trim,
    "join": _join,
    "reverse": _reverse,
    "format": _format,
    # Kubernetes list library (min() is celpy's own)
    "isSorted": _is_sorted,
    "sum": _sum,
    "max": _max,
    # Kubernetes regex library (Python re: the RE2 patterns rules use mean the same)
    "find": _find,
    "findAll": _find_all,
    # Kubernetes URL library
    "isURL": is_url,
}
