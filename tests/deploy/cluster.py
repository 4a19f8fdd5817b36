"""A small Kubernetes API on loopback, with a test kubelet and a test registry.

Why hand-written rather than kmock: the launch test needs a kubelet that reacts to pods as
they are created (runs their command, reports phase, IP and log) and a registry the build
pods push to; a stateful store with watches is a hundred lines once that is there anyway.

- :class:`Cluster` speaks the API's wire format for what KubeSpawner and the build executor
  use (``/api/v1`` pods, events, PVCs...: create with 409 on conflict, get, list and watch
  with label and field selectors and resourceVersions, delete, merge patch, pods' ``log``
  with ``follow``), and counts creations (:attr:`Cluster.created`).
- :class:`Kubelet` plays the nodes: each pod's container runs as a local process from its
  image's files (:class:`Registry`), on its own loopback address (127.0.0.N) standing in for
  the pod network: a ``0.0.0.0`` in its arguments becomes that address.
- :class:`Registry` is the image store and the distribution API (``/v2/<name>/manifests/<tag>``).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tornado import web
from tornado.httpserver import HTTPServer


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def matches_labels(obj: dict[str, Any], selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def matches_fields(obj: dict[str, Any], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        negate = "!=" in term
        path, value = term.split("!=" if negate else "=", 1)
        current: Any = obj
        for part in path.lstrip("=").split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if (str(current) == value) == negate:
            return False
    return True


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386), which is also what strategic merge does for the fields used here."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


KINDS = {"pods": "Pod", "events": "Event", "persistentvolumeclaims": "PersistentVolumeClaim", "services": "Service",
         "secrets": "Secret", "configmaps": "ConfigMap", "serviceaccounts": "ServiceAccount"}  # fmt: skip


class Cluster:
    """The API server's state: objects by (plural, namespace, name), a history of changes for watches."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.version = 0
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []
        self._changed = asyncio.Event()
        #: (plural, name) of every object created, and every create refused with 409
        self.created: list[tuple[str, str]] = []
        self.conflicts: list[tuple[str, str]] = []
        self.listeners: list[Callable[[str, str, dict[str, Any]], None]] = []
        self.logs: dict[tuple[str, str], bytearray] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: HTTPServer | None = None

    # --- state ---------------------------------------------------------------------------------

    async def _record(self, kind: str, plural: str, obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.history.append((self.version, kind, plural, copy.deepcopy(obj)))
        for listener in self.listeners:
            listener(kind, plural, obj)
        self.notify()

    def notify(self) -> None:
        """Wake every watch and log stream (a new event each time: waiting on it is cancellation-safe)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def changed(self, timeout: float) -> None:
        """Until the next change, or ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    async def create(self, plural: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any] | None:
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        key = (plural, namespace, metadata["name"])
        if key in self.objects:
            self.conflicts.append((plural, metadata["name"]))
            return None
        metadata.update({"namespace": namespace, "uid": str(uuid.uuid4()), "creationTimestamp": now()})
        obj.setdefault("kind", KINDS.get(plural, plural.title()))
        obj.setdefault("apiVersion", "v1")
        if plural == "pods":
            obj["status"] = {"phase": "Pending"}
        if plural == "persistentvolumeclaims":
            obj["status"] = {"phase": "Bound"}
        self.objects[key] = obj
        self.created.append((plural, metadata["name"]))
        await self._record("ADDED", plural, obj)
        return obj

    async def update(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        obj = self.objects.get((plural, namespace, name))
        if obj is None:
            return None
        merge(obj, patch)
        await self._record("MODIFIED", plural, obj)
        return obj

    async def delete(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.pop((plural, namespace, name), None)
        if obj is not None:
            await self._record("DELETED", plural, obj)
        return obj

    def list(self, plural: str, namespace: str | None, labels: str = "", fields: str = "") -> list[dict[str, Any]]:
        return [
            obj
            for (p, ns, _), obj in sorted(self.objects.items())
            if p == plural and namespace in (None, ns) and matches_labels(obj, labels) and matches_fields(obj, fields)
        ]

    def pods(self, component: str | None = None) -> list[dict[str, Any]]:
        return [p for p in self.list("pods", None) if component is None or p["metadata"].get("labels", {}).get("component") == component]

    def created_pods(self, prefix: str) -> list[str]:
        return [name for plural, name in self.created if plural == "pods" and name.startswith(prefix)]

    # --- HTTP ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        ns = r"/api/v1/namespaces/([^/]+)"
        return web.Application(
            [
                (r"/version", VersionHandler),
                (rf"{ns}/pods/([^/]+)/log", LogHandler, {"cluster": self}),
                (rf"{ns}/([a-z]+)/([^/]+)", ObjectHandler, {"cluster": self}),
                (rf"{ns}/([a-z]+)", CollectionHandler, {"cluster": self}),
                (r"/api/v1/([a-z]+)", CollectionHandler, {"cluster": self, "all_namespaces": True}),
            ]
        )

    def start(self) -> "Cluster":
        self._server = HTTPServer(self.app())
        self._server.listen(self.port, "127.0.0.1")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip


class VersionHandler(web.RequestHandler):
    def get(self) -> None:
        self.write({"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"})


class _Base(web.RequestHandler):
    def initialize(self, cluster: Cluster, all_namespaces: bool = False) -> None:
        self.cluster = cluster
        self.all_namespaces = all_namespaces

    def fail(self, code: int, reason: str, message: str) -> None:
        self.set_status(code)
        self.write(status(code, reason, message))

    def body(self) -> dict[str, Any]:
        return json.loads(self.request.body or b"{}")


class CollectionHandler(_Base):
    async def get(self, *args: str) -> None:
        namespace, plural = (None, args[0]) if self.all_namespaces else args
        labels, fields = self.get_argument("labelSelector", ""), self.get_argument("fieldSelector", "")
        if self.get_argument("watch", "").lower() in ("true", "1"):
            await self.watch(plural, namespace, labels, fields)
            return
        items = self.cluster.list(plural, namespace, labels, fields)
        limit = int(self.get_argument("limit", "0") or 0)
        self.write({"kind": KINDS.get(plural, plural.title()) + "List", "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.cluster.version)},
                    "items": items[:limit] if limit else items})  # fmt: skip

    async def watch(self, plural: str, namespace: str | None, labels: str, fields: str) -> None:
        since = int(self.get_argument("resourceVersion", "0") or 0)
        deadline = time.monotonic() + float(self.get_argument("timeoutSeconds", "300") or 300)
        self.set_header("Content-Type", "application/json")
        sent = since
        while time.monotonic() < deadline:
            for version, kind, p, obj in self.cluster.history:
                if version <= sent or p != plural:
                    continue
                sent = version
                if namespace not in (None, obj["metadata"]["namespace"]):
                    continue
                if matches_labels(obj, labels) and matches_fields(obj, fields):
                    self.write(json.dumps({"type": kind, "object": obj}) + "\n")
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the client went away
                return
            await self.cluster.changed(max(0.01, min(1.0, deadline - time.monotonic())))
            if self.request.connection.stream.closed():  # type: ignore[union-attr]
                return

    async def post(self, namespace: str, plural: str) -> None:
        created = await self.cluster.create(plural, namespace, self.body())
        if created is None:
            name = self.body().get("metadata", {}).get("name")
            self.fail(409, "AlreadyExists", f'{plural} "{name}" already exists')
            return
        self.set_status(201)
        self.write(created)


class ObjectHandler(_Base):
    def get(self, namespace: str, plural: str, name: str) -> None:
        obj = self.cluster.objects.get((plural, namespace, name))
        if obj is None:
            self.fail(404, "NotFound", f'{plural} "{name}" not found')
            return
        self.write(obj)

    async def delete(self, namespace: str, plural: str, name: str) -> None:
        obj = await self.cluster.delete(plural, namespace, name)
        if obj is None:
            self.fail(404, "NotFound", f'{plural} "{name}" not found')
            return
        self.write(obj)

    async def patch(self, namespace: str, plural: str, name: str) -> None:
        obj = await self.cluster.update(plural, namespace, name, self.body())
        if obj is None:
            self.fail(404, "NotFound", f'{plural} "{name}" not found')
            return
        self.write(obj)


class LogHandler(_Base):
    async def get(self, namespace: str, name: str) -> None:
        if ("pods", namespace, name) not in self.cluster.objects:
            self.fail(404, "NotFound", f'pods "{name}" not found')
            return
        follow = self.get_argument("follow", "").lower() in ("true", "1")
        sent = 0
        self.set_header("Content-Type", "text/plain")
        while True:
            log = self.cluster.logs.get((namespace, name), bytearray())
            if len(log) > sent:
                self.write(bytes(log[sent:]))
                sent = len(log)
                await self.flush()
            pod = self.cluster.objects.get(("pods", namespace, name))
            if not follow or pod is None or pod["status"].get("phase") in ("Succeeded", "Failed"):
                if pod is None or len(self.cluster.logs.get((namespace, name), b"")) == sent:
                    return
                continue
            await self.cluster.changed(0.2)


class Registry:
    """Images as directories: ``<root>/<quoted image>.json`` says where an image's files are
    (``bin``: directories put first on PATH, ``workdir``: the working directory's content,
    ``env``), and the distribution API answers for the images held."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._server: HTTPServer | None = None

    def path(self, image: str) -> Path:
        return self.root / f"{quote(with_tag(image), safe='')}.json"

    def add(self, image: str, bin_dirs: list[str], workdir: str = "", env: dict[str, str] | None = None) -> None:
        self.path(image).write_text(json.dumps({"bin": bin_dirs, "workdir": workdir, "env": env or {}}))

    def get(self, image: str) -> dict[str, Any] | None:
        path = self.path(image)
        return json.loads(path.read_text()) if path.is_file() else None

    def start(self) -> "Registry":
        registry = self

        class Manifests(web.RequestHandler):
            def head(self, name: str, tag: str) -> None:
                self.get(name, tag)

            def get(self, name: str, tag: str) -> None:
                if registry.get(f"{registry.host}/{name}:{tag}") is None:
                    self.set_status(404)
                    self.write({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
                    return
                self.set_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                self.write({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"})

        class Base(web.RequestHandler):
            def get(self) -> None:
                self.write({})

        self._server = HTTPServer(web.Application([(r"/v2/", Base), (r"/v2/(.+)/manifests/([^/]+)", Manifests)]))
        self._server.listen(self.port, "127.0.0.1")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


def with_tag(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last else f"{image}:latest"


class Kubelet:
    """Runs every pod of the cluster as local processes, reporting phase, IP, readiness and log."""

    def __init__(self, cluster: Cluster, registry: Registry, workdir: Path, base_env: dict[str, str]) -> None:
        self.cluster, self.registry, self.workdir, self.base_env = cluster, registry, workdir, base_env
        self.addresses = (f"127.0.0.{n}" for n in itertools.count(2))
        self.processes: dict[tuple[str, str], asyncio.subprocess.Process] = {}
        self.tasks: set[asyncio.Task] = set()
        cluster.listeners.append(self._on_change)

    def _on_change(self, kind: str, plural: str, obj: dict[str, Any]) -> None:
        if plural != "pods":
            return
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if kind == "ADDED":
            task = asyncio.ensure_future(self._run(key, copy.deepcopy(obj)))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif kind == "DELETED":
            self._kill(key)

    def _kill(self, key: tuple[str, str]) -> None:
        process = self.processes.pop(key, None)
        if process is not None and process.returncode is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def _event(self, pod: dict[str, Any], reason: str, message: str) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        await self.cluster.create("events", namespace, {
            "metadata": {"generateName": f"{name}."}, "reason": reason, "message": message, "type": "Normal",
            "involvedObject": {"kind": "Pod", "name": name, "namespace": namespace, "uid": pod["metadata"]["uid"]},
            "firstTimestamp": now(), "lastTimestamp": now(), "eventTime": None,
        })  # fmt: skip

    async def _run(self, key: tuple[str, str], pod: dict[str, Any]) -> None:
        namespace, name = key
        container = pod["spec"]["containers"][0]
        address = next(self.addresses)
        await self._event(pod, "Scheduled", f"Successfully assigned {namespace}/{name} to test-node")
        await self.cluster.update("pods", namespace, name, {"spec": {"nodeName": "test-node"}, "status": {
            "podIP": address, "hostIP": "127.0.0.1", "conditions": [{"type": "PodScheduled", "status": "True"}]}})  # fmt: skip
        image = self.registry.get(container["image"])
        if image is None:
            waiting = {"waiting": {"reason": "ErrImagePull", "message": f"{container['image']}: not found"}}
            await self._event(pod, "Failed", f"Failed to pull image {container['image']}: not found")
            await self.cluster.update("pods", namespace, name, {"status": {"containerStatuses": [
                {"name": container["name"], "ready": False, "restartCount": 0, "image": container["image"],
                 "imageID": "", "state": waiting}]}})  # fmt: skip
            return
        root = self.workdir / f"{namespace}-{name}"
        if root.exists():
            shutil.rmtree(root)
        if image["workdir"]:
            shutil.copytree(image["workdir"], root, symlinks=True)
        else:
            root.mkdir(parents=True)
        env = {**self.base_env, **image["env"], "HOSTNAME": name, "HOME": str(root)}
        run_as = {(c.get("securityContext") or {}).get("runAsUser") for c in (pod["spec"], container)} - {None}
        if os.geteuid() == 0 and 0 not in run_as:
            # This kubelet cannot switch to the pod's uid (the test's files and interpreter live under root's
            # private directories), so the process stays root; Jupyter refuses root unless told, so tell it
            # here, in the container's own home, what the uid would have made unnecessary.
            (root / ".jupyter").mkdir(exist_ok=True)
            (root / ".jupyter" / "jupyter_server_config.json").write_text('{"ServerApp": {"allow_root": true}}')
        env["PATH"] = os.pathsep.join([*image["bin"], env.get("PATH", os.defpath)])
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif field := (item.get("valueFrom") or {}).get("fieldRef"):
                env[item["name"]] = {"metadata.namespace": namespace, "metadata.name": name,
                                     "status.podIP": address}.get(field["fieldPath"], "")  # fmt: skip
        # the pod network: each pod has its own address; "listen everywhere" means its address here
        argv = [arg.replace("0.0.0.0", address) for arg in [*(container.get("command") or []), *(container.get("args") or [])]]
        env = {k: v.replace("0.0.0.0", address) if k.startswith("JUPYTERHUB_SERVICE_URL") else v for k, v in env.items()}
        log = self.cluster.logs.setdefault(key, bytearray())
        executable = shutil.which(argv[0], path=env["PATH"]) or argv[0]
        try:
            process = await asyncio.create_subprocess_exec(
                executable, *argv[1:], cwd=str(root), env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        except OSError as e:
            log.extend(f"exec {argv[0]}: {e}\n".encode())
            await self._terminated(pod, container, 128, "StartError")
            return
        self.processes[key] = process
        await self._event(pod, "Started", f"Started container {container['name']}")
        started = {"running": {"startedAt": now()}}
        await self.cluster.update("pods", namespace, name, {"status": {
            "phase": "Running", "startTime": now(),
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": container["name"], "ready": True, "restartCount": 0, "started": True,
                                   "image": container["image"], "imageID": container["image"], "state": started}],
        }})  # fmt: skip
        assert process.stdout is not None
        while line := await process.stdout.readline():
            log.extend(line)
            self.cluster.notify()
        code = await process.wait()
        if key in self.processes:  # not deleted
            self.processes.pop(key, None)
            await self._terminated(pod, container, code, "Completed" if code == 0 else "Error")

    async def _terminated(self, pod: dict[str, Any], container: dict[str, Any], code: int, reason: str) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        await self.cluster.update("pods", namespace, name, {"status": {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": container["name"], "ready": False, "restartCount": 0,
                                   "image": container["image"], "imageID": container["image"],
                                   "state": {"terminated": {"exitCode": code, "reason": reason, "finishedAt": now()}}}],
        }})  # fmt: skip

    async def stop(self) -> None:
        for key in list(self.processes):
            self._kill(key)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
