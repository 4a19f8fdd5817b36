"""The spawn options of logged-in users: form, REST API options, and their one-line errors."""

from __future__ import annotations

import pytest

from bia_binder.events import LaunchError
from bia_binder.portal.options import SessionChoice, options_from_form, parse_session_options, render_options_form
from bia_binder.sessions.profiles import ResourceProfiles


def test_form_offers_every_logged_in_profile_first_checked():
    profiles = ResourceProfiles().logged_in_profiles()
    form = render_options_form(profiles)
    for profile in profiles:
        assert f'value="{profile.slug}"' in form and profile.display_name in form
    assert form.index(" checked") < form.index(f'value="{profiles[1].slug}"')


def test_form_default_environment():
    options = options_from_form({"profile": ["large"], "environment": ["default"], "repository": ["gh/a/b/main"]})
    assert options == {"profile": "large", "environment": "default"}
    assert parse_session_options(options) == SessionChoice(profile="large")


@pytest.mark.parametrize(
    "typed",
    ["gh/org/repo/main", " gh/org/repo/main/ ", "https://binder.example.org/v2/gh/org/repo/main"],
)
def test_form_repository_environment(typed):
    options = options_from_form({"profile": ["standard"], "environment": ["repository"], "repository": [typed]})
    choice = parse_session_options(options)
    assert (choice.provider, choice.spec) == ("gh", "org/repo/main")
    assert not choice.uses_default_environment


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"environment": "svn/org/repo"}, "neither 'default' nor a repository"),
        ({"environment": "gh"}, "neither 'default' nor a repository"),
        ({"profile": 3}, "must be strings"),
        ({"image": "ubuntu"}, "unknown session option(s) ['image']"),
    ],
)
def test_bad_options_say_what_is_wrong(options, expected):
    with pytest.raises(LaunchError) as caught:
        parse_session_options(options)
    assert expected in caught.value.message and caught.value.status_code == 400
