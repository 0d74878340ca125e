"""The container of one pod, set up inside a private mount namespace, then exec'd.

Run by the pod runner as ``unshare --mount --propagation private python -I sandbox.py SPEC``
(standard library only: nothing of the project is imported here). SPEC is a JSON file:

    argv, env, workdir   what to exec, with which variables, from which directory
    dev                  an empty folder: a tmpfs there becomes the container's /dev
                         (null, zero, full, random, urandom, tty, fd, stdin/out/err,
                         pts, shm), moved over /dev
    mounts               [{source, target, readOnly, file}]: the pod's volumes (and the
                         termination-log file) bound at their paths, parents first
    imagePaths           folders that stand in for the image's own files (the virtualenv,
                         the checkout it runs from, helm's folder): where a volume covers
                         one (an emptyDir at /tmp over a checkout in /tmp), it is bound
                         back, read-only, at its path inside that volume
    readOnlyRoot         remount / read-only (securityContext.readOnlyRootFilesystem)
    startErrorFd         an inherited descriptor to write why the container could not start
                         (opened by the runner, outside this namespace: a file opened for
                         writing here would keep / from becoming read-only)

What a container runtime would refuse to start writes ``startErrorFd`` and exits 128,
which the runner reports as ``StartError``. A mount point missing on this machine is
created as an empty directory (or file) first: the container's root is the host's.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path
from typing import Any

MS_RDONLY = 1
MS_NOSUID = 2
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1"}
LINKS["stderr"] = "/proc/self/fd/2"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    def raw(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    if _libc.mount(raw(source), raw(target), raw(fstype), flags, raw(data)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source or fstype} on {target}: {os.strerror(errno)}")


def bind(source: str, target: str, *, read_only: bool) -> None:
    mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def private_dev(staging: str) -> None:
    mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k")
    for name in DEVICES:
        node = Path(staging, name)
        node.touch()
        bind(f"/dev/{name}", str(node), read_only=False)
    for name, target in LINKS.items():
        Path(staging, name).symlink_to(target)
    for name in ("pts", "shm"):
        Path(staging, name).mkdir()
    mount("/dev/pts", f"{staging}/pts", None, MS_BIND | MS_REC)
    mount("shm", f"{staging}/shm", "tmpfs", MS_NOSUID, "mode=1777,size=65536k")
    mount(staging, "/dev", None, MS_MOVE)


def mount_point(target: str, *, file: bool) -> None:
    path = Path(target)
    if path.exists():
        return
    if file:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    else:
        path.mkdir(parents=True, exist_ok=True)


def _held(path: str) -> str:
    """A name for ``path`` that no later mount can cover: an O_PATH descriptor's."""
    return f"/proc/self/fd/{os.open(path, os.O_PATH | os.O_CLOEXEC)}"


def _covered(path: str, targets: list[str]) -> bool:
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets)


def set_up(spec: dict[str, Any]) -> None:
    mounts: list[dict[str, Any]] = sorted(
        spec.get("mounts") or [], key=lambda m: Path(m["target"]).parts
    )
    # every source held before anything is mounted: a volume at /tmp would hide a
    # source below /tmp (a state folder there)
    sources = [_held(m["source"]) for m in mounts]
    targets = [m["target"] for m in mounts]
    image = [(p, _held(p)) for p in spec.get("imagePaths") or [] if _covered(p, targets)]
    private_dev(str(spec["dev"]))
    for entry, source in zip(mounts, sources, strict=True):
        mount_point(entry["target"], file=bool(entry.get("file")))
        bind(source, entry["target"], read_only=bool(entry.get("readOnly")))
    for path, source in image:
        mount_point(path, file=False)
        bind(source, path, read_only=True)
    if spec.get("readOnlyRoot"):
        mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def main(path: str) -> None:
    spec = json.loads(Path(path).read_text())
    argv, env = list(spec["argv"]), dict(spec["env"])
    fd = int(spec["startErrorFd"])
    os.set_inheritable(fd, False)  # not the step's
    with os.fdopen(fd, "w", encoding="utf-8") as start_error:
        try:
            set_up(spec)
        except OSError as error:
            start_error.write(f"the container's filesystem cannot be set up: {error}")
            sys.exit(128)
        try:
            os.chdir(spec.get("workdir") or "/")
            os.execvpe(argv[0], argv, env)
        except OSError as error:
            if isinstance(error, FileNotFoundError) and "/" not in argv[0]:
                why = f'exec: "{argv[0]}": executable file not found in $PATH'
            else:
                why = f'exec: "{argv[0]}": {error.strerror}'
            start_error.write(why)
    sys.exit(128)


if __name__ == "__main__":
    main(sys.argv[1])
