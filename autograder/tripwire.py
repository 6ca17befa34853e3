"""Tripwires: did the student's function call the reference it was asked to write?

Where ``helpers`` (or torchvision / scikit-learn) already has the function an exercise asks
for, the hidden check runs the student's function while watching for calls into those
references. A profiler hook sees every Python-level call by its code object, so it fires
however the function was reached: ``helpers.metrics.box_iou``, ``from torchvision.ops
import box_iou as f``, a lambda around it, or a call from a helper of the student's own.

A reference is a function or a whole module. A module stands for every function written in
its source file (top-level functions, methods, properties, nested functions and lambdas,
private ones included), so renaming or adding a private helper there never opens a gap.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import CodeType, ModuleType

__all__ = ["Reference", "run_without", "tripwires", "watched_code"]

Reference = Callable | ModuleType
_COMPREHENSIONS = ("<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>")


def _code_of(func: Callable) -> CodeType:
    func = getattr(func, "__wrapped__", func)
    func = getattr(func, "__func__", func)  # bound methods
    code = getattr(func, "__code__", None)
    if code is None:
        raise TypeError(f"{func!r} has no Python code object to watch")
    return code


def _functions_of(obj, seen: set[int]) -> Iterator[Callable]:
    """Functions reachable from a module member: itself, or a class's methods and properties."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        yield from (f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
    elif inspect.isclass(obj):
        for member in vars(obj).values():
            yield from _functions_of(member, seen)
    elif callable(obj) and hasattr(inspect.unwrap(obj), "__code__"):
        yield inspect.unwrap(obj)


@functools.cache
def _module_codes(module: ModuleType) -> dict[CodeType, str]:
    """Every code object written in ``module``'s file, named module.qualname."""
    source = getattr(module, "__file__", None)
    if source is None:
        raise TypeError(f"{module.__name__} has no source file whose functions could be watched")
    codes: dict[CodeType, str] = {}

    def add(code: CodeType) -> None:
        if code.co_filename != source or code in codes or code.co_name in _COMPREHENSIONS:
            return  # another file's code (an import), or a comprehension run by its owner
        codes[code] = f"{module.__name__}.{code.co_qualname}"
        for const in code.co_consts:  # nested functions and lambdas
            if isinstance(const, CodeType):
                add(const)

    seen: set[int] = set()
    for member in list(vars(module).values()):
        for func in _functions_of(member, seen):
            add(func.__code__)
    if not codes:
        raise ValueError(f"module {module.__name__} defines no Python function to watch")
    return codes


def watched_code(forbidden: Mapping[str, Reference]) -> dict[CodeType, str]:
    """The code objects ``forbidden`` stands for, each with the name a failure reports."""
    watched: dict[CodeType, str] = {}
    for name, ref in forbidden.items():
        if isinstance(ref, ModuleType):
            watched.update({c: n for c, n in _module_codes(ref).items() if c not in watched})
        else:
            watched.setdefault(_code_of(ref), name)
    return watched


@contextmanager
def tripwires(forbidden: Mapping[str, Reference]) -> Iterator[list[str]]:
    """Watch calls to ``forbidden`` (name -> function or module); yields the names called."""
    watched = watched_code(forbidden)
    fired: list[str] = []

    def hook(frame, event, arg):
        if event == "call" and frame.f_code in watched:
            name = watched[frame.f_code]
            if name not in fired:
                fired.append(name)

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield fired
    finally:
        sys.setprofile(previous)


def run_without(func: Callable, forbidden: Mapping[str, Reference], *args, **kwargs):
    """Call ``func`` and fail the check if it used any of the ``forbidden`` references."""
    with tripwires(forbidden) as fired:
        result = func(*args, **kwargs)
    if fired:
        raise AssertionError(
            f"{getattr(func, '__name__', 'your function')} calls {', '.join(fired)}; the "
            "exercise is to write this step yourself (see the exercise's list of calls "
            "that are off limits)"
        )
    return result
