"""A sandbox per graded notebook: the kernel runs with no network, as a user of its own, in
its own PID namespace, seeing only the interpreter, the installed packages and its folder.

`resolve` picks the backend for a run (``[grading] sandbox``): "bwrap" (bubblewrap, for
root and for an ordinary user alike: `course.sandbox_bwrap` gives up root, binds what the
kernel needs into an empty root and runs `course.sandbox_init` as PID 1 inside), "unshare"
(root only: util-linux ``unshare`` for the network, PID and mount namespaces, then
`course.sandbox_init` as root inside them hides, binds and drops to the kernel's user);
"none" only when asked for. "auto" takes the first backend that works here, bwrap first,
and fails loudly, naming the setting, where none does.

In the worker, `SandboxedExecute` replaces nbgrader's Execute preprocessor: its kernel
manager talks to the kernel over jupyter_client's IPC transport (Unix sockets in a folder
shared with the sandbox: TCP cannot cross an empty network namespace) and wraps the kernel
command (`SandboxedKernelManager._async_launch_kernel`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BACKENDS = ("auto", "unshare", "bwrap", "none")
NOT_SANDBOXED = "not sandboxed"
INIT = Path(__file__).with_name("sandbox_init.py")
BWRAP = Path(__file__).with_name("sandbox_bwrap.py")
UID_BASE = 1_000_000_000  # + the worker's pid: a user no file and no other worker has
NPROC = 256  # processes and threads of the kernel's user: a fork bomb stops there
# What the kernel's environment keeps of the worker's; everything else (tokens, the
# instructor's settings, real-data paths) stays out.
KEEP_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "NBGRADER_EXECUTION", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NO_ALBUMENTATIONS_UPDATE",
            "PYTHONHASHSEED", "JPY_SESSION_NAME")
SET_ENV = ("PATH", "HOME", "TMPDIR", "PYTHONPATH", "MPLCONFIGDIR")  # kernel_env sets these
# Not JPY_PARENT_PID (jupyter_client sets it unless the kernel is "independent"): ipykernel
# would poll for that parent and, seeing PID 1 (the sandbox's init) as its parent instead,
# shut itself down. The init ends the kernel with the worker.


class SandboxError(RuntimeError):
    """No sandbox backend can run here, or the one asked for cannot."""


def _unshare_works() -> str | None:
    """Why the unshare backend cannot run here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"Linux namespaces are not available on {sys.platform}"
    if shutil.which("unshare") is None:
        return "util-linux `unshare` is not installed"
    if os.geteuid() != 0:
        return ("the unshare backend needs root (it mounts and switches to an unprivileged "
                "user); run `course grade` as root or install bubblewrap")
    probe = ["unshare", "--net", "--pid", "--mount", "--fork", "--kill-child", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"`{' '.join(probe)}` failed: {err}"
    if done.returncode != 0:
        return f"`{' '.join(probe)}` failed: {done.stderr.strip()[:200]}"
    return None


BWRAP_INSTALL = "Debian/Ubuntu: apt-get install bubblewrap; Fedora/RHEL: dnf install bubblewrap"


def _bwrap_works() -> str | None:
    """Why the bwrap backend cannot run here, or None when it can: a real sandbox is started
    (as `sandbox_command` builds it) around ``python -c pass``."""
    if not sys.platform.startswith("linux"):
        return f"Linux namespaces are not available on {sys.platform}"
    if shutil.which("bwrap") is None:
        return f"bubblewrap (`bwrap`) is not installed ({BWRAP_INSTALL})"
    with tempfile.TemporaryDirectory(prefix="course-probe-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        cmd = sandbox_command([sys.executable, "-I", "-S", "-c", "pass"], str(home), [], 1,
                              backend="bwrap")
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                                  env=kernel_env({}, str(home)))
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"bwrap failed to start: {err}"
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return (f"bwrap cannot create its namespaces here ({why[:200]}); unprivileged user "
                "namespaces may be switched off (sysctl kernel.unprivileged_userns_clone, "
                "user.max_user_namespaces, Ubuntu's kernel.apparmor_restrict_unprivileged_userns)"
                " or forbidden by the container's seccomp/AppArmor profile")
    return None


def resolve(asked: str) -> str:
    """The backend a run uses for ``[grading] sandbox = asked``; SandboxError if it cannot."""
    if asked not in BACKENDS:
        raise SandboxError(f"[grading] sandbox = {asked!r}; expected one of {BACKENDS}")
    if asked == "none":
        return "none"
    probes = {"bwrap": _bwrap_works, "unshare": _unshare_works}
    tried = [asked] if asked in probes else list(probes)
    why = {}
    for backend in tried:
        why[backend] = probes[backend]()
        if why[backend] is None:
            return backend
    reasons = "; ".join(f"{b}: {w}" for b, w in why.items())
    if asked != "auto":
        raise SandboxError(f'[grading] sandbox = "{asked}" cannot run on this machine '
                           f'({reasons}); set sandbox = "auto" to take any backend that works '
                           'here, or "none" to grade unsandboxed')
    raise SandboxError(f"no grading sandbox can run on this machine ({reasons}). Student code "
                       'would run unconfined; to grade anyway, set [grading] sandbox = "none" '
                       "in course/course.toml (every row will then say "
                       f"{NOT_SANDBOXED!r})")


def row_note(backend: str) -> str:
    """What every grades.csv row of a run says about its sandbox."""
    return NOT_SANDBOXED if backend == "none" else f"sandbox={backend}"


def _package_dirs() -> list[str]:
    """Folders the kernel must import from: the interpreter, site-packages, and the parents
    of this course's packages (helpers, autograder)."""
    import autograder
    import helpers

    dirs = {sys.base_prefix, sys.prefix, *(p for p in sys.path if "-packages" in p)}
    dirs |= {str(Path(m.__file__).parent) for m in (helpers, autograder)}
    return sorted(d for d in dirs if d and os.path.isdir(d))


# Top-level folders the kernel sees: the system's programs, libraries and settings. Every
# other one (/home, /root, /tmp, /var, /run, /srv, /opt, /work, ...) is covered by an empty
# tmpfs, and only the interpreter and the packages are bound back (`_package_dirs`).
SYSTEM = frozenset({"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc",
                    "sbin", "sys", "usr"})


def _hidden(extra: list[str]) -> list[str]:
    """What the kernel must not see: every top-level folder but the system's, /dev/shm, and
    ``extra`` (the course, OUT, the submissions: in case they live in a system folder)."""
    from course.config import REPO_ROOT

    hide = [str(p) for p in Path("/").iterdir() if p.is_dir() and not p.is_symlink()
            and p.name not in SYSTEM]
    hide += ["/dev/shm", str(Path.home()), tempfile.gettempdir(), str(REPO_ROOT), *extra]
    return sorted({str(Path(p).resolve()) for p in hide if Path(p).resolve() != Path("/")})


def colab_standin() -> str:
    """The folder of the grading stand-in for ``google.colab`` (autograder/colab_standin):
    on every grading kernel's PYTHONPATH, sandboxed or not, so a submission's Drive mount or
    ``from google.colab import files`` costs nothing. Inside autograder/, it is bound into
    the sandbox with it and never reaches the student bundle."""
    import autograder

    return str(Path(autograder.__file__).parent / "colab_standin")


def kernel_env(env: dict[str, str], home: str) -> dict[str, str]:
    """The scrubbed environment of a sandboxed kernel."""
    import autograder
    import helpers

    roots = {str(Path(m.__file__).parent.parent) for m in (helpers, autograder)}
    bindir = str(Path(sys.executable).parent)
    kept = {k: v for k, v in env.items() if k in KEEP_ENV}
    return {**kept, "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin", "HOME": home,
            "TMPDIR": home, "PYTHONPATH": os.pathsep.join([*sorted(roots), colab_standin()]),
            "MPLCONFIGDIR": home, "LANG": env.get("LANG", "C.UTF-8")}


def sandbox_uid() -> int:
    """The user a worker's sandboxed processes run as: one no file and no other worker has."""
    return UID_BASE + os.getpid()


def sandbox_command(cmd: list[str], home: str, hide: list[str], scratch_mb: int,
                    writable: tuple[Path, ...] | list[Path] = (), backend: str = "unshare"
                    ) -> list[str]:
    """``cmd`` wrapped to run in the sandbox of ``backend`` (no network, its own PID and
    mount namespaces, as `sandbox_uid`, HOME a tmpfs of ``scratch_mb`` holding a copy of
    ``home``, ``hide`` hidden besides every non-system folder): the kernel's wrapper, and the
    re-check's (`course.recheck`). Run it with `kernel_env` as its environment."""
    spec = {"uid": sandbox_uid(), "nproc": NPROC, "scratch_mb": scratch_mb, "home": str(home),
            "hide": _hidden(list(hide)),
            "keep": [[d, False] for d in _package_dirs()] + [[str(w), True] for w in writable]}
    if backend == "bwrap":
        spec |= {"init": str(INIT), "env": [*KEEP_ENV, *SET_ENV]}
        return [sys.executable, "-I", "-S", str(BWRAP), json.dumps(spec), *cmd]
    return ["unshare", "--net", "--pid", "--mount", "--fork", "--kill-child", "--",
            sys.executable, "-I", "-S", str(INIT), json.dumps(spec), *cmd]


def _kernel_manager_class():
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import Dict

    class SandboxedKernelManager(AsyncKernelManager):
        """A kernel manager that starts its kernel inside the sandbox, over IPC."""

        sandbox = Dict(help="backend; ipc: the socket folder; hide: extra paths to hide").tag(
            config=True)

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            ipc = Path(self.sandbox["ipc"])
            self.transport = "ipc"
            self.ip = str(ipc / "k")
            self.connection_file = str(ipc / "kernel.json")

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            uid = sandbox_uid()
            ipc = Path(self.sandbox["ipc"])
            os.chmod(ipc, 0o700)
            if os.geteuid() == 0:  # the kernel runs as another user; else as this one
                os.chown(ipc, uid, uid)
                os.chown(self.connection_file, uid, uid)  # jupyter_client wrote it 0600
            home = str(Path(kw.get("cwd") or os.getcwd()).resolve())
            wrapped = sandbox_command(kernel_cmd, home, self.sandbox.get("hide", []),
                                      self.sandbox["scratch_mb"], writable=[ipc],
                                      backend=self.sandbox.get("backend", "unshare"))
            kw["env"] = kernel_env(kw.get("env") or dict(os.environ), home)
            kw["independent"] = True  # see KEEP_ENV
            return await super()._async_launch_kernel(wrapped, **kw)

    return SandboxedKernelManager


def execute_class():
    """nbgrader's Execute preprocessor, starting its kernels in the sandbox."""
    from nbgrader.preprocessors import Execute

    manager = _kernel_manager_class()

    class SandboxedExecute(Execute):
        def __init__(self, *args, **kwargs):
            kwargs["kernel_manager_class"] = manager  # nbgrader's own default is set so
            super().__init__(*args, **kwargs)

    SandboxedExecute.__name__ = "SandboxedExecute"
    return SandboxedExecute


def sandboxed(config, scratch: Path, hide: list[str], scratch_mb: int = 1024,
              backend: str = "unshare"):
    """``config`` (nbgrader's) with Execute replaced by the sandboxed one (``backend``)."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute

    steps = list(config.Autograde.get("autograde_preprocessors")
                 or Autograde.autograde_preprocessors.default())
    steps[steps.index(Execute)] = execute_class()
    config.Autograde.autograde_preprocessors = steps
    ipc = scratch / "ipc"
    ipc.mkdir(exist_ok=True)
    config.SandboxedKernelManager.sandbox = {"ipc": str(ipc), "hide": [str(p) for p in hide],
                                             "scratch_mb": scratch_mb, "backend": backend}
    return config
