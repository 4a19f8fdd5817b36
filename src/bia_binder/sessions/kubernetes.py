"""The Kubernetes session backend: KubeSpawner, with the profiles the local sandbox uses.

Two session backends share one profile definition (:mod:`bia_binder.sessions.profiles`):
:class:`~bia_binder.sessions.spawner.BinderSpawner` runs a session in the local sandbox with the
profile's cgroup limits; :class:`BinderKubeSpawner` runs it as a pod whose limits are the same
byte counts (``ResourceProfile.kubespawner_override``, written into values by
``bia-binder kubernetes values``). The hub configuration chooses one (``JupyterHub.spawner_class``).

Anonymous launches (users ``binder-…``, created by the binder service) are BinderHub's: the
``image`` user option names the built image, which must come from our registry
(:attr:`BinderKubeSpawner.allowed_image_prefix`); the server is a plain Jupyter server reachable
with the launch's token only, without a hub token in its environment, with the anonymous profile
(:attr:`BinderKubeSpawner.anonymous_override`: memory, CPU, ``ephemeral-storage``) and no home
volume. Logged-in users choose among ``profile_list`` (the logged-in tiers) and keep a PVC.
"""

from __future__ import annotations

from typing import Any

from kubespawner import KubeSpawner
from tornado import web
from traitlets import Dict, Unicode

from .profiles import ResourceProfile, ResourceProfiles
from .spawner import ANONYMOUS_PREFIX, BINDER_REQUEST_KEYS

#: user options a launch may pass (BinderHub's), besides the token
ANONYMOUS_OPTIONS = {"image", "token", *BINDER_REQUEST_KEYS}


class BinderKubeSpawner(KubeSpawner):
    anonymous_override = Dict(
        config=True,
        help="KubeSpawner traits of anonymous sessions (the anonymous ResourceProfile's kubespawner_override; "
        "`bia-binder kubernetes values` writes it). Default: computed from c.ResourceProfiles.",
    )
    allowed_image_prefix = Unicode(
        "",
        config=True,
        help="Images anonymous sessions may run must start with this (c.ContainerBuilder.image_prefix): a launch "
        "cannot start an arbitrary image. Empty: any image (tests only).",
    )
    session_token = Unicode("", help="An anonymous session's token while it starts (kept out of the hub's database).")

    @property
    def is_anonymous(self) -> bool:
        return self.user.name.startswith(ANONYMOUS_PREFIX)

    def anonymous_profile(self) -> ResourceProfile:
        return ResourceProfiles(parent=self).anonymous_profile()

    def _anonymous_override(self) -> dict[str, Any]:
        return dict(self.anonymous_override) or self.anonymous_profile().kubespawner_override()

    async def load_user_options(self) -> None:
        if not self.is_anonymous:
            return await super().load_user_options()
        # BinderHub's launch: the image it built, the limits of the anonymous tier; no profile choice
        options = dict(self.user_options or {})
        unknown = set(options) - ANONYMOUS_OPTIONS
        if unknown:
            raise web.HTTPError(400, f"unknown user options {sorted(unknown)} for a binder launch")
        image = str(options.get("image") or "")
        if not image:
            raise web.HTTPError(400, "a binder launch needs the `image` user option (the built image)")
        if self.allowed_image_prefix and not image.startswith(self.allowed_image_prefix):
            raise web.HTTPError(400, f"image {image!r} is not one of ours (expected {self.allowed_image_prefix}...)")
        self.session_token = str(options.pop("token", "") or "")
        if not self.session_token:
            raise web.HTTPError(400, "a binder launch needs a token in user_options (the binder service sends one)")
        # the token lives in the pod's environment only, not in the hub's database or API
        self.user_options = options
        if self.orm_spawner is not None:
            self.orm_spawner.user_options = dict(options)
            self.db.commit()
        self.image = image
        for name, value in self._anonymous_override().items():
            setattr(self, name, value)
        # no home volume: anonymous sessions are ephemeral, bounded by ephemeral-storage
        self.storage_pvc_ensure = False
        # (z2jh gives volumes as a dict keyed for merging, KubeSpawner takes either form)
        volumes = self._sorted_dict_values(self.volumes)
        mounts = self._sorted_dict_values(self.volume_mounts)
        claims = {v.get("name") for v in volumes if "persistentVolumeClaim" in v}
        self.volumes = [v for v in volumes if v.get("name") not in claims]
        self.volume_mounts = [m for m in mounts if m.get("name") not in claims]
        # a plain Jupyter server in the image (as repo2docker images run), not jupyterhub-singleuser
        self.cmd = ["jupyter", "lab"]
        self.default_url = ""

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        if self.is_anonymous:
            # no hub credential in an anonymous pod: its one secret is its own token
            env = {k: v for k, v in env.items() if not k.startswith(("JUPYTERHUB_", "JPY_"))}
            env["JUPYTER_TOKEN"] = self.session_token
        for key in BINDER_REQUEST_KEYS:
            if key in (self.user_options or {}):
                env[key.upper() if key.startswith("binder") else f"BINDER_{key.upper()}"] = str(self.user_options[key])
        return env

    def get_args(self) -> list[str]:
        if not self.is_anonymous:
            return super().get_args()
        # the token is in the environment (JUPYTER_TOKEN), never in the arguments
        return [
            "--no-browser",
            f"--ip={self.ip or '0.0.0.0'}",
            f"--port={self.port}",
            f"--ServerApp.base_url={self.server.base_url}",
            "--ServerApp.trust_xheaders=True",
            "--ServerApp.quit_button=False",
        ]
