"""The first process inside a grading sandbox: sets up the mounts, then runs the kernel.

    unshare --net --pid --mount --fork --kill-child -- python -I -S sandbox_init.py SPEC CMD...
    bwrap ... --as-pid-1 -- python -I -S sandbox_init.py SPEC CMD...   (course/sandbox_bwrap.py)

Standard library only (it runs with ``-I -S``, before anything is hidden). Under unshare it
runs as root, as PID 1 of a fresh PID namespace, in a fresh mount and network namespace:

1. every path in SPEC["hide"] is covered by an empty tmpfs (the course repository, OUT,
   the submissions, homes, /tmp, ...); every path in SPEC["keep"] (the interpreter, the
   installed packages, helpers/ and autograder/, the kernel's IPC folder) is bound back at
   its own path, read-only unless marked writable;
2. the kernel's working folder (SPEC["home"]) becomes a size-capped tmpfs owned by the
   kernel's user, holding a copy of what the folder held (the notebook and its files);
3. /proc is mounted afresh (it shows this PID namespace only);
4. a child drops to SPEC["uid"] (no groups, no capabilities, no new privileges, at most
   SPEC["nproc"] processes for that user) and execs CMD with the environment it was given.

Under bwrap (SPEC["mode"] == "bwrap") bwrap has built the mounts and this process is
already the kernel's unprivileged user, PID 1 of bwrap's namespaces: it only copies the
kernel's folder from SPEC["stage"] (read-only) into the size-capped tmpfs bwrap made at
SPEC["home"], and forks the kernel under the same process limit, without switching user.

This process stays as PID 1 and reaps orphans; when the kernel exits it exits too, and the
Linux kernel then kills everything left in the namespace (a detached background process
included). When ``unshare`` is killed, --kill-child kills this process, with the same effect
(bwrap: --die-with-parent).

An interrupt (jupyter_client signals the kernel's process group when a cell runs past its
time limit) reaches the kernel, and this process kills everything else in the namespace,
holding the kernel stopped until that is done:
what the timed-out cell started would otherwise run on beside the next cells (a fork bomb's
children, forked after the signal went out, never see it and keep the machine busy enough
that the kernel's reply is lost).
"""

import ctypes
import json
import os
import resource
import shutil
import signal
import sys
import time

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
libc = ctypes.CDLL(None, use_errno=True)


def mount(source, target, fstype, flags, data=None):
    """mount(2), with the path in the error."""
    enc = [None if x is None else x.encode() for x in (source, target, fstype, data)]
    if libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def outermost(paths):
    """The paths that are not inside another one of them (hiding those hides the rest)."""
    paths = sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)})
    keep = []
    for p in paths:
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in keep):
            keep.append(p)
    return keep


def set_up(spec):
    """Hide, bind back, cap the home folder, mount /proc. Runs as root in the namespaces."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    keep = [(os.path.realpath(p), rw) for p, rw in spec["keep"] if os.path.isdir(p)]
    home = os.path.realpath(spec["home"])
    fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p, _ in keep}
    home_fd = os.open(home, os.O_PATH | os.O_DIRECTORY)
    for path in outermost(spec["hide"]):
        shared = path in ("/tmp", "/dev/shm")  # writable, small: multiprocessing needs both
        opts = "mode=1777,size=64m" if shared else "mode=0755,size=1m"
        mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, opts)
    for path, rw in keep:
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fds[path]}", path, None, MS_BIND | MS_REC)
        flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (0 if rw else MS_RDONLY)
        mount(None, path, None, flags)
    uid, gid = spec["uid"], spec["uid"]
    os.makedirs(home, exist_ok=True)
    mount("tmpfs", home, "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={spec['scratch_mb']}m,mode=0700,uid={uid},gid={gid}")
    shutil.copytree(f"/proc/self/fd/{home_fd}", home, dirs_exist_ok=True, symlinks=True)
    for folder, dirs, files in os.walk(home):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(folder, name), uid, gid)
    for fd in [*fds.values(), home_fd]:
        os.close(fd)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def others(kernel):
    """{pid: state letter} of this namespace's processes besides PID 1 and the kernel, dead
    ones excluded (zombies wait for this process to reap them)."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in (1, os.getpid(), kernel):
            try:
                with open(f"/proc/{name}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue  # gone already
            if state not in "ZX":
                found[int(name)] = state
    return found


def kill_all_but(kernel, seconds=10.0):
    """Kill every process of the namespace but the kernel. First stop them all (a stopped
    process cannot fork), sweeping until a scan finds none still running; then SIGKILL the
    lot and wait until none is left running. Orphans come to PID 1, whose loop in
    run_kernel reaps them. The kernel itself is stopped meanwhile, so its next cell cannot
    start (and count the bomb's last processes) before they are gone: on a loaded machine
    the kernel answered the interrupt and ran the next cell while 23 were still dying."""
    _signal(kernel, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            alive = others(kernel)
            for pid in alive:
                _signal(pid, signal.SIGSTOP)
            if all(state == "T" for state in alive.values()):
                break
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            alive = others(kernel)
            if not alive:
                break
            for pid in alive:
                _signal(pid, signal.SIGKILL)
            time.sleep(0.01)
    finally:
        _signal(kernel, signal.SIGCONT)


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def copy_home(spec):
    """bwrap: the kernel's folder, copied from its read-only stage into its tmpfs."""
    shutil.copytree(spec["stage"], spec["home"], dirs_exist_ok=True, symlinks=True)


def run_kernel(spec, cmd, env):
    """Fork the kernel as the sandbox user; return its exit status once it has ended."""
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            n = spec["nproc"]
            resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
            if "uid" in spec:  # unshare: root until here
                os.setgroups([])
                os.setgid(spec["uid"])
                os.setuid(spec["uid"])  # from root to another user: every capability is dropped
            if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
            os.chdir(spec["home"])
            os.execvpe(cmd[0], cmd, env)
        except BaseException as err:  # noqa: BLE001 - report, never return into the parent's code
            print(f"sandbox: could not start the kernel: {err}", file=sys.stderr, flush=True)
        os._exit(127)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    signal.signal(signal.SIGINT, lambda *_: kill_all_but(pid))
    while True:  # PID 1 reaps every orphan; it ends with the kernel
        try:
            done, status = os.wait()
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if done == pid:
            return os.waitstatus_to_exitcode(status)


def main():
    # Until the kernel runs, an interrupt is ignored here (run_kernel then handles it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec = json.loads(sys.argv[1])
    cmd = sys.argv[2:]
    env = dict(os.environ)
    env.pop("JPY_PARENT_PID", None)  # ipykernel would take PID 1 for a dead parent
    if spec.get("mode") == "bwrap":
        copy_home(spec)
    else:
        set_up(spec)
    code = run_kernel(spec, cmd, env)
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
