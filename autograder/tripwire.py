"""Tripwires: did the student's function call the reference it was asked to write?

Where ``helpers`` (or torchvision / scikit-learn) already has the function an exercise asks
for, the hidden check runs the student's function while watching for calls into those
references. A profiler hook sees every Python-level call by its code object, so it fires
however the function was reached: ``helpers.metrics.box_iou``, ``from torchvision.ops
import box_iou as f``, a lambda around it, or a call from a helper of the student's own.

A reference is a function or a whole module. A module stands for every function written in
its source file (top-level functions, methods, properties, nested functions and lambdas,
private ones included), so renaming or adding a private helper there never opens a gap.

A profiler hook watches one thread, and the student's function can switch it off. The
re-check process (`autograder.recheck`) therefore also calls `guard_every_thread`: while a
student's function runs, every function object holding a watched code object (or an equal
copy of one) gets a guard's code instead, which records the call and raises, in whatever
thread it is called and whatever the profiler's state. The notebook's kernel does not guard
(its checks are a first opinion; the re-check decides).
"""

from __future__ import annotations

import functools
import gc
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import CodeType, FunctionType, ModuleType

__all__ = ["Reference", "guard_every_thread", "run_without", "tripwires", "watched_code"]

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


_GUARD = {"on": False}


def guard_every_thread() -> None:
    """From now on, `tripwires` also swaps guards into the watched functions (see above)."""
    _GUARD["on"] = True


def _guard_code(nfree: int, fire: Callable[[], None]) -> CodeType:
    """A code object that calls ``fire`` (which raises) and fits a function with ``nfree``
    closure cells (CPython refuses a ``__code__`` whose free variables differ in number)."""
    cells = [f"cell{i}" for i in range(nfree)]
    source = ("def outer():\n" + "".join(f"    {c} = None\n" for c in cells)
              + "    def guard(*args, **kwargs):\n        fire = '__FIRE__'\n        fire()\n"
              + f"        return ({''.join(c + ', ' for c in cells)})\n"  # never reached
              + "    return guard\n")
    namespace: dict = {}
    exec(compile(source, "<tripwire guard>", "exec"), namespace)  # noqa: S102 - our own text
    code = namespace["outer"]().__code__
    return code.replace(co_consts=tuple(fire if c == "__FIRE__" else c
                                        for c in code.co_consts))


_HOLDERS: dict[frozenset, list[FunctionType]] = {}


def _holders(watched: dict[CodeType, str]) -> list[FunctionType]:
    """Every live function whose code is watched, or equal to a watched code object (a code
    object rebuilt by unpickling equals its model). Found once per process and set of
    references (a scan of every object costs about 0.5 s): in the re-check, student code
    runs only while unpickling, before the first scan, and inside the guarded calls."""
    key = frozenset(watched)
    if key not in _HOLDERS:
        _HOLDERS[key] = [f for f in gc.get_objects()
                         if type(f) is FunctionType and f.__code__ in watched]  # no __class__
    return _HOLDERS[key]


def _swap_in_guards(watched: dict[CodeType, str], fired: list[str]) -> list:
    """Give every function holding watched code a guard; the (function, code) pairs to put
    back."""

    def fire(name: str) -> None:
        if name not in fired:
            fired.append(name)
        raise AssertionError(f"calls {name}, which this exercise may not use")

    swapped = []
    for func in _holders(watched):
        code = func.__code__
        if code not in watched:
            continue  # guarded already (a call inside a guarded call)
        func.__code__ = _guard_code(len(code.co_freevars), functools.partial(fire, watched[code]))
        swapped.append((func, code))
    return swapped


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
    swapped = _swap_in_guards(watched, fired) if _GUARD["on"] else []
    try:
        yield fired
    finally:
        for func, code in swapped:
            func.__code__ = code
        sys.setprofile(previous)


def run_without(func: Callable, forbidden: Mapping[str, Reference], *args, **kwargs):
    """Call ``func`` and fail the check if it used any of the ``forbidden`` references."""
    with tripwires(forbidden) as fired:
        try:
            result = func(*args, **kwargs)
        except Exception:
            if not fired:
                raise
            result = None  # a guard's error, or what followed from it: the call is the news
    if fired:
        raise AssertionError(
            f"{getattr(func, '__name__', 'your function')} calls {', '.join(fired)}; the "
            "exercise is to write this step yourself (see the exercise's list of calls "
            "that are off limits)"
        )
    return result
