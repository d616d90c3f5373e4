"""The API docs page through the real server: every asset it names is this app's own, and served."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest

from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.conftest import Instance

DOCS = "/api/v1/docs"
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


class _Assets(HTMLParser):
    """The URLs a page loads: its scripts, stylesheets and icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for attribute in ("src", "href"):
            value = named.get(attribute)
            if value and tag in ("script", "link", "img"):
                self.urls.append(value)


def _assets(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    # Swagger UI is given the spec's URL in its start-up script.
    parser.urls.extend(re.findall(r"url: '([^']+)'", html))
    return parser.urls


@pytest.fixture
def base_url(instance: Instance) -> Iterator[str]:
    with running_server(create_app(instance.services)) as url:
        yield url


def test_the_docs_page_names_only_same_origin_assets_and_each_is_served(base_url: str) -> None:
    page = httpx.get(base_url + DOCS)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = _assets(page.text)
    assert len(urls) == 4, urls  # the script, the stylesheet, the icon and the spec
    assert "/api/v1/openapi.json" in urls
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), f"the docs load {url} from elsewhere"
        asset = httpx.get(base_url + url)
        assert asset.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert asset.headers["content-type"].startswith(CONTENT_TYPES[suffix]), (url, asset.headers["content-type"])
        assert len(asset.content) > 100, url


def test_swagger_ui_is_the_bundled_one(base_url: str) -> None:
    html = httpx.get(base_url + DOCS).text
    assert '<script src="/static/apidocs/swagger-ui-bundle.js">' in html
    assert 'href="/static/apidocs/swagger-ui.css"' in html
    script = httpx.get(base_url + "/static/apidocs/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in script
    # Swagger UI 5 reads OpenAPI 3.1, the version this app's spec declares.
    assert httpx.get(base_url + "/api/v1/openapi.json").json()["openapi"].startswith("3.1")
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', script)


def test_the_docs_page_allows_only_its_own_scripts(base_url: str) -> None:
    response = httpx.get(base_url + DOCS)
    policy = dict(
        directive.strip().split(" ", 1) for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    sources = policy["script-src"].split()
    assert sources[0] == "'self'" and "'unsafe-inline'" not in sources
    assert all(source.startswith("'sha256-") for source in sources[1:])
    assert len(sources) == 2 and response.text.count("<script>") == 1  # Swagger UI's start-up script, by hash


def test_the_assets_do_not_shadow_the_apps_own_static_files(base_url: str) -> None:
    assert httpx.get(base_url + "/static/aperture.css").status_code == 200
    assert httpx.get(base_url + "/static/apidocs/no-such-file.js").status_code == 404
