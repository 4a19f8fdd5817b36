"""Login modes against a real JupyterHub: LS Login-style OIDC (real OIDC provider), native, dev."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urljoin, urlparse

import httpx
import oidc_provider_mock
import pytest
import werkzeug.serving
from traitlets.config import Config

from bia_binder.portal.auth import (
    DEV_PASSWORD_ENV,
    LS_LOGIN_ISSUER,
    AuthConfigError,
    DevAuthenticator,
    check_auth_config,
    check_auth_environment,
    configure_auth,
    pseudonymous_username,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def oidc_provider() -> Iterator[str]:
    """A real OpenID Connect provider (oidc-provider-mock) on a free loopback port."""
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http on loopback
    server = werkzeug.serving.make_server("127.0.0.1", 0, oidc_provider_mock.app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def follow(client: httpx.Client, response: httpx.Response, limit: int = 10) -> httpx.Response:
    """Follow redirects one by one (httpx would too, but we inspect the hops)."""
    for _ in range(limit):
        if response.status_code not in (301, 302, 303, 307):
            return response
        response = client.get(urljoin(str(response.url), response.headers["location"]))
    raise AssertionError("redirect loop")


def test_oidc_defaults_are_ls_login() -> None:
    c = Config()
    configure_auth(c, "oidc", admin_users={"admin@lifescience-ri.eu"})
    oauth = c.GenericOAuthenticator
    assert c.JupyterHub.authenticator_class == "oauthenticator.generic.GenericOAuthenticator"
    assert oauth.authorize_url == "https://login.aai.lifescience-ri.eu/oidc/authorize"
    assert oauth.token_url == f"{LS_LOGIN_ISSUER}/token"
    assert oauth.userdata_url == f"{LS_LOGIN_ISSUER}/userinfo"
    assert oauth.scope == ["openid"]
    assert oauth.username_claim is pseudonymous_username
    assert oauth.enable_pkce is True
    assert c.Authenticator.admin_users == {"admin@lifescience-ri.eu"}


def test_explicit_settings_win_over_defaults() -> None:
    c = Config()
    c.GenericOAuthenticator.scope = ["openid"]
    c.GenericOAuthenticator.allow_all = False
    configure_auth(c, "oidc")
    assert c.GenericOAuthenticator.scope == ["openid"]
    assert c.GenericOAuthenticator.allow_all is False


def test_unknown_mode_and_missing_dev_password_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AuthConfigError, match="choose one of oidc, native, dev"):
        check_auth_environment("ldap")
    monkeypatch.delenv(DEV_PASSWORD_ENV, raising=False)
    with pytest.raises(AuthConfigError, match=DEV_PASSWORD_ENV) as error:
        configure_auth(Config(), "dev")
    assert "\n" not in str(error.value)


def test_oidc_client_from_config_or_environment() -> None:
    config = Config()
    config.GenericOAuthenticator.client_id = "from-config"
    check_auth_config("oidc", config, {"OAUTH_CLIENT_SECRET": "s3cret"})
    base_class = Config()
    base_class.OAuthenticator.client_secret = "s3cret"  # oauthenticator reads its base class's section too
    check_auth_config("oidc", base_class, {"OAUTH_CLIENT_ID": "from-env"})
    with pytest.raises(AuthConfigError) as missing_secret:
        check_auth_config("oidc", config, {})
    message = str(missing_secret.value)
    assert "client secret" in message and "OAUTH_CLIENT_SECRET" in message and "OAUTH_CLIENT_ID" not in message
    assert "\n" not in message
    check_auth_config("native", Config(), {})  # nothing to check


def run_up(args: list[str], tmp_path, drop: tuple[str, ...]) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in drop}
    return subprocess.run(
        [sys.executable, "-m", "bia_binder.cli", "up", "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_up_with_oidc_and_no_client_refuses_before_starting(tmp_path) -> None:
    done = run_up(["--auth", "oidc"], tmp_path, drop=("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET"))
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    for name in ("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "c.GenericOAuthenticator.client_id"):
        assert name in line
    assert not (tmp_path / "data").exists() and not done.stdout  # nothing started, nothing created


def test_up_with_oidc_client_id_in_the_config_file_names_only_the_missing_secret(tmp_path) -> None:
    config = tmp_path / "bia_binder_config.py"
    config.write_text('c.GenericOAuthenticator.client_id = "bia-binder"\n')
    done = run_up(["--auth", "oidc", "--config", str(config)], tmp_path, drop=("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET"))
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "OAUTH_CLIENT_SECRET" in line and "OAUTH_CLIENT_ID" not in line
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_oidc_login_end_to_end(start_hub, oidc_provider: str) -> None:
    discovery = httpx.get(f"{oidc_provider}/.well-known/openid-configuration").json()
    # The endpoints come from the provider's discovery document; everything else is our LS Login preset.
    hub = start_hub(
        f"""
        from bia_binder.portal.auth import configure_auth
        c.GenericOAuthenticator.authorize_url = "{discovery['authorization_endpoint']}"
        c.GenericOAuthenticator.token_url = "{discovery['token_endpoint']}"
        c.GenericOAuthenticator.userdata_url = "{discovery['userinfo_endpoint']}"
        configure_auth(c, "oidc")
        """,
        env={"OAUTH_CLIENT_ID": "bia-binder-test", "OAUTH_CLIENT_SECRET": "s3cret"},
    )
    # OAUTH_CALLBACK_URL is derived by oauthenticator from the request when unset.
    with httpx.Client(timeout=30) as client:
        to_provider = client.get(f"{hub.url}/hub/oauth_login?next=/hub/home")
        assert to_provider.status_code == 302
        authorize_url = to_provider.headers["location"]
        query = parse_qs(urlparse(authorize_url).query)
        assert authorize_url.startswith(discovery["authorization_endpoint"])
        assert query["client_id"] == ["bia-binder-test"]
        assert query["scope"][0].split() == ["openid"]  # no e-mail, no profile
        assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]

        form = client.get(authorize_url)
        assert form.status_code == 200 and 'name="sub"' in form.text
        to_hub = client.post(authorize_url, data={"sub": "alice@lifescience-ri.eu"})
        assert to_hub.status_code == 302
        assert to_hub.headers["location"].startswith(f"{hub.url}/hub/oauth_callback?code=")

        home = follow(client, client.get(to_hub.headers["location"]))
        assert home.status_code == 200
        assert urlparse(str(home.url)).path == "/hub/home"
        pseudonym = pseudonymous_username({"sub": "alice@lifescience-ri.eu"})
        assert pseudonym in home.text and "alice@" not in home.text

    user = hub.api("GET", f"/users/{pseudonym}").json()
    assert user["name"] == pseudonym and pseudonym.startswith("u-") and "@" not in pseudonym
    # the identity's sub never reaches the hub's log or database
    assert b"alice@" not in hub.log_path.read_bytes() and b"alice@" not in (hub.workdir / "jupyterhub.sqlite").read_bytes()
    # nothing secret is persisted by the hub: the user typed no password here, the client secret stays in the environment
    assert b"s3cret" not in (hub.workdir / "jupyterhub.sqlite").read_bytes()


def login_form(client: httpx.Client, hub_url: str, username: str, password: str) -> httpx.Response:
    page = client.get(f"{hub_url}/hub/login")
    xsrf = client.cookies.get("_xsrf", domain="127.0.0.1") or client.cookies.get("_xsrf")
    return client.post(
        f"{hub_url}/hub/login?next=/hub/home",
        data={"username": username, "password": password, "_xsrf": xsrf},
        headers={"Referer": str(page.url)},
    )


@pytest.mark.slow
def test_dev_mode_accepts_the_environment_password_only(start_hub) -> None:
    hub = start_hub(
        """
        from bia_binder.portal.auth import configure_auth
        configure_auth(c, "dev")
        """,
        env={DEV_PASSWORD_ENV: "demo-pass"},
    )
    with httpx.Client(timeout=30) as client:
        wrong = login_form(client, hub.url, "bob", "guess")
        assert wrong.status_code == 403
    with httpx.Client(timeout=30) as client:
        right = follow(client, login_form(client, hub.url, "bob", "demo-pass"))
        assert right.status_code == 200 and urlparse(str(right.url)).path == "/hub/home"
    assert hub.api("GET", "/users/bob").status_code == 200


@pytest.mark.slow
def test_dev_mode_refuses_to_start_without_password(start_hub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEV_PASSWORD_ENV, raising=False)
    hub = start_hub(
        """
        from bia_binder.portal.auth import configure_auth
        configure_auth(c, "dev")
        """,
        wait=False,
    )
    assert hub.proc.wait(timeout=90) != 0
    assert f"set the environment variable {DEV_PASSWORD_ENV}" in hub.log()
    # also when a config names the authenticator class directly
    with pytest.raises(AuthConfigError, match=DEV_PASSWORD_ENV):
        DevAuthenticator()


def sign_up(hub_url: str, username: str, password: str) -> httpx.Response:
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{hub_url}/hub/signup").status_code == 200
        return client.post(
            f"{hub_url}/hub/signup",
            data={
                "username": username,
                "signup_password": password,
                "signup_password_confirmation": password,
                "_xsrf": client.cookies.get("_xsrf"),
            },
        )


@pytest.mark.slow
def test_native_signup_needs_admin_approval_then_logs_in(start_hub) -> None:
    hub = start_hub(
        """
        from bia_binder.portal.auth import configure_auth
        configure_auth(c, "native", admin_users={"labadmin"})
        """
    )
    assert sign_up(hub.url, "carol", "a-long-Passw0rd").status_code == 200
    with httpx.Client(timeout=30) as client:
        pending = login_form(client, hub.url, "carol", "a-long-Passw0rd")
        assert pending.status_code == 403 and "has not been authorized by an administrator yet" in pending.text
    with httpx.Client(timeout=30) as client:
        assert login_form(client, hub.url, "carol", "wrong-password").status_code == 403

    assert sign_up(hub.url, "labadmin", "admin-Passw0rd-long").status_code == 200  # admins are approved at sign-up
    with httpx.Client(timeout=30) as admin:
        assert follow(admin, login_form(admin, hub.url, "labadmin", "admin-Passw0rd-long")).status_code == 200
        assert follow(admin, admin.get(f"{hub.url}/hub/authorize/carol")).status_code == 200
        assert admin.get(f"{hub.url}/hub/admin").status_code == 200  # JupyterHub's admin page works

    with httpx.Client(timeout=30) as client:
        home = follow(client, login_form(client, hub.url, "carol", "a-long-Passw0rd"))
        assert home.status_code == 200 and urlparse(str(home.url)).path == "/hub/home"
        assert client.get(f"{hub.url}/hub/admin").status_code == 403  # and only for admins
