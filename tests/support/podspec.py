"""How the process kubelet (`support.kubelet`) turns a Pod's container spec into a local process.

Pure functions over the Pod as a plain dict; the kubelet fetches the Secrets and ConfigMaps a
Pod refers to first and passes them in `refs` ({("Secret"|"ConfigMap", name): object}).

Rules (the ones a test author needs to know):
- `$(VAR)` in command, args and env values expands as Kubernetes does: a defined variable is
  replaced, `$$` gives a literal `$`, an undefined reference stays as written.
- Env: `value`, `valueFrom` (secretKeyRef, configMapKeyRef, fieldRef: metadata.name,
  metadata.namespace, metadata.uid, metadata.labels[..], metadata.annotations[..],
  spec.nodeName, spec.serviceAccountName, status.podIP, status.hostIP) and `envFrom`.
  A missing non-optional Secret/ConfigMap or key raises `NotYet` (the container waits, as
  with CreateContainerConfigError).
- Paths: a container sees its volumes at their `mountPath`; here every command/args element
  and env value that is a mountPath or starts with `mountPath/` (also the VALUE of a
  `--flag=VALUE` element) is rewritten to the volume's host directory, longest mountPath
  first. `workingDir` is rewritten the same way. Paths inside files are not rewritten.
- Executables: whatever the image, `kurastore` runs the venv's kurastore
  (`python -P -m kurastore`), `python`/`python3` the venv's python; anything else is looked
  up on PATH. No `command` means the image's entrypoint, which is `kurastore` for every
  image (the project builds one image).
"""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["NotYet", "container_argv", "container_env", "expand", "field_value",
           "referenced_objects", "rewrite_path", "volume_files"]

Refs = Mapping[tuple[str, str], dict[str, Any] | None]


class NotYet(Exception):
    """Something the container needs does not exist yet; try again later."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion (k8s.io/kubernetes/third_party/forked/golang/expansion)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2:end]
                    out.append(env[name] if name in env else text[i:end + 1])
                    i = end + 1
                    continue
        out.append(c)
        i += 1
    return "".join(out)


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: dict[str, Any], path: str, pod_ip: str) -> str:
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": pod_ip, "status.podIPs": pod_ip, "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    m = _SUBSCRIPT.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ValueError(f"fieldRef {path!r} is not supported by the process kubelet")


def referenced_objects(pod: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (kind, name) of Secret/ConfigMap the Pod's env and volumes refer to."""
    found: set[tuple[str, str]] = set()
    spec = pod.get("spec", {})
    for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        for e in c.get("env", []):
            vf = e.get("valueFrom") or {}
            if "secretKeyRef" in vf:
                found.add(("Secret", vf["secretKeyRef"]["name"]))
            if "configMapKeyRef" in vf:
                found.add(("ConfigMap", vf["configMapKeyRef"]["name"]))
        for ef in c.get("envFrom", []):
            if "secretRef" in ef:
                found.add(("Secret", ef["secretRef"]["name"]))
            if "configMapRef" in ef:
                found.add(("ConfigMap", ef["configMapRef"]["name"]))
    for v in spec.get("volumes", []):
        sources = [v, *[s for s in (v.get("projected") or {}).get("sources", [])]]
        for s in sources:
            if "secret" in s:
                found.add(("Secret", s["secret"].get("secretName") or s["secret"].get("name")))
            if "configMap" in s:
                found.add(("ConfigMap", s["configMap"]["name"]))
    return found


def _data(obj: dict[str, Any] | None, kind: str) -> dict[str, bytes] | None:
    if obj is None:
        return None
    if kind == "Secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _key_ref(ref: dict[str, Any], kind: str, refs: Refs) -> str | None:
    data = _data(refs.get((kind, ref["name"])), kind)
    if data is None or ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise NotYet(f"{kind} {ref['name']} key {ref['key']} not found")
    return data[ref["key"]].decode()


def container_env(pod: dict[str, Any], container: dict[str, Any], refs: Refs,
                  pod_ip: str) -> dict[str, str]:
    """The container's environment as Kubernetes builds it (envFrom first, then env)."""
    env: dict[str, str] = {}
    for ef in container.get("envFrom", []):
        kind, ref = ("Secret", ef["secretRef"]) if "secretRef" in ef else (
            "ConfigMap", ef["configMapRef"])
        data = _data(refs.get((kind, ref["name"])), kind)
        if data is None:
            if ref.get("optional"):
                continue
            raise NotYet(f"{kind} {ref['name']} not found")
        for k, v in data.items():
            env[ef.get("prefix", "") + k] = v.decode()
    for e in container.get("env", []):
        vf = e.get("valueFrom")
        if vf is None:
            env[e["name"]] = expand(e.get("value", ""), env)
            continue
        if "fieldRef" in vf:
            value: str | None = field_value(pod, vf["fieldRef"]["fieldPath"], pod_ip)
        elif "secretKeyRef" in vf:
            value = _key_ref(vf["secretKeyRef"], "Secret", refs)
        elif "configMapKeyRef" in vf:
            value = _key_ref(vf["configMapKeyRef"], "ConfigMap", refs)
        else:
            raise ValueError(f"env {e['name']}: {sorted(vf)} is not supported")
        if value is not None:
            env[e["name"]] = value
    return env


def rewrite_path(value: str, mounts: Sequence[tuple[str, str]]) -> str:
    """Map a container path onto the host directory of the volume mounted there."""
    head, sep, tail = "", "", value
    if value.startswith("-") and "=" in value:
        head, sep, tail = value.partition("=")
    for mount, host in sorted(mounts, key=lambda m: len(m[0]), reverse=True):
        mount = mount.rstrip("/") or "/"
        if tail == mount or tail.startswith(mount + "/"):
            return head + sep + host + tail[len(mount):]
    return value


def container_argv(container: dict[str, Any], env: Mapping[str, str],
                   mounts: Sequence[tuple[str, str]]) -> list[str]:
    command = list(container.get("command") or ["kurastore"])
    argv = [rewrite_path(expand(a, env), mounts) for a in [*command, *container.get("args", [])]]
    exe = argv[0].rsplit("/", 1)[-1]
    if exe == "kurastore":
        return [sys.executable, "-P", "-m", "kurastore", *argv[1:]]
    if exe in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


def _items(data: dict[str, bytes], items: Iterable[dict[str, Any]] | None) -> dict[str, bytes]:
    if not items:
        return dict(data)
    return {i["path"]: data[i["key"]] for i in items if i["key"] in data}


def volume_files(volume: dict[str, Any], pod: dict[str, Any], refs: Refs,
                 pod_ip: str) -> dict[str, bytes]:
    """Relative path -> content for secret, configMap, downwardAPI and projected volumes."""
    files: dict[str, bytes] = {}
    sources = (volume["projected"].get("sources", []) if "projected" in volume else [volume])
    for s in sources:
        for kind, key in (("Secret", "secret"), ("ConfigMap", "configMap")):
            if key not in s:
                continue
            src = s[key]
            name = src.get("secretName") or src.get("name")
            data = _data(refs.get((kind, name)), kind)
            if data is None:
                if src.get("optional"):
                    continue
                raise NotYet(f"{kind} {name} not found")
            files.update(_items(data, src.get("items")))
        down = s.get("downwardAPI")
        if down is not None:
            for item in down.get("items", []):
                if "fieldRef" not in item:
                    raise ValueError("downwardAPI resourceFieldRef is not supported")
                value = field_value(pod, item["fieldRef"]["fieldPath"], pod_ip)
                files[item["path"]] = value.encode()
    return files
