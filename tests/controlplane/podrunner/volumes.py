"""The volumes of a pod as files on this machine, and where the container sees them.

emptyDir is a fresh folder (mode 0777, as the kubelet makes it); projected, secret,
configMap and downwardAPI volumes are folders of files written once at start (the
ServiceAccount token of a ``serviceAccountToken`` source comes from the TokenRequest
API, bound to the pod, as the kubelet asks for it). Any other kind of volume is
refused: a pod that needs one fails loudly instead of running without it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .podspec import ConfigError, Lookup, Unsupported, field_value

#: (audience or None, expiration seconds) -> a token of the pod's ServiceAccount
TokenSource = Callable[[str | None, int], str]


def _write(folder: Path, path: str, data: bytes, mode: int) -> None:
    target = folder / path
    if folder.resolve() not in target.resolve().parents:
        raise Unsupported(f"volume file {path!r} leaves its volume")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode)


def _keyed(
    obj: Mapping[str, Any] | None,
    source: Mapping[str, Any],
    *,
    kind: str,
    volume: str,
) -> dict[str, bytes]:
    """The files of a Secret or ConfigMap source: every key, or the items named."""
    name = source.get("name") or source.get("secretName") or ""
    if obj is None:
        if source.get("optional"):
            return {}
        raise ConfigError(
            f'MountVolume.SetUp failed for volume "{volume}" : {kind} "{name}" not found',
            reason="ContainerCreating",
        )
    data: dict[str, bytes] = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    if kind == "configmap":
        data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    items = source.get("items")
    if not items:
        return data
    picked = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise ConfigError(
                f'MountVolume.SetUp failed for volume "{volume}" : configmap references'
                f" non-existent config key: {item['key']}"
                if kind == "configmap"
                else f'MountVolume.SetUp failed for volume "{volume}" : references'
                f" non-existent secret key: {item['key']}",
                reason="ContainerCreating",
            )
        picked[item.get("path") or item["key"]] = data[item["key"]]
    return picked


def write_volume(
    volume: Mapping[str, Any],
    folder: Path,
    *,
    pod: Mapping[str, Any],
    lookup: Lookup,
    token: TokenSource,
    host_ip: str,
) -> None:
    """Make ``folder`` hold what ``volume`` gives the container."""
    name = str(volume["name"])
    folder.mkdir(parents=True, exist_ok=True)
    if "emptyDir" in volume:
        folder.chmod(0o777)
        return
    sources: list[tuple[str, Mapping[str, Any]]]
    if "projected" in volume:
        projected = volume["projected"] or {}
        mode = int(projected.get("defaultMode", 0o644))
        sources = [
            (kind, spec) for entry in projected.get("sources") or [] for kind, spec in entry.items()
        ]
    else:
        kinds = [k for k in ("secret", "configMap", "downwardAPI") if k in volume]
        if not kinds:
            other = next((k for k in volume if k != "name"), "?")
            raise Unsupported(f"volume {name}: {other} volumes are not provided by the pod runner")
        mode = int((volume[kinds[0]] or {}).get("defaultMode", 0o644))
        sources = [(kinds[0], volume[kinds[0]] or {})]
    for kind, spec in sources:
        files: dict[str, bytes]
        if kind == "serviceAccountToken":
            audience = spec.get("audience") or None
            seconds = int(spec.get("expirationSeconds", 3600))
            files = {spec.get("path", "token"): token(audience, seconds).encode()}
        elif kind in ("secret", "configMap"):
            store = "secrets" if kind == "secret" else "configmaps"
            ref = spec.get("secretName") or spec.get("name") or ""
            files = _keyed(
                lookup(store, ref),
                spec,
                kind=kind.lower(),
                volume=name,
            )
        elif kind == "downwardAPI":
            files = {}
            for item in spec.get("items") or []:
                if "fieldRef" not in item:
                    raise Unsupported(f"volume {name}: downwardAPI items take fieldRef only")
                value = field_value(pod, item["fieldRef"]["fieldPath"], host_ip=host_ip)
                files[item["path"]] = value.encode()
        else:
            raise Unsupported(f"volume {name}: projected {kind} sources are not provided")
        for path, data in files.items():
            _write(folder, path, data, mode)


def container_mounts(
    container: Mapping[str, Any], folders: Mapping[str, Path]
) -> list[dict[str, Any]]:
    """The container's volumeMounts as bind mounts (``source`` on this machine)."""
    mounts = []
    for mount in container.get("volumeMounts") or []:
        source = folders[mount["name"]]
        sub = mount.get("subPath") or ""
        if sub:
            source = source / sub
            if source.resolve() != folders[mount["name"]].resolve() and (
                folders[mount["name"]].resolve() not in source.resolve().parents
            ):
                raise Unsupported(f"volumeMount {mount['name']}: subPath {sub!r} leaves the volume")
            source.mkdir(parents=True, exist_ok=True)
        mounts.append(
            {
                "source": str(source),
                "target": mount["mountPath"],
                "readOnly": bool(mount.get("readOnly")),
            }
        )
    return mounts


def host_path(path: str, mounts: list[dict[str, Any]]) -> Path:
    """Where a file the container sees at ``path`` lies on this machine."""
    inside = [
        m for m in mounts if path == m["target"] or path.startswith(m["target"].rstrip("/") + "/")
    ]
    best = max(inside, key=lambda m: len(m["target"]), default=None)
    if best is None:
        return Path(path)
    return Path(best["source"]) / os.path.relpath(path, best["target"])
