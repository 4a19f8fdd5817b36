"""Who may log in to the portal: LS Login (OIDC), a lab's own accounts, or a demo password.

``bia-binder up --auth {oidc,native,dev}`` picks the mode; the hub configuration calls
:func:`configure_auth` with the JupyterHub config object ``c``::

    from bia_binder.portal.auth import configure_auth
    configure_auth(c, "oidc", admin_users={"alice@lifescience-ri.eu"})

Modes
-----
``oidc``
    oauthenticator's ``GenericOAuthenticator`` preconfigured for LS Login (formerly ELIXIR AAI):
    authorize/token/userinfo endpoints under :data:`LS_LOGIN_ISSUER`, scope ``openid`` only (we
    neither need nor receive e-mail addresses or names), PKCE. The hub user name is a pseudonym,
    :func:`pseudonymous_username` of the provider's stable ``sub``, so no log, metric or path
    carries anything that names a person. The client id, secret and callback URL come from the config file
    (``c.GenericOAuthenticator.client_id`` ...) or the environment (``OAUTH_CLIENT_ID``,
    ``OAUTH_CLIENT_SECRET``, ``OAUTH_CALLBACK_URL``). Another OIDC provider (e.g. a lab's
    Keycloak) is used by passing ``issuer=``. Every identity the provider vouches for may log
    in (``allow_all``) unless the deployer sets ``allowed_users``; no password is stored.
``native``
    nativeauthenticator (:class:`LabAuthenticator`, its login page mended for JupyterHub 6):
    users sign up at ``/hub/signup``; an admin authorizes them at ``/hub/authorize`` unless
    ``c.NativeAuthenticator.open_signup = True``.
``dev``
    :class:`DevAuthenticator`: any user name with the password held in the environment
    variable ``BIA_BINDER_DEV_PASSWORD``; refuses to start without it. For tests and demos.

Anything set explicitly in the config file before or after the call wins over these defaults,
because :func:`configure_auth` only fills traits the deployer has not set.

Call :func:`check_auth_config` (``bia-binder up`` does) before starting anything, with the
operator's config file loaded, to turn a missing secret or OIDC client into a one-line error
instead of a hub that dies at start-up or a login page that fails later.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from typing import Any

from jupyterhub.auth import Authenticator
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from traitlets.config import Config

AUTH_MODES = ("oidc", "native", "dev")

#: LS Login (Life Science Login, formerly ELIXIR AAI) OpenID Connect issuer
LS_LOGIN_ISSUER = "https://login.aai.lifescience-ri.eu/oidc"
DEV_PASSWORD_ENV = "BIA_BINDER_DEV_PASSWORD"

AUTHENTICATOR_CLASSES = {
    "oidc": "oauthenticator.generic.GenericOAuthenticator",
    "native": "bia_binder.portal.auth.LabAuthenticator",
    "dev": "bia_binder.portal.auth.DevAuthenticator",
}


#: prefix of pseudonymous hub user names (``u-`` + 24 hex digits)
PSEUDONYM_PREFIX = "u-"


def pseudonymous_username(user_info: Mapping[str, Any]) -> str:
    """The hub user name of an OIDC identity: a hash of its stable ``sub`` (``c.GenericOAuthenticator.username_claim``).

    LS Login's ``sub`` is already pseudonymous but looks like an e-mail address
    (``<hash>@lifescience-ri.eu``); hashing it keeps user names, logs and metrics free of anything
    mail-like, and stays stable for as long as the identity does. ``bia-binder`` computes an
    admin's name the same way: ``python -m bia_binder.portal.auth SUB``.
    """
    sub = user_info.get("sub")
    if not sub or not isinstance(sub, str):
        raise ValueError("the identity provider sent no 'sub' claim: cannot name the user")
    return PSEUDONYM_PREFIX + hashlib.sha256(f"bia-binder-user:{sub}".encode()).hexdigest()[:24]


class AuthConfigError(ValueError):
    """The chosen authentication mode cannot start; the message says what to set."""


class DevAuthenticator(Authenticator):
    """Any user name, one shared password from the environment: for tests and demos only.

    The password is read from the environment at each login, never written to the config or
    the database.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # Refusing to start beats a hub where nobody (or anybody, with an empty password) can log in.
        check_auth_environment("dev")

    async def authenticate(self, handler: Any, data: Mapping[str, str]) -> str | None:
        expected = os.environ.get(DEV_PASSWORD_ENV, "")
        given = data.get("password", "")
        if expected and hmac.compare_digest(given.encode(), expected.encode()):
            return data.get("username", "").strip() or None
        return None


class _NativeLoginHandler(NativeLoginHandler):
    """nativeauthenticator 1.3's login page on JupyterHub 6.

    Its ``post`` uses ``self.statsd`` (gone in JupyterHub 6) and its ``_render`` rejects the
    keyword arguments JupyterHub 6 passes when it shows an error; no newer release fixes it.
    """

    def _render(self, login_error: str | None = None, username: str | None = None, **kwargs: Any) -> Any:
        return super()._render(login_error=login_error, username=username)

    async def post(self) -> None:
        data = {arg: self.get_argument(arg, strip=False) for arg in self.request.body_arguments if arg != "_xsrf"}
        user = await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        username = data.get("username", "")
        error = "Invalid username or password."
        native_user = self.authenticator.get_user(username)
        if native_user is not None and native_user.is_valid_password(data.get("password", "")) and not native_user.is_authorized:
            error = f"User {username} has not been authorized by an administrator yet."
        self.set_status(403)
        self.finish(await self._render(login_error=error, username=username))


class LabAuthenticator(NativeAuthenticator):
    """nativeauthenticator (sign-up, admin approval, password change) working on JupyterHub 6."""

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        return [(path, _NativeLoginHandler if path == r"/login" else handler) for path, handler in super().get_handlers(app)]


def check_auth_environment(mode: str, environ: Mapping[str, str] = os.environ) -> None:
    """Raise :class:`AuthConfigError` (one line) if ``mode`` is unknown or lacks its secret."""
    if mode not in AUTH_MODES:
        raise AuthConfigError(f"unknown --auth mode {mode!r}: choose one of {', '.join(AUTH_MODES)}")
    if mode == "dev" and not environ.get(DEV_PASSWORD_ENV):
        raise AuthConfigError(
            f"--auth dev needs a password: set the environment variable {DEV_PASSWORD_ENV} "
            f"(e.g. export {DEV_PASSWORD_ENV}=$(openssl rand -hex 12))"
        )


#: what an OIDC client needs, and where oauthenticator finds each: (trait, environment variable)
OIDC_CLIENT_SETTINGS = (("client_id", "OAUTH_CLIENT_ID"), ("client_secret", "OAUTH_CLIENT_SECRET"))


def check_auth_config(mode: str, config: Config, environ: Mapping[str, str] = os.environ) -> None:
    """:func:`check_auth_environment`, and for ``oidc`` a client id and secret in ``config`` or ``environ``.

    ``config`` is the operator's config file as loaded (not yet merged with ours), so this runs
    before anything starts.
    """
    check_auth_environment(mode, environ)
    if mode != "oidc":
        return
    missing = [(name, env) for name, env in OIDC_CLIENT_SETTINGS if not _oidc_client_setting(config, environ, name, env)]
    if missing:
        settings = " and ".join(f"{env} (or c.GenericOAuthenticator.{name} in the --config file)" for name, env in missing)
        what = " and ".join(name.replace("_", " ") for name, _ in missing)
        raise AuthConfigError(
            f"--auth oidc needs the {what} of the client registered with LS Login "
            f"(callback https://<host>/hub/oauth_callback): set {settings}"
        )


def _oidc_client_setting(config: Config, environ: Mapping[str, str], name: str, env_name: str) -> str:
    """Where oauthenticator looks, in its order: its own config section, its base class's, the environment."""
    for section in ("GenericOAuthenticator", "OAuthenticator"):
        value = config.get(section, {}).get(name)  # .get: reading must not create sections
        if value:
            return str(value)
    return environ.get(env_name, "")


def _set_default(section: Config, name: str, value: Any) -> None:
    """Set a trait unless the deployer's config file already did."""
    if name not in section:
        section[name] = value


def configure_auth(
    c: Config,
    mode: str,
    *,
    issuer: str = LS_LOGIN_ISSUER,
    admin_users: Iterable[str] = (),
    login_service: str = "LS Login",
) -> None:
    """Configure JupyterHub's authenticator for ``mode`` (one of :data:`AUTH_MODES`).

    ``issuer`` is the OIDC issuer whose ``/authorize``, ``/token`` and ``/userinfo`` endpoints
    are used (LS Login by default); ``admin_users`` get JupyterHub's admin page.
    """
    check_auth_environment(mode)
    _set_default(c.JupyterHub, "authenticator_class", AUTHENTICATOR_CLASSES[mode])
    admins = set(admin_users)
    if admins:
        c.Authenticator.admin_users = set(c.Authenticator.get("admin_users", set())) | admins
    if mode == "oidc":
        _configure_oidc(c.GenericOAuthenticator, issuer.rstrip("/"), login_service)
    elif mode == "native":
        # Sign-ups wait for an admin's approval unless the deployer opens them.
        _set_default(c.NativeAuthenticator, "open_signup", False)
        # JupyterHub's own allow list would reject every sign-up; nativeauthenticator's approval gates instead.
        _set_default(c.NativeAuthenticator, "allow_all", True)
    elif mode == "dev":
        _set_default(c.DevAuthenticator, "allow_all", True)


def _configure_oidc(section: Config, issuer: str, login_service: str) -> None:
    _set_default(section, "authorize_url", f"{issuer}/authorize")
    _set_default(section, "token_url", f"{issuer}/token")
    _set_default(section, "userdata_url", f"{issuer}/userinfo")
    # no e-mail or profile scope: nothing that names a person reaches the hub
    _set_default(section, "scope", ["openid"])
    _set_default(section, "enable_pkce", True)
    # `sub` is the stable, unique identifier LS Login guarantees (emails and names can change), hashed
    _set_default(section, "username_claim", pseudonymous_username)
    _set_default(section, "enable_auth_state", False)  # the provider's tokens and claims are not stored
    _set_default(section, "login_service", login_service)
    # Anyone the identity provider vouches for is a researcher we serve; narrow with allowed_users.
    _set_default(section, "allow_all", True)


if __name__ == "__main__":  # the hub user name of an OIDC `sub` (for admin_users, user_quotas)
    import sys

    for sub in sys.argv[1:]:
        print(pseudonymous_username({"sub": sub}))
