

def test_every_public_check_records_its_calls():
    """A check without `recorded` would leave no record: its cell could never pass."""
    import importlib
    from pathlib import Path

    import autograder

    folder = Path(autograder.__file__).parent
    names = ["common", *sorted(p.stem for p in folder.glob("*_checks.py"))]
    checks = {f"{n}.{c}": getattr(importlib.import_module(f"autograder.{n}"), c) for n in names
              for c in importlib.import_module(f"autograder.{n}").__all__
              if c.startswith("check_")}
    assert len(checks) >= 17
    assert [name for name, f in checks.items() if not getattr(f, "recorded_check", False)] == []
