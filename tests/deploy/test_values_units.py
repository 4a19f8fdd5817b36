"""The pieces of `bia-binder kubernetes values`: exact quantities, image names, overrides, refusals."""

from __future__ import annotations

import pytest
from traitlets.config import Config

from bia_binder.deploy.quantities import bytes_of, quantity
from bia_binder.deploy.values import chart_values, split_image


@pytest.mark.parametrize(
    ("size", "expected"),
    [(8 * 1024**3, "8Gi"), (1536 * 1024**2, "1536Mi"), (10**9, "1000000000"), (1024**4, "1Ti"), (1023, "1023"), (0, "0")],
)
def test_quantities_are_exact(size, expected):
    assert quantity(size) == expected
    assert bytes_of(expected) == size


def test_decimal_and_binary_suffixes_differ_as_kubernetes_reads_them():
    assert bytes_of("8G") == 8_000_000_000 and bytes_of("8Gi") == 8_589_934_592
    with pytest.raises(ValueError):
        quantity(-1)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("registry:5000/org/env-abc:v1", ("registry:5000/org/env-abc", "v1")),
        ("registry:5000/org/env-abc", ("registry:5000/org/env-abc", "latest")),
        ("quay.io/jupyterhub/k8s-hub:4.3.3", ("quay.io/jupyterhub/k8s-hub", "4.3.3")),
    ],
)
def test_image_names_split_at_the_tag_not_the_registry_port(image, expected):
    assert split_image(image) == expected


def test_request_fraction_lowers_requests_not_limits():
    config = Config()
    config.KubernetesDeployment.request_fraction = 0.5
    entry = chart_values(config).values["jupyterhub"]["singleuser"]["profileList"][0]["kubespawner_override"]
    assert entry["mem_guarantee"] * 2 == entry["mem_limit"] == 16 * 1024**3
    assert entry["cpu_guarantee"] * 2 == entry["cpu_limit"]


def test_the_container_builders_prefix_wins_and_is_the_only_image_sessions_may_run():
    config = Config()
    config.ContainerBuilder.image_prefix = "harbor.example.org/binder/r2d-"
    values = chart_values(config).values
    assert values["binder"]["config"]["ContainerBuilder"]["image_prefix"] == "harbor.example.org/binder/r2d-"
    assert values["binder"]["config"]["KubernetesBuilder"]["registry_url"] == "https://harbor.example.org"
    spawner = values["jupyterhub"]["hub"]["config"]["BinderKubeSpawner"]
    assert spawner["allowed_image_prefix"] == "harbor.example.org/binder/r2d-"


def test_logins_other_than_oidc_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="OIDC .* or none"):
        chart_values(Config(), auth="native")


async def test_logins_cannot_take_the_anonymous_prefix_but_temporary_users_still_can_be_created():
    import logging
    from types import SimpleNamespace

    from bia_binder.deploy.hub import configure_hub

    c = Config()
    c.Authenticator.post_auth_hook = lambda authenticator, handler, auth: {**auth, "seen": True}
    configure_hub(c, cull={"enabled": True})
    hook = c.Authenticator.post_auth_hook
    authenticator = SimpleNamespace(log=logging.getLogger("test"))
    assert await hook(authenticator, None, {"name": "binder-org-repo-1a2b3c4d"}) is None
    assert await hook(authenticator, None, {"name": "alice"}) == {"name": "alice", "seen": True}  # the deployer's hook ran
    assert "username_pattern" not in c.Authenticator  # which would refuse the binder-… users the endpoint creates
    culler = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler-temporary")
    assert "--timeout=43200" in culler["command"] and "--cull-users=true" in culler["command"]
    role = next(r for r in c.JupyterHub.load_roles if r["name"] == "idle-culler-temporary")
    assert all(scope.endswith("!group=binder-temporary") for scope in role["scopes"])
