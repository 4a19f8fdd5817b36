"""PROVIDERS, get_provider and the /api/repoproviders body (its regexes must work in JavaScript)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from bia_binder.providers import PROVIDERS, ProviderError, get_provider, repoproviders_api
from bia_binder.providers.base import RepoProvider

from .conftest import configured

BINDERHUB_IDS = ["gh", "gist", "git", "gl", "zenodo", "figshare", "dataverse"]


def test_providers_by_prefix():
    assert list(PROVIDERS) == BINDERHUB_IDS
    for prefix, cls in PROVIDERS.items():
        assert issubclass(cls, RepoProvider) and cls.name == prefix
        assert get_provider(prefix, "some/spec").spec == "some/spec"


def test_unknown_provider_is_404_listing_known_ones():
    with pytest.raises(ProviderError) as error:
        get_provider("svn", "x/y")
    assert error.value.status_code == 404
    assert "svn" in error.value.message
    assert all(prefix in error.value.message for prefix in PROVIDERS)


def test_repoproviders_api_has_binderhub_shape():
    body = repoproviders_api()
    json.dumps(body)  # serialisable as is
    assert [entry["id"] for entry in body] == BINDERHUB_IDS
    for entry in body:
        assert set(entry) >= {"displayName", "id", "spec", "repo", "ref"}
        assert set(entry["repo"]) == {"label", "placeholder", "urlEncode"}
        assert isinstance(entry["ref"]["enabled"], bool)
        assert entry["spec"]["validateRegex"]
    by_id = {entry["id"]: entry for entry in body}
    assert by_id["gl"]["repo"]["urlEncode"] is True and by_id["gh"]["repo"]["urlEncode"] is False
    assert by_id["zenodo"]["ref"] == {"enabled": False}
    assert PROVIDERS["gh"].labels["text"] == by_id["gh"]["repo"]["label"]


DETECT_CASES = [
    ("gh", "https://github.com/org/repo", {"repo": "org/repo"}),
    ("gh", "org/repo", {"repo": "org/repo"}),
    ("gh", "https://github.com/org/repo.git", {"repo": "org/repo"}),
    ("gh", "https://github.com/org/repo/tree/feature/x", {"repo": "org/repo", "ref": "feature/x"}),
    ("gl", "https://gitlab.com/group/sub/project", {"repo": "group/sub/project"}),
    ("gl", "https://gitlab.com/group/project/-/tree/dev", {"repo": "group/project", "ref": "dev"}),
    ("gl", "group/project", {"repo": "group/project"}),
    ("gl", "xx", None),  # a bare word is not a GitLab project (namespace/project)
    ("gist", "https://gist.github.com/user/8a658f7f63b13768d1e75fa2464f5092",
     {"repo": "user/8a658f7f63b13768d1e75fa2464f5092"}),
    ("zenodo", "https://doi.org/10.5281/zenodo.3242074", {"repo": "10.5281/zenodo.3242074"}),
    ("figshare", "doi:10.6084/m9.figshare.9782777.v1", {"repo": "10.6084/m9.figshare.9782777.v1"}),
    ("dataverse", "10.7910/DVN/TJCLKP", {"repo": "10.7910/DVN/TJCLKP"}),
]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the regexes as the browser does")
def test_detect_regexes_work_in_javascript():
    regexes = {entry["id"]: entry["detect"]["regex"] for entry in repoproviders_api() if "detect" in entry}
    enterprise = repoproviders_api(configured(GitHubProvider={"html_url": "https://github.example.org"}))
    regexes["gh-enterprise"] = enterprise[0]["detect"]["regex"]
    cases = [*DETECT_CASES, ("gh-enterprise", "https://github.example.org/org/repo", {"repo": "org/repo"})]
    script = """
      const [regexes, cases] = JSON.parse(require('fs').readFileSync(0, 'utf8'));
      const out = cases.map(([id, input]) => {
        const m = new RegExp(regexes[id]).exec(input);
        return m && m.groups ? Object.fromEntries(Object.entries(m.groups).filter(([, v]) => v !== undefined)) : null;
      });
      console.log(JSON.stringify(out));
    """
    result = subprocess.run(["node", "-e", script], input=json.dumps([regexes, [c[:2] for c in cases]]),
                            capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(result.stdout)
    assert got[:-1] == [expected for _id, _input, expected in DETECT_CASES]
    assert got[-1] == {"repo": "org/repo"}  # the configured GitHub Enterprise host
    assert "github\\.example\\.org" in regexes["gh-enterprise"]
