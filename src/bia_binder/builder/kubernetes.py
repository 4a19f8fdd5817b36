"""The Kubernetes build executor: repo2docker in a build pod per resolved ref (BinderHub's model).

``KubernetesBuilder.build`` creates the pod described by
:meth:`ContainerBuilder.build_pod_manifest`, named after the cache key: a concurrent launch of
the same ref, in this replica or another, gets 409 Conflict from the API and follows the pod
that exists instead of making a second one. The pod's log streams as ``building`` events; its
end decides the launch: ``Succeeded`` → the image, ``Failed`` → a ``failed`` event naming the
last log line. The pod is removed once it has ended, so a retry after a failure builds again.

An image already in the registry is not rebuilt (:meth:`image_exists` asks the registry's
distribution API, with the push credentials' docker ``config.json``). ``health_checks`` report
the Kubernetes API and the registry for ``/health``.

Talks to the API with kubernetes_asyncio (in-cluster service account, else the kubeconfig;
``kube_api_url`` points it elsewhere, e.g. at a test API on loopback).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from kubernetes_asyncio import client, config, watch
from traitlets import Float, Unicode, default

from ..events import LaunchError
from .base import LogFn
from .container import ContainerBuilder

#: manifests the registry may hold for a tag (OCI and Docker, single images and indexes)
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
ENDED = ("Succeeded", "Failed")


class KubernetesBuilder(ContainerBuilder):
    kube_api_url = Unicode(
        "", config=True, help="The Kubernetes API to create build pods with (default: in-cluster, else the kubeconfig)."
    )
    registry_url = Unicode(
        "",
        config=True,
        help="The registry's distribution API (https://registry.example.org), asked whether an image exists "
        "before building it. Empty: https:// + the host of image_prefix.",
    )
    registry_config = Unicode(
        "/etc/bia-binder/registry/config.json",
        config=True,
        help="Docker config.json with the registry's credentials (the registry Secret, mounted); missing: anonymous.",
    )
    api_timeout = Float(30, config=True, help="Seconds for one Kubernetes or registry API request.")

    @default("namespace")
    def _namespace_default(self) -> str:
        return os.environ.get("POD_NAMESPACE", "binder")

    @default("engine")
    def _engine_default(self) -> str:
        return "kubernetes"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._api_client: client.ApiClient | None = None

    # --- the Kubernetes API --------------------------------------------------------------------

    async def core(self) -> client.CoreV1Api:
        if self._api_client is None:
            configuration = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                if not self.kube_api_url:
                    await config.load_kube_config(client_configuration=configuration)
            if self.kube_api_url:
                configuration.host = self.kube_api_url.rstrip("/")
            self._api_client = client.ApiClient(configuration)
        return client.CoreV1Api(self._api_client)

    async def close(self) -> None:
        if self._api_client is not None:
            await self._api_client.close()
            self._api_client = None

    async def build(self, repo_url: str, ref: str, key: str, log: LogFn) -> str:
        """Build in a pod (or follow the pod another launch made); the image name, or ``LaunchError``."""
        manifest = self.build_pod_manifest(repo_url, ref, key)
        name = manifest["metadata"]["name"]
        api = await self.core()
        last_line = ["no output"]  # this build's, for its failure message (builds of other refs run beside it)

        def logged(line: str) -> None:
            if line.strip():
                last_line[0] = line.strip()
            log(line)

        try:
            pod = await asyncio.wait_for(self._follow(api, manifest, logged), self.build_timeout + 60)
        except TimeoutError:
            await self._delete(api, name)
            raise LaunchError(
                f"the build pod {name} did not finish in {self.build_timeout} s (limit: c.ContainerBuilder.build_timeout)",
                500,
            ) from None
        except client.ApiException as e:
            raise LaunchError(f"the Kubernetes API refused the build pod {name}: {e.status} {e.reason}", 503) from None
        if pod is None:
            # another follower (a second replica) saw it end and removed it: the registry says how it went
            if await self.image_exists(key):
                return self.image_name(key)
            raise LaunchError(f"the build pod {name} was removed before it finished; try again", 500)
        await self._delete(api, name)
        if pod["status"].get("phase") != "Succeeded":
            raise LaunchError(f"the image build failed ({self._termination(pod)}): {last_line[0]}", 500)
        return self.image_name(key)

    async def _follow(self, api: client.CoreV1Api, manifest: dict[str, Any], log: LogFn) -> dict[str, Any] | None:
        """The ended pod (None if it vanished first), its log streamed on the way."""
        name = manifest["metadata"]["name"]
        pod = await self._create_or_join(api, manifest, log)
        if pod["status"].get("phase") == "Failed":
            # a failed pod left by an earlier attempt (whose follower died): build again
            await self._delete(api, name, wait=True)
            await self._create_or_join(api, manifest, log)
        if await self._wait(api, name, lambda p: p["status"].get("phase") not in (None, "Pending")) is None:
            return None
        await self._stream_log(api, name, log)
        return await self._wait(api, name, lambda p: p["status"].get("phase") in ENDED)

    async def _create_or_join(self, api: client.CoreV1Api, manifest: dict[str, Any], log: LogFn) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        try:
            created = await raw_json(api.create_namespaced_pod(self.namespace, manifest, _preload_content=False))
            log(f"Created build pod {name}")
            return created
        except client.ApiException as e:
            if e.status != 409:
                raise
        # BinderHub relies on this too: the name is the ref's, so the pod that exists is this build
        log(f"Build pod {name} exists already (another launch of this ref): following it")
        return await raw_json(api.read_namespaced_pod(name, self.namespace, _preload_content=False))

    async def _wait(self, api: client.CoreV1Api, name: str, done) -> dict[str, Any] | None:
        """Watch the pod until ``done(pod)``; None if it is deleted first."""
        while True:
            body = await raw_json(
                api.list_namespaced_pod(self.namespace, field_selector=f"metadata.name={name}", _preload_content=False)
            )
            items = body.get("items", [])
            if not items:
                return None
            if done(items[0]):
                return items[0]
            w = watch.Watch()
            async with w.stream(
                api.list_namespaced_pod, self.namespace, field_selector=f"metadata.name={name}",
                resource_version=body["metadata"]["resourceVersion"], timeout_seconds=60, _preload_content=False,
            ) as stream:  # fmt: skip
                async for item in stream:
                    if item["type"] == "DELETED":
                        return None
                    if done(item["raw_object"]):
                        return item["raw_object"]

    async def _stream_log(self, api: client.CoreV1Api, name: str, log: LogFn) -> None:
        response = await api.read_namespaced_pod_log(name, self.namespace, follow=True, _preload_content=False)
        if not response.ok:
            response.release()
            return  # gone already; its end is read from the pod's status
        try:
            async for raw in response.content:
                log(raw.decode(errors="replace").rstrip("\n"))
        finally:
            response.release()

    @staticmethod
    def _termination(pod: dict[str, Any]) -> str:
        for status in pod["status"].get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if terminated:
                return f"exit status {terminated.get('exitCode')}, {terminated.get('reason') or 'Error'}"
        return pod["status"].get("reason") or pod["status"].get("phase") or "unknown"

    async def _delete(self, api: client.CoreV1Api, name: str, wait: bool = False) -> None:
        try:
            await api.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        except client.ApiException as e:
            if e.status != 404:
                self.log.warning("Could not delete build pod %s: %s %s", name, e.status, e.reason)
            return
        while wait:
            listing = await api.list_namespaced_pod(self.namespace, field_selector=f"metadata.name={name}")
            if not listing.items:
                return
            await asyncio.sleep(0.2)

    # --- the registry ---------------------------------------------------------------------------

    @property
    def registry_base(self) -> str:
        if self.registry_url:
            return self.registry_url.rstrip("/")
        return "https://" + urlsplit("//" + self.image_prefix).netloc

    def _registry_auth(self) -> tuple[str, str] | None:
        """Basic credentials of the registry's host from the docker config.json, if any."""
        path = Path(self.registry_config)
        if not path.is_file():
            return None
        auths = json.loads(path.read_text()).get("auths", {})
        host = urlsplit(self.registry_base).netloc
        for server, entry in auths.items():
            if urlsplit(server if "//" in server else "//" + server).netloc == host and entry.get("auth"):
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                return user, password
        return None

    def _repository_and_tag(self, key: str) -> tuple[str, str]:
        image = self.image_name(key)
        path = image.split("/", 1)[1] if "/" in image else image
        name, _, tag = path.rpartition(":") if re.search(r":[^/]+$", path) else (path, "", "latest")
        return name, tag or "latest"

    async def image_exists(self, key: str) -> bool:
        """Whether the registry holds the image of ``key`` (asked each time: its retention may have removed it)."""
        repository, tag = self._repository_and_tag(key)
        url = f"{self.registry_base}/v2/{repository}/manifests/{tag}"
        try:
            async with httpx.AsyncClient(timeout=self.api_timeout) as http:
                response = await self._registry_get(http, url, repository)
        except httpx.HTTPError as e:
            self.log.warning("Cannot ask the registry about %s: %s", self.image_name(key), e)
            return False  # build, rather than fail the launch
        return response.status_code == 200

    async def _registry_get(self, http: httpx.AsyncClient, url: str, repository: str) -> httpx.Response:
        """GET with the distribution API's auth: basic credentials, or a bearer token from the challenge's realm."""
        auth = self._registry_auth()
        headers = {"Accept": MANIFEST_TYPES}
        response = await http.head(url, headers=headers, auth=auth or httpx.USE_CLIENT_DEFAULT)
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code == 401 and challenge.lower().startswith("bearer"):
            params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
            token_response = await http.get(
                params.get("realm", ""),
                params={"service": params.get("service", ""), "scope": f"repository:{repository}:pull"},
                auth=auth or httpx.USE_CLIENT_DEFAULT,
            )
            token = token_response.json().get("token") or token_response.json().get("access_token", "")
            response = await http.head(url, headers={**headers, "Authorization": f"Bearer {token}"})
        return response

    async def health_checks(self) -> list[dict[str, Any]]:
        checks = []
        try:
            api = await self.core()
            await asyncio.wait_for(api.list_namespaced_pod(self.namespace, limit=1), self.api_timeout)
            checks.append({"service": "Kubernetes API", "ok": True})
        except Exception as e:  # noqa: BLE001 - any failure means unhealthy, reported not raised
            checks.append({"service": "Kubernetes API", "ok": False, "error": type(e).__name__})
        try:
            async with httpx.AsyncClient(timeout=self.api_timeout) as http:
                response = await http.get(f"{self.registry_base}/v2/", auth=self._registry_auth() or httpx.USE_CLIENT_DEFAULT)
            # 401 is a registry asking for a token: it is up
            checks.append({"service": "Registry", "ok": response.status_code in (200, 401), "status_code": response.status_code})
        except httpx.HTTPError as e:
            checks.append({"service": "Registry", "ok": False, "error": type(e).__name__})
        return checks


async def raw_json(request) -> dict[str, Any]:
    """The JSON body of a kubernetes_asyncio call made with ``_preload_content=False`` (which does not raise
    for error statuses: this does, as ApiException)."""
    response = await request
    try:
        if not response.ok:
            raise client.ApiException(status=response.status, reason=response.reason)
        return json.loads(await response.read())
    finally:
        response.release()


def container_builder(parent: Any) -> ContainerBuilder:
    """The container builder the configuration asks for: build pods on Kubernetes, else a local engine."""
    local = ContainerBuilder(parent=parent)
    return KubernetesBuilder(parent=parent) if local.engine == "kubernetes" else local
