"""Generate the table of flags and environment variables a pinned vLLM server accepts.

Reads vLLM's own source, never imports it (no torch, no GPU, no network):

    pip download --no-deps vllm==0.11.2 -d /tmp/vllm-wheel
    python scripts/vllm_flags.py /tmp/vllm-wheel/vllm-0.11.2-*.whl \
        -o workloads/data/vllm-0.11.2-flags.json

The argument is the wheel (only the .py files needed are read from it) or a
directory holding an unpacked ``vllm/`` tree. The script parses, with ``ast``:

- ``make_arg_parser`` (``vllm/entrypoints/openai/cli_args.py``): the server's
  own flags, every field of ``FrontendArgs``, then ``AsyncEngineArgs.add_cli_args``;
- ``EngineArgs.add_cli_args`` (``vllm/engine/arg_utils.py``): each
  ``add_argument("--flag", **<config>_kwargs["field"])``, where the kwargs come
  from ``get_kwargs(<Config>)``. The field's annotation in ``vllm/config/*.py``
  decides the argparse behaviour exactly as ``_compute_kwargs`` does at runtime
  (dataclass -> JSON value, bool -> ``BooleanOptionalAction``, Literal ->
  choices unless ``str`` is also allowed, collections -> ``nargs``, else a typed
  value). Names imported under ``if TYPE_CHECKING:`` are ``Any`` at runtime (the
  ``else:`` branch), so e.g. ``--quantization`` has no argparse choices; its
  accepted values (the Literal behind the name) are recorded separately as
  ``acceptedValues`` with ``enforced: "after-parsing"``;
- ``environment_variables`` in ``vllm/envs.py``: every ``VLLM_*`` variable read.

The output records the version, every source file read with its sha256 and,
for a wheel, the wheel's sha256.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import itertools
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ARG_UTILS = "vllm/engine/arg_utils.py"
CLI_ARGS = "vllm/entrypoints/openai/cli_args.py"
ENVS = "vllm/envs.py"
BUILTIN_TYPES = {"bool", "int", "float", "str", "dict", "list", "tuple", "set", "bytes"}


class Source:
    """The vLLM source tree (a wheel or a directory); remembers every file read."""

    def __init__(self, location: Path) -> None:
        self.location = location
        self.zip = zipfile.ZipFile(location) if location.is_file() else None
        self.read: dict[str, str] = {}  # path -> sha256

    def text(self, path: str) -> str | None:
        try:
            data = self.zip.read(path) if self.zip else (self.location / path).read_bytes()
        except (KeyError, FileNotFoundError):
            return None
        self.read[path] = hashlib.sha256(data).hexdigest()
        return data.decode("utf-8")

    def version(self) -> str | None:
        if self.zip:
            for name in self.zip.namelist():
                if name.endswith(".dist-info/METADATA"):
                    match = re.search(r"^Version: (\S+)$", self.zip.read(name).decode(), re.M)
                    return match.group(1) if match else None
        return None


@dataclass
class Module:
    name: str
    tree: ast.Module
    aliases: dict[str, ast.expr] = field(default_factory=dict)  # Name = <type expr>
    runtime_aliases: dict[str, ast.expr] = field(default_factory=dict)  # else: of TYPE_CHECKING
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (module, name)
    type_checking_imports: dict[str, tuple[str, str]] = field(default_factory=dict)
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class Resolver:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.modules: dict[str, Module | None] = {}

    def module(self, name: str) -> Module | None:
        if name in self.modules:
            return self.modules[name]
        base = name.replace(".", "/")
        text = self.source.text(f"{base}.py")
        is_package = False
        if text is None:
            text = self.source.text(f"{base}/__init__.py")
            is_package = text is not None
        module = None if text is None else self._index(name, ast.parse(text), is_package)
        self.modules[name] = module
        return module

    def _index(self, name: str, tree: ast.Module, is_package: bool) -> Module:
        module = Module(name, tree)

        def imports(stmts: list[ast.stmt], into: dict[str, tuple[str, str]]) -> None:
            for stmt in stmts:
                if isinstance(stmt, ast.ImportFrom):
                    target = stmt.module or ""
                    if stmt.level:  # from .compilation import X, inside package vllm.config
                        package = name if is_package else name.rsplit(".", 1)[0]
                        for _ in range(stmt.level - 1):
                            package = package.rsplit(".", 1)[0]
                        target = f"{package}.{target}".rstrip(".")
                    for alias in stmt.names:
                        into[alias.asname or alias.name] = (target, alias.name)

        def aliases(stmts: list[ast.stmt], into: dict[str, ast.expr]) -> None:
            for stmt in stmts:
                if (
                    isinstance(stmt, ast.Assign)
                    and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name)
                ):
                    into[stmt.targets[0].id] = stmt.value
                elif (
                    isinstance(stmt, ast.AnnAssign)
                    and isinstance(stmt.target, ast.Name)
                    and stmt.value is not None
                ):
                    into[stmt.target.id] = stmt.value

        imports(tree.body, module.imports)
        aliases(tree.body, module.aliases)
        for stmt in tree.body:
            if isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
                imports(stmt.body, module.type_checking_imports)
                aliases(stmt.orelse, module.runtime_aliases)
            elif isinstance(stmt, ast.ClassDef):
                module.classes[stmt.name] = stmt
        return module

    # -- types ---------------------------------------------------------------------------

    def lookup(self, module: Module, name: str, runtime: bool) -> tuple[Module, ast.AST] | None:
        """Where ``name`` is defined as seen from ``module`` (a class or an alias expr)."""
        if name in module.classes:
            return module, module.classes[name]
        if name in module.aliases:
            return module, module.aliases[name]
        if name in module.type_checking_imports:
            if runtime:
                value = module.runtime_aliases.get(name)
                return (module, value) if value is not None else None
            target_module, target = module.type_checking_imports[name]
            found = self.module(target_module)
            return self.lookup(found, target, runtime) if found else None
        if name in module.imports:
            target_module, target = module.imports[name]
            found = self.module(target_module)
            return self.lookup(found, target, runtime) if found else None
        return None

    def hints(self, module: Module, node: ast.expr, runtime: bool) -> list[tuple[Any, ...]]:
        """The set of type hints of an annotation, as vLLM's ``get_type_hints`` sees it."""
        if isinstance(node, ast.Constant):
            if node.value is None:
                return [("none",)]
            if isinstance(node.value, str):  # a forward reference
                return self.hints(module, ast.parse(node.value, mode="eval").body, runtime)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self.hints(module, node.left, runtime) + self.hints(module, node.right, runtime)
        if isinstance(node, ast.Subscript):
            head = _dotted(node.value)
            args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
            last = head.rsplit(".", 1)[-1]
            if last in {"Annotated", "SkipValidation"}:
                return self.hints(module, args[0], runtime)
            if last in {"Union"}:
                return [h for a in args for h in self.hints(module, a, runtime)]
            if last == "Optional":
                return [*self.hints(module, args[0], runtime), ("none",)]
            if last == "Literal":
                return [("literal", tuple(_literal_values(module, args, self, runtime)))]
            if last in {"list", "tuple", "set", "List", "Tuple", "Set"}:
                return [(last.lower(), args)]
            if last in {"dict", "Dict", "Mapping"}:
                return [("dict",)]
            if last == "type":
                return [("other", "type")]
            return self.hints(module, node.value, runtime)
        if isinstance(node, ast.Name | ast.Attribute):
            name = _dotted(node)
            if name in BUILTIN_TYPES:
                return [(name,)]
            if name in {"None", "NoneType"}:
                return [("none",)]
            if name.rsplit(".", 1)[-1] in {"Any", "Callable"}:
                return [("other", name)]
            found = self.lookup(module, name, runtime) if "." not in name else None
            if found is None:
                return [("other", name)]
            where, definition = found
            if isinstance(definition, ast.ClassDef):
                return [("dataclass" if _is_dataclass(definition) else "other", name)]
            assert isinstance(definition, ast.expr)
            return self.hints(where, definition, runtime)
        return [("other", ast.unparse(node))]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ast.unparse(node)


def _literal_values(
    module: Module, args: list[ast.expr], resolver: Resolver, runtime: bool
) -> list[Any]:
    values: list[Any] = []
    for arg in args:
        if isinstance(arg, ast.Constant):
            values.append(arg.value)
        else:  # Literal[Other, "x"] nests another Literal alias
            for hint in resolver.hints(module, arg, runtime):
                if hint[0] == "literal":
                    values.extend(hint[1])
    return values


def _is_dataclass(cls: ast.ClassDef) -> bool:
    return any(
        "dataclass" in ast.unparse(d) or ast.unparse(d) == "config" for d in cls.decorator_list
    )


def _kinds(hints: list[tuple[Any, ...]]) -> set[str]:
    return {h[0] for h in hints}


def _literal(hints: list[tuple[Any, ...]]) -> list[Any] | None:
    return next((list(h[1]) for h in hints if h[0] == "literal"), None)


def field_behaviour(
    resolver: Resolver, module: Module, cls: ast.ClassDef, name: str
) -> dict[str, Any]:
    """What ``get_kwargs(cls)[name]`` gives argparse, mirroring ``_compute_kwargs``."""
    annotation = _field_annotation(resolver, module, cls, name)
    if annotation is None:
        raise SystemExit(f"{cls.name}.{name}: field not found")
    where, node = annotation
    runtime = resolver.hints(where, node, runtime=True)
    static = resolver.hints(where, node, runtime=False)
    kinds = _kinds(runtime)
    out: dict[str, Any] = {"value": "required", "type": ast.unparse(node)}
    if "dataclass" in kinds:
        out["valueType"] = "json"
    elif "bool" in kinds:
        out["value"] = "none"
        out["negatable"] = True  # argparse.BooleanOptionalAction
    elif "literal" in kinds:
        options = _literal(runtime) or []
        if "str" in kinds:
            out["valueType"] = "str"
        else:
            out["choices"] = sorted(options, key=str)
            if "none" in kinds:
                out["choices"].append("None")
            out["valueType"] = type(options[0]).__name__ if options else "str"
    elif kinds & {"list", "tuple", "set"}:
        out["nargs"] = "+"
        out["valueType"] = "list"
        # A sequence of literals: argparse checks each element against the Literal.
        collection = next(h for h in runtime if h[0] in {"list", "tuple", "set"})
        element = resolver.hints(where, collection[1][0], runtime=True) if collection[1] else []
        options = _literal(element)
        if options and "str" not in _kinds(element):
            out["choices"] = sorted(options, key=str)
            if "none" in kinds:
                out["choices"].append("None")
            out["enforced"] = "argparse"
    elif "int" in kinds:
        out["valueType"] = "int"
    elif "float" in kinds:
        out["valueType"] = "float"
    elif "dict" in kinds:
        out["valueType"] = "json-or-str" if kinds & {"str", "other"} else "json"
    else:
        out["valueType"] = "str"
    accepted = _literal(static)
    if "choices" not in out and accepted and "bool" not in kinds:
        # Validated after parsing (ModelConfig, LoadConfig, ...), not by argparse.
        out["acceptedValues"] = sorted(accepted, key=str)
        out["enforced"] = "after-parsing"
    elif "choices" in out:
        out["enforced"] = "argparse"
    return out


def _field_annotation(
    resolver: Resolver, module: Module, cls: ast.ClassDef, name: str
) -> tuple[Module, ast.expr] | None:
    for stmt in cls.body:
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and stmt.target.id == name
        ):
            return module, stmt.annotation
    for base in cls.bases:
        found = resolver.lookup(module, _dotted(base), runtime=False)
        if found and isinstance(found[1], ast.ClassDef):
            result = _field_annotation(resolver, found[0], found[1], name)
            if result:
                return result
    return None


def _class_fields(cls: ast.ClassDef) -> list[str]:
    return [
        s.target.id
        for s in cls.body
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
    ]


def _function(tree: ast.AST, cls: str, name: str) -> ast.FunctionDef:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    return item
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name and cls == "":
            return node
    raise SystemExit(f"{cls}.{name} not found")


class ParserReader:
    """Walk add_argument calls of a function, in order, resolving their kwargs."""

    def __init__(self, resolver: Resolver, module: Module) -> None:
        self.resolver = resolver
        self.module = module
        self.kwargs_of: dict[str, str] = {}  # variable -> config class
        self.edits: dict[tuple[str, str], dict[str, Any]] = {}  # (var, field) -> overrides
        self.flags: dict[str, dict[str, Any]] = {}

    def config_class(self, name: str) -> tuple[Module, ast.ClassDef]:
        found = self.resolver.lookup(self.module, name, runtime=False)
        if not found or not isinstance(found[1], ast.ClassDef):
            raise SystemExit(f"config class {name} not found")
        return found[0], found[1]

    def run(self, stmts: list[ast.stmt], env: dict[str, Any] | None = None) -> None:
        env = env or {}
        for stmt in stmts:
            if isinstance(stmt, ast.Assign):
                self.assign(stmt, env)
            elif isinstance(stmt, ast.AugAssign):
                self.aug_assign(stmt)
            elif isinstance(stmt, ast.Delete):
                for target in stmt.targets:
                    key = self.edit_key(target)
                    if key:
                        self.edits.setdefault(key[:2], {})[key[2]] = "<deleted>"
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                self.call(stmt.value, env)
            elif isinstance(stmt, ast.If):
                self.run(stmt.body, env)
                self.run(stmt.orelse, env)
            elif isinstance(stmt, ast.For):
                self.loop(stmt, env)

    def assign(self, stmt: ast.Assign, env: dict[str, Any]) -> None:
        value = stmt.value
        target = stmt.targets[0]
        if (
            isinstance(target, ast.Name)
            and isinstance(value, ast.Call)
            and _dotted(value.func) == "get_kwargs"
        ):
            self.kwargs_of[target.id] = _dotted(value.args[0])
            return
        key = self.edit_key(target)
        if key:
            self.edits.setdefault(key[:2], {})[key[2]] = value
        if isinstance(value, ast.Call):
            self.call(value, env)

    def aug_assign(self, stmt: ast.AugAssign) -> None:
        key = self.edit_key(stmt.target)
        if key and key[2] == "choices":
            self.edits.setdefault(key[:2], {})["choices+"] = stmt.value

    def edit_key(self, node: ast.expr) -> tuple[str, str, str] | None:
        """``var["field"]["attr"]`` -> (var, field, attr)."""
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Subscript)
            and isinstance(node.value.value, ast.Name)
            and isinstance(node.value.slice, ast.Constant)
            and isinstance(node.slice, ast.Constant)
        ):
            return node.value.value.id, str(node.value.slice.value), str(node.slice.value)
        return None

    def loop(self, stmt: ast.For, env: dict[str, Any]) -> None:
        # for key, value in <var>_kwargs.items(): add_argument(f"--{key...}", **value)
        it = stmt.iter
        if (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Attribute)
            and it.func.attr == "items"
            and isinstance(it.func.value, ast.Name)
            and it.func.value.id in self.kwargs_of
            and isinstance(stmt.target, ast.Tuple)
        ):
            var = it.func.value.id
            _, cls = self.config_class(self.kwargs_of[var])
            key_name = _dotted(stmt.target.elts[0])
            value_name = _dotted(stmt.target.elts[1])
            for name in _class_fields(cls):
                self.run(stmt.body, {**env, key_name: name, value_name: (var, name)})
            return
        # for arg, type in [("--flag", str), ...]: add_argument(arg, type=type, ...)
        if isinstance(it, ast.List) and isinstance(stmt.target, ast.Tuple):
            names = [_dotted(t) for t in stmt.target.elts]
            for element in it.elts:
                assert isinstance(element, ast.Tuple)
                values = [
                    e.value if isinstance(e, ast.Constant) else ("type", _dotted(e))
                    for e in element.elts
                ]
                self.run(stmt.body, {**env, **dict(zip(names, values, strict=True))})
            return
        raise SystemExit(f"unsupported loop at line {stmt.lineno}: {ast.unparse(stmt.iter)}")

    def name_of(self, node: ast.expr, env: dict[str, Any]) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name) and isinstance(env.get(node.id), str):
            return str(env[node.id])
        if isinstance(node, ast.JoinedStr):  # f"--{key.replace('_', '-')}"
            parts = []
            for part in node.values:
                if isinstance(part, ast.Constant):
                    parts.append(str(part.value))
                elif isinstance(part, ast.FormattedValue):
                    inner = part.value
                    base = (
                        inner.func.value
                        if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute)
                        else inner
                    )
                    value = env.get(_dotted(base))
                    if not isinstance(value, str):
                        return None
                    if (
                        isinstance(inner, ast.Call)
                        and isinstance(inner.func, ast.Attribute)
                        and inner.func.attr == "replace"
                    ):
                        old, new = (a.value for a in inner.args if isinstance(a, ast.Constant))
                        value = value.replace(str(old), str(new))
                    parts.append(value)
            return "".join(parts)
        return None

    def call(self, call: ast.Call, env: dict[str, Any]) -> None:
        if not (isinstance(call.func, ast.Attribute) and call.func.attr == "add_argument"):
            return
        names = [n for a in call.args if (n := self.name_of(a, env))]
        options = [n for n in names if n.startswith("-")]
        if not options:
            return  # a positional argument (model_tag)
        spec: dict[str, Any] = {"value": "required"}
        source: tuple[str, str] | None = None
        explicit: dict[str, ast.expr] = {}
        for keyword in call.keywords:
            if keyword.arg is None:
                source = self.kwargs_source(keyword.value, env, explicit)
            else:
                explicit[keyword.arg] = keyword.value
        if source is not None:
            var, name = source
            module, cls = self.config_class(self.kwargs_of[var])
            spec = field_behaviour(self.resolver, module, cls, name)
            spec["config"] = f"{cls.name}.{name}"
            for attr, value in self.edits.get(source, {}).items():
                self.apply_edit(spec, attr, value, module)
        for attr, value in explicit.items():
            self.apply_explicit(spec, attr, value, env)
        long = [o for o in options if o.startswith("--")]
        primary = long[0] if long else options[0]
        spec["aliases"] = [o for o in options if o != primary]
        self.flags[primary] = spec

    def kwargs_source(
        self, node: ast.expr, env: dict[str, Any], explicit: dict[str, ast.expr]
    ) -> tuple[str, str] | None:
        if isinstance(node, ast.Name) and isinstance(env.get(node.id), tuple):
            return tuple(env[node.id])  # type: ignore[return-value]
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id in self.kwargs_of
            and isinstance(node.slice, ast.Constant)
        ):
            return node.value.id, str(node.slice.value)
        if isinstance(node, ast.Dict):  # {**x_kwargs["f"], "default": None}
            found = None
            for key, value in zip(node.keys, node.values, strict=True):
                if key is None:
                    found = self.kwargs_source(value, env, explicit)
                elif isinstance(key, ast.Constant):
                    explicit[str(key.value)] = value
            return found
        raise SystemExit(f"unsupported **kwargs: {ast.unparse(node)}")

    def apply_edit(self, spec: dict[str, Any], attr: str, value: Any, module: Module) -> None:
        if value == "<deleted>":
            spec.pop(attr, None)
            if attr == "nargs":
                spec["valueType"] = (
                    "json" if spec.get("valueType") == "list" else spec.get("valueType")
                )
            return
        if attr == "type":
            spec["value"] = "required"
            spec["valueType"] = _type_name(value)
        elif attr == "action":
            action = _dotted(value) if not isinstance(value, ast.Constant) else value.value
            spec["action"] = action
            if action in {"store_true", "store_false", "argparse.BooleanOptionalAction"}:
                spec["value"] = "none"
        elif attr == "choices+":
            extra = _permutation_choices(self.resolver, self.module, value)
            spec["choices"] = [*spec.get("choices", []), *extra]

    def apply_explicit(
        self, spec: dict[str, Any], attr: str, value: ast.expr, env: dict[str, Any]
    ) -> None:
        if attr == "action":
            action = value.value if isinstance(value, ast.Constant) else _dotted(value)
            spec["action"] = action
            if action in {"store_true", "store_false"}:
                spec["value"] = "none"
            elif action == "argparse.BooleanOptionalAction":
                spec["value"] = "none"
                spec["negatable"] = True
        elif attr == "type":
            bound = env.get(_dotted(value)) if isinstance(value, ast.Name) else None
            type_name = bound[1] if isinstance(bound, tuple) else _type_name(value)
            spec["valueType"] = type_name
            spec["value"] = "required"
        elif attr == "nargs" and isinstance(value, ast.Constant):
            spec["nargs"] = value.value
            if value.value in {"?", "*"}:
                spec["value"] = "optional"
        elif attr == "choices" and isinstance(value, ast.List | ast.Tuple):
            spec["choices"] = [e.value for e in value.elts if isinstance(e, ast.Constant)]
            spec["enforced"] = "argparse"
        elif attr == "deprecated" and isinstance(value, ast.Constant):
            spec["deprecated"] = bool(value.value)


def _type_name(node: Any) -> str:
    text = ast.unparse(node) if isinstance(node, ast.AST) else str(node)
    return {"int": "int", "float": "float", "str": "str", "bool": "bool"}.get(text, text)


def _permutation_choices(resolver: Resolver, module: Module, node: ast.expr) -> list[str]:
    """``[",".join(p) for p in permutations(get_args(X), r=2)]`` -> the joined pairs."""
    for call in ast.walk(node):
        if isinstance(call, ast.Call) and _dotted(call.func) == "permutations":
            inner = call.args[0]
            assert isinstance(inner, ast.Call) and _dotted(inner.func) == "get_args"
            hints = resolver.hints(module, inner.args[0], runtime=True)
            values = _literal(hints) or []
            r = next((k.value for k in call.keywords if k.arg == "r"), None)
            assert isinstance(r, ast.Constant)
            return [",".join(p) for p in itertools.permutations(values, r=int(r.value))]
    raise SystemExit(f"unsupported choices extension: {ast.unparse(node)}")


def environment_variables(resolver: Resolver) -> list[str]:
    module = resolver.module("vllm.envs")
    assert module is not None
    for stmt in module.tree.body:
        target = stmt.target if isinstance(stmt, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and target.id == "environment_variables":
            assert isinstance(stmt, ast.AnnAssign) and isinstance(stmt.value, ast.Dict)
            return sorted(str(k.value) for k in stmt.value.keys if isinstance(k, ast.Constant))
    raise SystemExit("environment_variables not found in vllm/envs.py")


COMPILE_BACKEND = "vllm.compilation.backends"


def compile_cache(resolver: Resolver) -> dict[str, str]:
    """Where torch.compile artifacts go: ``os.path.join(envs.<ROOT>, "<folder>", hash)``
    in ``VllmBackend.__call__`` (the hash being vLLM's own key of the config)."""
    module = resolver.module(COMPILE_BACKEND)
    assert module is not None
    call = _function(module.tree, "VllmBackend", "__call__")
    found = [
        node
        for node in ast.walk(call)
        if isinstance(node, ast.Call)
        and _dotted(node.func) == "os.path.join"
        and len(node.args) >= 2
        and _dotted(node.args[0]).startswith("envs.")
        and isinstance(node.args[1], ast.Constant)
    ]
    if len(found) != 1:
        raise SystemExit(f"{COMPILE_BACKEND}: expected one cache-root join, found {len(found)}")
    (join,) = found
    root, folder = join.args[0], join.args[1]
    assert isinstance(folder, ast.Constant) and isinstance(folder.value, str)
    return {
        "root": _dotted(root).removeprefix("envs."),
        "folder": folder.value,
        "source": "vllm/compilation/backends.py VllmBackend.__call__",
    }


REGISTRY = "vllm.attention.backends.registry"
CUDA_PLATFORM = "vllm.platforms.cuda"
ABSTRACT_BACKEND = "vllm.attention.backends.abstract"


def _class_var(cls: ast.ClassDef, name: str) -> ast.expr | None:
    for stmt in cls.body:
        if isinstance(stmt, ast.AnnAssign | ast.Assign):
            targets = [stmt.target] if isinstance(stmt, ast.AnnAssign) else stmt.targets
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return stmt.value
    return None


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | None:
    return next((s for s in cls.body if isinstance(s, ast.FunctionDef) and s.name == name), None)


def _only_return(fn: ast.FunctionDef) -> ast.expr:
    body = [
        s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
    ]
    if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
        raise SystemExit(f"{fn.name}: expected a single return, got {ast.unparse(fn)}")
    return body[0].value


def _capability(node: ast.expr) -> list[int]:
    """``DeviceCapability(8, 0)`` -> [8, 0]."""
    if isinstance(node, ast.Call) and _dotted(node.func) == "DeviceCapability":
        return [int(ast.literal_eval(a)) for a in node.args]
    raise SystemExit(f"unsupported capability bound: {ast.unparse(node)}")


def _capability_bounds(fn: ast.FunctionDef | None) -> dict[str, list[int]]:
    """``capability >= DeviceCapability(7, 5) and capability <= DeviceCapability(12, 1)``
    -> {"min": [7, 5], "max": [12, 1]}; ``return True`` (or no override) -> {}."""
    if fn is None:
        return {}
    expr = _only_return(fn)
    if isinstance(expr, ast.Constant) and expr.value is True:
        return {}
    parts = expr.values if isinstance(expr, ast.BoolOp) and isinstance(expr.op, ast.And) else [expr]
    bounds: dict[str, list[int]] = {}
    for part in parts:
        if not (isinstance(part, ast.Compare) and len(part.ops) == 1):
            raise SystemExit(f"unsupported capability check: {ast.unparse(expr)}")
        op, bound = part.ops[0], _capability(part.comparators[0])
        if isinstance(op, ast.GtE):
            bounds["min"] = bound
        elif isinstance(op, ast.LtE):
            bounds["max"] = bound
        else:
            raise SystemExit(f"unsupported capability comparison: {ast.unparse(part)}")
    return bounds


def _backend_facts(cls: ast.ClassDef, base: ast.ClassDef) -> dict[str, Any]:
    """What ``validate_configuration`` checks for a non-MLA, non-sparse decoder layer,
    from the class's literals (inherited from AttentionBackend where not overridden)."""

    def literal(name: str) -> Any:
        node = _class_var(cls, name) or _class_var(base, name)
        assert node is not None, name
        if name == "supported_dtypes":
            return [ast.unparse(e).removeprefix("torch.") for e in node.elts]  # type: ignore[attr-defined]
        return ast.literal_eval(node)

    facts: dict[str, Any] = {
        "dtypes": literal("supported_dtypes"),
        "kvCacheDtypes": literal("supported_kv_cache_dtypes"),
        "capability": _capability_bounds(_method(cls, "supports_compute_capability")),
    }
    sizes = _method(cls, "get_supported_head_sizes")
    facts["headSizes"] = ast.literal_eval(_only_return(sizes)) if sizes else []
    size_check = _method(cls, "supports_head_size")
    if size_check is not None:  # ``head_size >= 32``
        expr = _only_return(size_check)
        if not (
            isinstance(expr, ast.Compare)
            and isinstance(expr.ops[0], ast.GtE)
            and isinstance(expr.comparators[0], ast.Constant)
        ):
            raise SystemExit(f"unsupported head size check: {ast.unparse(expr)}")
        facts["headSizeMin"] = expr.comparators[0].value
    kv_check = _method(cls, "supports_kv_cache_dtype")
    if kv_check is not None:
        # FlashAttention: fp8 only where the function it calls says so; the rest a list.
        fp8_if = [
            _dotted(n.body[0].value.func)  # type: ignore[attr-defined]
            for n in ast.walk(kv_check)
            if isinstance(n, ast.If)
            and "startswith" in ast.unparse(n.test)
            and isinstance(n.body[0], ast.Return)
            and isinstance(n.body[0].value, ast.Call)
        ]
        listed = [
            ast.literal_eval(n.comparators[0])
            for n in ast.walk(kv_check)
            if isinstance(n, ast.Compare) and isinstance(n.ops[0], ast.In)
        ]
        if len(fp8_if) != 1 or len(listed) != 1:
            raise SystemExit(f"unsupported kv cache check: {ast.unparse(kv_check)}")
        facts["kvCacheDtypes"] = listed[0]
        facts["fp8KvCacheIf"] = fp8_if[0]
    return facts


def attention_backends(resolver: Resolver) -> dict[str, Any]:
    """The names ``VLLM_ATTENTION_BACKEND`` accepts (``AttentionBackendEnum``), the
    order vLLM tries them on CUDA for a non-MLA model (``_get_backend_priorities``),
    and each candidate's limits."""
    registry = resolver.module(REGISTRY)
    cuda = resolver.module(CUDA_PLATFORM)
    abstract = resolver.module(ABSTRACT_BACKEND)
    assert registry is not None and cuda is not None and abstract is not None
    enum = registry.classes["AttentionBackendEnum"]
    paths: dict[str, str] = {}
    for stmt in enum.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            value = ast.literal_eval(stmt.value)
            paths[stmt.targets[0].id] = value if isinstance(value, str) else ""
    priorities = _function(cuda.tree, "", "_get_backend_priorities")
    (mla_switch,) = [s for s in priorities.body if isinstance(s, ast.If)]
    assert ast.unparse(mla_switch.test) == "use_mla", ast.unparse(mla_switch.test)
    (by_major,) = mla_switch.orelse
    assert isinstance(by_major, ast.If)
    test = ast.unparse(by_major.test)
    match = re.fullmatch(r"device_capability\.major == (\d+)", test)
    if match is None:
        raise SystemExit(f"unsupported priority switch: {test}")

    def names(stmts: list[ast.stmt]) -> list[str]:
        (ret,) = stmts
        assert isinstance(ret, ast.Return) and isinstance(ret.value, ast.List)
        return [e.attr for e in ret.value.elts if isinstance(e, ast.Attribute)]

    order = {match.group(1): names(by_major.body), "other": names(by_major.orelse)}
    base = abstract.classes["AttentionBackend"]
    backends: dict[str, Any] = {}
    for name in dict.fromkeys(n for ranked in order.values() for n in ranked):
        module_name, cls_name = paths[name].rsplit(".", 1)
        module = resolver.module(module_name)
        assert module is not None, module_name
        backends[name] = _backend_facts(module.classes[cls_name], base)
    return {"accepted": list(paths), "cudaPriority": order, "backends": backends}


def build_table(location: Path) -> dict[str, Any]:
    source = Source(location)
    resolver = Resolver(source)
    cli = resolver.module("vllm.entrypoints.openai.cli_args")
    engine = resolver.module("vllm.engine.arg_utils")
    if cli is None or engine is None:
        raise SystemExit(f"{location}: no {CLI_ARGS} / {ARG_UTILS}")
    # make_arg_parser: its own flags, FrontendArgs, then AsyncEngineArgs (-> EngineArgs).
    reader = ParserReader(resolver, cli)
    reader.run(_function(cli.tree, "", "make_arg_parser").body)
    reader.run(_function(cli.tree, "FrontendArgs", "add_cli_args").body)
    frontend = reader.flags
    engine_reader = ParserReader(resolver, engine)
    engine_reader.run(_function(engine.tree, "EngineArgs", "add_cli_args").body)
    engine_reader.run(_function(engine.tree, "AsyncEngineArgs", "add_cli_args").body)
    flags: dict[str, dict[str, Any]] = {}
    for table in (frontend, engine_reader.flags):
        for name, spec in table.items():
            if name in flags:
                raise SystemExit(f"{name} is registered twice")
            flags[name] = spec
    # BooleanOptionalAction also registers --no-<flag>.
    for name, spec in list(flags.items()):
        if spec.get("negatable"):
            flags[f"--no-{name.removeprefix('--')}"] = {"value": "none", "negates": name}
    version = source.version()
    table: dict[str, Any] = {
        "package": "vllm",
        "version": version,
        "entrypoint": "python3 -m vllm.entrypoints.openai.api_server",
        "generator": "scripts/vllm_flags.py",
        "notes": [
            "value: required | optional | none (none: a switch; --flag=value is an error)",
            "choices: enforced by argparse; acceptedValues: validated after parsing",
            "FlexibleArgumentParser also accepts --flag_name (underscores) and --flag=value",
            "plugins (load_general_plugins, current_platform.pre_register_and_update) may add "
            "flags or quantization methods at runtime; none in-tree for CUDA",
        ],
        "flags": dict(sorted(flags.items())),
        "environment": environment_variables(resolver),
        "attentionBackends": attention_backends(resolver),
        "compileCache": compile_cache(resolver),
    }
    table["sources"] = [{"path": p, "sha256": h} for p, h in sorted(source.read.items())]
    if source.zip is not None:
        digest = hashlib.sha256(location.read_bytes()).hexdigest()
        table["wheel"] = {"file": location.name, "sha256": digest}
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("source", type=Path, help="vllm wheel or unpacked source directory")
    parser.add_argument("-o", "--output", type=Path, help="write here (default: stdout)")
    parser.add_argument("--version", help="version to record (default: from the wheel)")
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        metavar="SOURCE",
        help="another version's wheel/source: record whether its table is the same",
    )
    args = parser.parse_args(argv)
    table = build_table(args.source)
    if args.version:
        table["version"] = args.version
    comparisons = []
    for other_location in args.compare:
        other = build_table(other_location)
        ours = {s["path"]: s["sha256"] for s in table["sources"]}
        theirs = {s["path"]: s["sha256"] for s in other["sources"]}
        comparisons.append(
            {
                "version": other["version"],
                "wheel": other.get("wheel"),
                "sameFlags": other["flags"] == table["flags"],
                "sameEnvironment": other["environment"] == table["environment"],
                "flagsOnlyHere": sorted(set(table["flags"]) - set(other["flags"])),
                "flagsOnlyThere": sorted(set(other["flags"]) - set(table["flags"])),
                "sourcesDiffering": sorted(
                    p for p in ours.keys() | theirs.keys() if ours.get(p) != theirs.get(p)
                ),
            }
        )
    if comparisons:
        table["comparedWith"] = comparisons
    if not table["version"]:
        parser.error("cannot read the version from the source; pass --version")
    text = json.dumps(table, indent=1, sort_keys=False) + "\n"
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {len(table['flags'])} flags to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
