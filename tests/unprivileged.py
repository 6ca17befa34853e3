"""Run a command as an ordinary user (``nobody``) from a root test, seeing the interpreter,
the repository and a work folder even where they lie under folders that user may not
enter (pyenv under /root, which is 0700; a checkout under /root on a CI machine).

The command runs in a mount namespace of its own: each folder on the way that ``nobody``
may not enter is covered by a tmpfs it may (in that namespace only), with just the needed
child bound back from the original. Nothing changes on the machine itself.
"""

import os
import subprocess
import sys
from pathlib import Path

NOBODY = 65534

# Root, inside `unshare --mount`: open the way to every path in argv[2] (os.pathsep-separated;
# the originals are bound under argv[1]), then become nobody and exec the rest of argv.
HARNESS = r"""
import os, subprocess, sys, tempfile
from pathlib import Path

def run(*cmd):
    subprocess.run(cmd, check=True)

def blocked(path):
    for a in [*reversed(path.parents)][1:]:
        if not os.stat(a).st_mode & 0o001:
            return a
    return None

need = [Path(p) for p in sys.argv[2].split(os.pathsep)]
while True:
    todo = {}
    for p in need:
        a = blocked(p)
        if a is not None:
            todo.setdefault(a, set()).add(p.relative_to(a).parts[0])
    if not todo:
        break
    for a, children in todo.items():
        keep = tempfile.mkdtemp(prefix="orig-", dir=sys.argv[1])
        run("mount", "--bind", str(a), keep)
        run("mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", "tmpfs", str(a))
        for child in children:
            (a / child).mkdir()
            run("mount", "--rbind", os.path.join(keep, child), str(a / child))
os.execvp("setpriv", ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                      *sys.argv[3:]])
"""


def as_nobody(cmd: list[str], work: Path, need: list[Path], env: dict[str, str], **kw
              ) -> subprocess.CompletedProcess:
    """``cmd`` run as nobody, with a way opened to ``work`` (root's scratch), each path of
    ``need`` and this interpreter; needs root."""
    need = [work, *need, Path(sys.prefix), Path(sys.base_prefix)]
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "--",
                           sys.executable, "-I", "-c", HARNESS, str(work),
                           os.pathsep.join(str(p.resolve()) for p in need), *cmd],
                          env=env, **kw)


def give_to_nobody(path: Path) -> None:
    """``path`` and everything in it owned by nobody."""
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.lchown(name, NOBODY, NOBODY)
