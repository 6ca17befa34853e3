"""The outside half of the bwrap backend: gives up root (staging what the sandbox binds
first), and execs bubblewrap with `course.sandbox_init` as PID 1 inside.

    python -I -S sandbox_bwrap.py SPEC CMD...

Standard library only (it runs with ``-I -S``). SPEC is `course.sandbox.sandbox_command`'s:

1. as root, this process becomes SPEC["uid"] (no groups, no capabilities) before bwrap
   runs: bwrap is then unprivileged, in a user namespace of its own, exactly as it is for an
   ordinary user (root's processes are exempt from RLIMIT_NPROC, another user's are not).
   bwrap looks its sources up as that user, who may not walk the paths leading to them
   (``/root`` is 0700 where pyenv keeps the interpreter; the worker's scratch folder is
   0700), so first, in a mount namespace of this process's own, every path bwrap binds (the
   interpreter, the packages, helpers/ and autograder/, the IPC folder, the kernel's folder,
   sandbox_init.py) is bound onto a tmpfs at `STAGE_ROOT` and bwrap binds it from there;
   the kernel's folder (the worker's private copy) is handed to that user;
2. SIGINT is ignored from here on, and so by bwrap, which would die of the interrupt
   jupyter_client sends the kernel's process group at the cell time limit (and take the
   kernel with it, ``--die-with-parent``); the init inside installs its own handler;
3. bwrap builds the kernel's world from nothing (`bwrap_args`) and runs sandbox_init.py
   with the environment this process was given, minus anything not in SPEC["env"].
"""

import ctypes
import json
import os
import signal
import stat
import sys

# The system's programs and libraries, read-only: symlinks (merged /usr) are recreated.
SYSTEM = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Of /etc, what the dynamic linker, the time zone, name lookup and fontconfig read (without
# fonts/, matplotlib's `fc-list` prints an error, and nbgrader fails a test cell with stderr
# output); nothing else: no passwd, no shadow, no host or network settings.
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "nsswitch.conf",
       "host.conf", "alternatives", "fonts", "os-release", "mime.types")
STAGE = "/run/course-home"  # the kernel's folder as given, read-only: the init copies it
SMALL_TMPFS = 64 << 20  # /tmp and /dev/shm (multiprocessing needs both)
STAGE_ROOT = "/run/course-sandbox"  # root only: a tmpfs here, in this process's namespace
CLONE_NEWNS, MS_BIND, MS_REC, MS_PRIVATE = 0x20000, 4096, 16384, 1 << 18


def _under(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def bwrap_args(spec, source):
    """bwrap's arguments for SPEC, up to the command; ``source`` maps each path bwrap binds
    to where bwrap finds it (itself, or its staged copy)."""
    uid = str(spec["uid"])
    args = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--as-pid-1", "--uid", uid, "--gid", uid, "--hostname", "sandbox"]
    system = []
    for name in SYSTEM:
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
            system.append(path)
    for name in ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    # torch's cpuinfo reads the CPU list here (and complains on stderr without it)
    args += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    args += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(SMALL_TMPFS), "--tmpfs", "/dev/shm",
             "--perms", "1777", "--size", str(SMALL_TMPFS), "--tmpfs", "/tmp"]
    keep = [(p, rw) for p, rw in spec["keep"] if p in source and not _under(p, system)]
    for path, rw in keep:
        args += ["--bind" if rw else "--ro-bind", source[path], path]
    for path in spec["hide"]:  # only what lies inside a bound folder is visible to hide
        if _under(path, [p for p, _ in keep]) and os.path.isdir(path):
            args += ["--size", str(1 << 20), "--tmpfs", path]
    home = spec["home"]
    args += ["--perms", "0700", "--size", str(spec["scratch_mb"] << 20), "--tmpfs", home,
             "--ro-bind", source[home], STAGE, "--ro-bind", source[spec["init"]], spec["init"],
             "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", home, "--clearenv"]
    for key, value in sorted(os.environ.items()):
        if key in spec["env"]:
            args += ["--setenv", key, value]
    return args


def _mount(source, target, fstype, flags, data=None):
    libc = ctypes.CDLL(None, use_errno=True)
    enc = [None if x is None else x.encode() for x in (source, target, fstype, data)]
    if libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def stage(paths):
    """Root only: ``paths`` bound onto a fresh tmpfs at STAGE_ROOT, in a mount namespace of
    this process's own; path -> its staged copy."""
    if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    os.makedirs(STAGE_ROOT, mode=0o755, exist_ok=True)
    info = os.lstat(STAGE_ROOT)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        raise OSError(f"{STAGE_ROOT} must be a folder owned by root")
    _mount("tmpfs", STAGE_ROOT, "tmpfs", 0, "mode=0755,size=1m")
    staged = {}
    for i, path in enumerate(paths):
        staged[path] = f"{STAGE_ROOT}/{i}"
        if os.path.isdir(path):
            os.mkdir(staged[path])
        else:
            open(staged[path], "w").close()
        _mount(path, staged[path], None, MS_BIND | MS_REC)
    return staged


def main():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec = json.loads(sys.argv[1])
    cmd = sys.argv[2:]
    home = os.path.realpath(spec["home"])
    spec["home"] = home
    paths = [p for p, _ in spec["keep"] if os.path.exists(p)] + [home, spec["init"]]
    source = {p: p for p in paths}
    # Looked up now: once root is given up, the stdlib under /root may be out of reach.
    found = [os.path.join(d, "bwrap") for d in os.get_exec_path()]
    program = next((p for p in found if os.access(p, os.X_OK)), "bwrap")
    if os.geteuid() == 0:
        uid = spec["uid"]
        for folder, dirs, files in os.walk(home):  # the worker's private copy: the init
            for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                os.lchown(name, uid, uid)  # inside copies it as the kernel's user
        source = stage(paths)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from root to another user: every capability is dropped
    inside = {"mode": "bwrap", "nproc": spec["nproc"], "home": home, "stage": STAGE}
    argv = bwrap_args(spec, source) + ["--", sys.executable, "-I", "-S", spec["init"],
                                       json.dumps(inside), *cmd]
    try:
        os.execv(program, argv)
    except OSError as err:
        print(f"sandbox: could not run bwrap: {err}", file=sys.stderr, flush=True)
        sys.exit(127)


if __name__ == "__main__":
    main()
