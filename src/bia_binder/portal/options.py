"""What a logged-in user chooses when starting a session: a resource profile and an environment.

JupyterHub shows :func:`render_options_form` at ``/hub/spawn`` and turns the submitted form into
``user_options`` with :func:`options_from_form`; the hub REST API
(``POST /hub/api/users/<name>/server``) takes the same ``user_options`` as JSON directly::

    {"profile": "standard", "environment": "default"}            # the default bioimage environment
    {"profile": "large", "environment": "gh/org/repo/main"}      # a repository ("persistent binder")
    {"profile": "gpu", "environment": "deeplearning"}             # PyTorch, cellpose, bioimageio.core

:func:`parse_session_options` checks either form and says, in one line, what was wrong.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..events import LaunchError
from ..providers import PROVIDERS
from ..sessions.profiles import ResourceProfile

#: the ``environment`` choice naming the default bioimage environment
DEFAULT_ENVIRONMENT = "default"
#: ... and the deep-learning one
DEEP_LEARNING_ENVIRONMENT = "deeplearning"
PORTAL_ENVIRONMENTS = (DEFAULT_ENVIRONMENT, DEEP_LEARNING_ENVIRONMENT)

#: what the form says about Julia: our package registries have no Julia; these paths do
JULIA_NOTE = (
    "Julia is not in this server's package registries: use a repository with a Project.toml on a hub with the "
    "container builder, or an environment.yml that lists julia from conda-forge."
)

_SPEC = re.compile(r"^(?P<provider>[a-z]+)/(?P<spec>\S+)$")


@dataclass(frozen=True)
class SessionChoice:
    """A validated choice: ``profile`` slug ('' = the first profile), and ``provider``/``spec``
    of a repository, or both empty for a portal environment (``portal_environment``: default, deeplearning)."""

    profile: str
    provider: str = ""
    spec: str = ""
    portal_environment: str = DEFAULT_ENVIRONMENT

    @property
    def uses_default_environment(self) -> bool:
        """A ready-made portal environment (the default one or the deep-learning one), not a repository."""
        return not self.provider


def parse_environment(value: str) -> tuple[str, str]:
    """``"default"`` → ``("", "")``; ``"gh/org/repo/main"`` → ``("gh", "org/repo/main")``."""
    value = value.strip().strip("/")
    if value in ("", *PORTAL_ENVIRONMENTS):
        return "", ""
    # people paste launch links: accept ".../v2/gh/org/repo/main" too
    value = value.split("/v2/", 1)[-1]
    match = _SPEC.match(value)
    if not match or match["provider"] not in PROVIDERS:
        raise LaunchError(
            f"environment {value!r} is neither 'default' nor a repository like gh/org/repo/main "
            f"(also 'deeplearning'; providers: {', '.join(sorted(PROVIDERS))})",
            400,
        )
    return match["provider"], match["spec"]


def parse_session_options(user_options: Mapping[str, Any]) -> SessionChoice:
    """The session a logged-in user asked for (``LaunchError`` 400 on anything unexpected)."""
    unknown = set(user_options) - {"profile", "environment"}
    if unknown:
        raise LaunchError(f"unknown session option(s) {sorted(unknown)}: use 'profile' and 'environment'", 400)
    profile = user_options.get("profile", "")
    environment = user_options.get("environment", DEFAULT_ENVIRONMENT)
    if not isinstance(profile, str) or not isinstance(environment, str):
        raise LaunchError("session options 'profile' and 'environment' must be strings", 400)
    provider, spec = parse_environment(environment)
    portal = environment.strip().strip("/") if environment.strip().strip("/") in PORTAL_ENVIRONMENTS else DEFAULT_ENVIRONMENT
    return SessionChoice(profile=profile, provider=provider, spec=spec, portal_environment=portal)


def options_from_form(form_data: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """``user_options`` from the submitted form (each field arrives as a list of strings)."""

    def first(name: str) -> str:
        return (form_data.get(name) or [""])[0].strip()

    chosen = first("environment")
    environment = first("repository") if chosen == "repository" else chosen if chosen in PORTAL_ENVIRONMENTS else DEFAULT_ENVIRONMENT
    options = {"profile": first("profile"), "environment": environment or DEFAULT_ENVIRONMENT}
    parse_session_options(options)  # a bad repository spec is reported before anything starts
    return options


def render_options_form(profiles: Sequence[ResourceProfile], languages: Sequence[str] = ()) -> str:
    """The ``/hub/spawn`` form: profile radio buttons, then the environment. ``languages``: the kernels
    besides Python the default environment has on this host (only those are named)."""
    profile_inputs = "\n".join(
        f'<div class="radio"><label><input type="radio" name="profile" value="{html.escape(p.slug)}"'
        f"{' checked' if i == 0 else ''}> {html.escape(p.display_name)}"
        f"{' — ' + html.escape(p.description) if p.description else ''}</label></div>"
        for i, p in enumerate(profiles)
    )
    kernels = f"; kernels: Python, {', '.join(html.escape(name) for name in languages)}" if languages else ""
    return f"""
<fieldset>
  <legend>Resources</legend>
  {profile_inputs}
</fieldset>
<fieldset>
  <legend>Environment</legend>
  <div class="radio"><label><input type="radio" name="environment" value="{DEFAULT_ENVIRONMENT}" checked>
    Default bioimage environment (numpy, scikit-image, zarr, dask, ome-zarr, ImageJ from Python, OMERO{kernels})</label></div>
  <div class="radio"><label><input type="radio" name="environment" value="{DEEP_LEARNING_ENVIRONMENT}">
    Deep learning (PyTorch, cellpose, bioimageio.core; CUDA with a GPU profile)</label></div>
  <div class="radio"><label><input type="radio" name="environment" value="repository">
    A repository (its environment; a copy of it in your home):</label>
    <input type="text" class="form-control" name="repository" placeholder="gh/org/repo/main"></div>
  <p class="help-block">{html.escape(JULIA_NOTE)}</p>
</fieldset>
"""
