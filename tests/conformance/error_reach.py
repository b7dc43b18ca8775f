"""Which XenAPI error codes a simulator handler can raise, read from the
source: the ``XenAPIError("CODE", ...)`` literals in the handler and in
every xapisim function it calls or passes along (callbacks such as
current_operations checks) or keeps in a table, followed through modules,
closures and, for
calls on objects, every xapisim method of that name (an over-estimate:
"can raise", not "raises in this case"). ``XenAPIError(f"SR_BACKEND_FAILURE_{n}")``
counts as the SR_BACKEND_FAILURE family."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
import types
from collections.abc import Callable
from typing import Any

import xapisim

SM_FAMILY = "SR_BACKEND_FAILURE"


def _xapisim_functions(obj: Any) -> bool:
    return isinstance(obj, types.FunctionType) and obj.__module__.startswith("xapisim")


def _methods_by_name() -> dict[str, list[Callable]]:
    """Every function defined in a class of an xapisim module, by name."""
    out: dict[str, list[Callable]] = {}
    for info in pkgutil.walk_packages(xapisim.__path__, "xapisim."):
        if ".dom0lib" in info.name:
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for name, fn in vars(cls).items():
                if isinstance(fn, staticmethod | classmethod):
                    fn = fn.__func__
                if _xapisim_functions(fn):
                    out.setdefault(name, []).append(fn)
    return out


class ErrorReach:
    def __init__(self) -> None:
        self.methods = _methods_by_name()
        self._memo: dict[Callable, set[str]] = {}

    def codes(self, fn: Callable) -> set[str]:
        fn = inspect.unwrap(fn)
        if fn in self._memo:
            return self._memo[fn]
        self._memo[fn] = set()  # cycles end here
        found: set[str] = set()
        tree = self._tree(fn)
        if tree is not None:
            scope = self._scope(fn)
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    found |= self._raised_here(node)
                for target in self._targets(node, scope):
                    found |= self.codes(target)
        self._memo[fn] = found
        return found

    @staticmethod
    def _tree(fn: Callable) -> ast.AST | None:
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError):
            return None
        try:
            return ast.parse(source)
        except SyntaxError:  # a lambda in the middle of an expression
            try:
                return ast.parse(source.strip().rstrip(",").split("=", 1)[-1].strip())
            except SyntaxError:
                return None

    @staticmethod
    def _scope(fn: Callable) -> dict[str, Any]:
        scope = dict(fn.__globals__)
        try:
            closure = inspect.getclosurevars(fn)
        except (TypeError, ValueError):
            return scope
        scope.update(closure.globals)
        scope.update(closure.nonlocals)
        return scope

    @staticmethod
    def _raised_here(call: ast.Call) -> set[str]:
        f = call.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) \
            else None
        if name != "XenAPIError" or not call.args:
            return set()
        first = call.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return {first.value}
        if isinstance(first, ast.JoinedStr) and first.values and isinstance(
                first.values[0], ast.Constant) and str(first.values[0].value).startswith(
                SM_FAMILY):
            return {SM_FAMILY}
        return set()

    def _targets(self, node: ast.AST, scope: dict[str, Any]) -> list[Callable]:
        """xapisim functions a name, module attribute or method call names."""
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            obj = scope.get(node.id)
            if isinstance(obj, dict):  # a table of functions (dispatch by key)
                return [v for v in obj.values() if _xapisim_functions(v)]
            return [obj] if _xapisim_functions(obj) else []
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            base = node.value
            if isinstance(base, ast.Name):
                mod = scope.get(base.id)
                if isinstance(mod, types.ModuleType) and mod.__name__.startswith("xapisim"):
                    obj = getattr(mod, node.attr, None)
                    return [obj] if _xapisim_functions(obj) else []
            return list(self.methods.get(node.attr, []))
        return []
