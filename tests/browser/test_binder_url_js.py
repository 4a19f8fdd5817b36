"""Unit tests of the pages' JavaScript modules, run in Chromium (the only JS engine the pages target).

binder-url.js: provider detection, specs, launch links, badges, the post-launch redirect.
terminal.js: ANSI colours and carriage returns in the build log.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Page

from tests.browser.conftest import PageWatch, new_context
from tests.browser.harness import BINDERHUB_REPOPROVIDERS, REPOPROVIDERS

pytestmark = pytest.mark.browser

BASE = "https://binder.example.org/binder/"


@pytest.fixture(scope="module")
async def page(browser, harness):
    """One page for the whole module: these tests only import modules into it."""
    watch = PageWatch()
    context = await new_context(browser, watch)
    page = await context.new_page()
    await page.goto(harness.url)
    yield page
    await context.close()
    assert watch.errors == []


@pytest.fixture
async def js(page: Page, harness):
    """Call an export of a static JS module: ``await js("binder-url.js", "buildSpec", arg, ...)``."""

    async def call(module: str, function: str, *args):
        return await page.evaluate(
            """async ([url, fn, args]) => (await import(url))[fn](...args)""",
            [f"{harness.url}static/js/{module}", function, list(args)],
        )

    return call


@pytest.fixture
async def detect(page: Page, harness):
    """Detect a pasted string against a /api/repoproviders answer: [id, repo, ref] or None."""

    async def run(text: str, providers=REPOPROVIDERS):
        return await page.evaluate(
            """async ([url, text, raw]) => {
                const m = await import(url);
                const found = m.detectProvider(text, m.normaliseProviders(raw));
                return found && [found.provider.id, found.repo, found.ref];
            }""",
            [f"{harness.url}static/js/binder-url.js", text, providers],
        )

    return run


@pytest.mark.parametrize(
    "pasted, expected",
    [
        ("https://github.com/binder-examples/requirements", ["gh", "binder-examples/requirements", ""]),
        ("https://github.com/org/repo.git", ["gh", "org/repo", ""]),
        ("https://github.com/org/repo/tree/feature/x", ["gh", "org/repo", "feature/x"]),
        ("  org/repo  ", ["gh", "org/repo", ""]),
        ("https://gitlab.com/group/sub/project", ["gl", "group/sub/project", ""]),
        ("https://gist.github.com/someone/8f7c2f0341ef", ["gist", "someone/8f7c2f0341ef", ""]),
        ("http://127.0.0.1:8123/lab/repo.git", ["git", "http://127.0.0.1:8123/lab/repo.git", ""]),
        ("file:///srv/repos/analysis", ["git", "file:///srv/repos/analysis", ""]),
        ("10.5281/zenodo.3242074", ["zenodo", "10.5281/zenodo.3242074", ""]),
        ("https://doi.org/10.5281/zenodo.3242074", ["zenodo", "10.5281/zenodo.3242074", ""]),
        ("doi:10.6084/m9.figshare.9782777.v1", ["figshare", "10.6084/m9.figshare.9782777.v1", ""]),
        ("10.7910/DVN/TJCLKP", ["dataverse", "10.7910/DVN/TJCLKP", ""]),
        ("https://doi.org/10.1234/other-dataverse", ["dataverse", "10.1234/other-dataverse", ""]),
        ("not a repository", None),
        ("", None),
    ],
)
@pytest.mark.parametrize("served", ["bia-binder", "binderhub"])
async def test_detects_provider_of_pasted_link(detect, pasted, expected, served):
    """Against what our service serves, and against BinderHub's own provider list."""
    providers = REPOPROVIDERS if served == "bia-binder" else BINDERHUB_REPOPROVIDERS
    assert await detect(pasted, providers) == expected


async def test_reads_older_provider_shape_and_python_regex(detect):
    older = [
        {
            "id": "gh",
            "display_name": "GitHub",
            "regex_detect": [r"^https?://github\.com/(?P<repo>[^/]+/[^/]+)/?$"],
            "labels": {"text": "GitHub URL", "ref_prop_disabled": False},
        }
    ]
    assert await detect("https://github.com/a/b", older) == ["gh", "a/b", ""]
    assert await detect("https://gitlab.com/a/b", older) is None


async def test_builds_specs_as_binderhub_does(js):
    gh = {"id": "gh", "urlEncode": False, "refEnabled": True, "refDefault": "HEAD"}
    git = {"id": "git", "urlEncode": True, "refEnabled": True, "refDefault": "HEAD"}
    zenodo = {"id": "zenodo", "urlEncode": False, "refEnabled": False, "refDefault": ""}
    assert await js("binder-url.js", "buildSpec", gh, "org/repo", "") == "org/repo/HEAD"
    assert await js("binder-url.js", "buildSpec", gh, "/org/repo/", "v1.0") == "org/repo/v1.0"
    assert (
        await js("binder-url.js", "buildSpec", git, "http://127.0.0.1:8123/lab/repo.git", "main")
        == "http%3A%2F%2F127.0.0.1%3A8123%2Flab%2Frepo.git/main"
    )
    assert await js("binder-url.js", "buildSpec", zenodo, "10.5281/zenodo.3242074", "main") == "10.5281/zenodo.3242074"


async def test_launch_url_keeps_base_prefix_and_open_parameters(js):
    labpath = await js("binder-url.js", "openParams", "file", "/notebooks/a b.ipynb")
    assert labpath == {"labpath": "notebooks/a b.ipynb"}
    assert await js("binder-url.js", "openParams", "url", "/voila/render/x.ipynb") == {"urlpath": "/voila/render/x.ipynb"}
    assert await js("binder-url.js", "openParams", "file", "  ") == {}
    url = await js("binder-url.js", "launchUrl", BASE, "gh", "org/repo/HEAD", labpath)
    assert url == f"{BASE}v2/gh/org/repo/HEAD?labpath=notebooks%2Fa+b.ipynb"
    encoded = await js("binder-url.js", "launchUrl", BASE, "git", "http%3A%2F%2Fh%2Fr.git/HEAD", {})
    assert encoded == f"{BASE}v2/git/http%3A%2F%2Fh%2Fr.git/HEAD"


async def test_badge_snippets(js):
    badge, target = f"{BASE}badge_logo.svg", f"{BASE}v2/gh/org/repo/HEAD?urlpath=a&b"
    assert await js("binder-url.js", "badgeMarkup", "markdown", badge, target) == f"[![Binder]({badge})]({target})"
    assert await js("binder-url.js", "badgeMarkup", "rst", badge, target) == f".. image:: {badge}\n   :target: {target}"
    html = await js("binder-url.js", "badgeMarkup", "html", badge, target)
    assert html == f'<a href="{BASE}v2/gh/org/repo/HEAD?urlpath=a&amp;b"><img src="{badge}" alt="Launch Binder"></a>'


@pytest.mark.parametrize(
    "open_params, expected_path",
    [
        ({}, "/user/u/"),
        ({"urlpath": "/lab/tree/a.ipynb"}, "/user/u/lab/tree/a.ipynb"),
        ({"urlpath": "voila/render/a b.ipynb?theme=dark"}, "/user/u/voila/render/a%20b.ipynb?theme=dark"),
        ({"labpath": "notebooks/a b.ipynb/"}, "/user/u/lab/tree/notebooks/a%20b.ipynb"),
        ({"filepath": "/index.ipynb"}, "/user/u/tree/index.ipynb"),
        ({"urlpath": "rstudio", "labpath": "x.ipynb"}, "/user/u/rstudio"),
        ({"urlpath": "", "labpath": "", "filepath": ""}, "/user/u/"),
    ],
)
async def test_redirect_honours_urlpath_labpath_filepath(js, open_params, expected_path):
    url = await js("binder-url.js", "redirectUrl", "https://h.org/user/u/", "tok", open_params, "https://h.org/v2/gh/a/b/HEAD")
    separator = "&" if "?" in expected_path else "?"
    assert url == f"https://h.org{expected_path}{separator}token=tok"


async def test_redirect_resolves_relative_server_url(js):
    url = await js("binder-url.js", "redirectUrl", "/user/u", "tok", {}, "https://h.org/binder/v2/gh/a/b/HEAD")
    assert url == "https://h.org/user/u/?token=tok"


@pytest.fixture
async def terminal(page: Page, harness):
    """Write chunks into a new Terminal; return [plain text, the log's HTML]."""

    async def write(*chunks: str, max_lines: int = 5000):
        return await page.evaluate(
            """async ([url, chunks, maxLines]) => {
                const { Terminal } = await import(url);
                const element = document.createElement("div");
                const term = new Terminal(element, { maxLines });
                for (const chunk of chunks) term.write(chunk);
                return [term.text(), element.innerHTML];
            }""",
            [f"{harness.url}static/js/terminal.js", list(chunks), max_lines],
        )

    return write


async def test_terminal_colours_become_spans(terminal):
    text, html = await terminal("plain \x1b[31mred\x1b[0m \x1b[1;92mbold green\x1b[0m\n")
    assert text == "plain red bold green\n"
    assert '<span class="ansi-fg-red">red</span>' in html
    assert '<span class="ansi-fg-bright-green ansi-bold">bold green</span>' in html


async def test_terminal_256_and_truecolour(terminal):
    _text, html = await terminal("\x1b[38;5;196mA\x1b[38;2;1;2;3mB\x1b[0m")
    assert 'style="color: rgb(255, 0, 0);">A<' in html
    assert 'style="color: rgb(1, 2, 3);">B<' in html


async def test_terminal_carriage_return_overwrites_line_across_writes(terminal):
    text, _html = await terminal("Downloading 10%\r", "Downloading 60%\r", "Downloading 100%\r\n", "done\n")
    assert text == "Downloading 100%\ndone\n"


async def test_terminal_cr_then_newline_keeps_line(terminal):
    text, _html = await terminal("kept\r", "\n", "next")
    assert text == "kept\nnext"


async def test_terminal_strips_other_escapes(terminal):
    text, html = await terminal("a\x1b[2Kb\x1b]0;title\x07c\x1b[?25l\n", "kept\x1b[K\n", "gone\r\x1b[Knew\n")
    assert text == "bc\nkept\nnew\n"
    assert "\x1b" not in html


async def test_terminal_bounds_dom_but_copies_everything(terminal):
    text, html = await terminal("".join(f"line {i}\n" for i in range(50)), max_lines=10)
    assert text.splitlines()[0] == "line 0" and len(text.splitlines()) == 50
    assert html.count('class="term-line"') == 10
    assert "line 0<" not in html and "line 49" in html
