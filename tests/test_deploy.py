"""The Kubernetes example runs `course grade` on every shard once, as the CLI reads it."""

import subprocess

import yaml

from course.cli import build_parser
from course.config import REPO_ROOT
from course.grade import parse_shard

JOB = REPO_ROOT / "deploy" / "kubernetes" / "grade-job.yaml"


def _args_in_pod(container: dict, index: int) -> list[str]:
    """The argv `sh -c` hands to python in pod ``index``: the shell expands it, not us."""
    assert container["command"] == ["sh", "-c"]
    script = container["args"][0]
    assert script.startswith("python -m course "), script
    expanded = subprocess.run(
        ["sh", "-c", "printf '%s\\n' " + script.removeprefix("python -m course ")],
        env={"JOB_COMPLETION_INDEX": str(index), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True).stdout
    return expanded.splitlines()


def test_every_index_grades_its_own_shard_into_its_own_folder():
    job = yaml.safe_load(JOB.read_text())
    spec = job["spec"]
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    container = spec["template"]["spec"]["containers"][0]
    n = spec["completions"]
    shards, outs = set(), set()
    for index in range(n):  # Kubernetes numbers the pods 0 .. completions - 1
        args = build_parser().parse_args(_args_in_pod(container, index))
        assert args.command == "grade"
        i, total = parse_shard(args.shard)
        assert total == n, f"--shard N is {total} but the Job has {n} completions"
        shards.add(i)
        outs.add(args.out)
        assert args.workers == int(container["resources"]["requests"]["cpu"])
    assert shards == set(range(1, n + 1)) and len(outs) == n


def test_the_example_is_what_the_guide_points_at():
    guide = (REPO_ROOT / "docs" / "instructors.md").read_text()
    assert str(JOB.relative_to(REPO_ROOT)) in guide
