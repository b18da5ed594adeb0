"""The pages and their static files as served: HTML, ES modules, always revalidated."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from tests.server import Server

STATIC = Path(__file__).resolve().parents[2] / "syncclass" / "static"


def fetch(server: Server, path: str) -> tuple[int, dict[str, str], str]:
    with urllib.request.urlopen(server.url + path, timeout=10) as response:
        return response.status, dict(response.headers), response.read().decode()


@pytest.mark.parametrize(
    "path", ["/", "/lessons/abc/teach?token=x", "/lessons/abc/join?token=x", "/recordings"]
)
def test_pages_are_chinese_html(server: Server, path: str) -> None:
    status, headers, body = fetch(server, path)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert '<html lang="zh-CN">' in body
    for module in re.findall(r'src="(/static/js/[^"]+)"', body):
        assert fetch(server, module)[0] == 200


def test_modules_are_javascript_and_revalidated(server: Server) -> None:
    for module in sorted((STATIC / "js").glob("*.js")):
        status, headers, body = fetch(server, f"/static/js/{module.name}")
        assert status == 200
        assert headers["Content-Type"].split(";")[0] in (
            "text/javascript",
            "application/javascript",
        )
        assert headers["Cache-Control"] == "no-cache"
        # every import is one of ours, by a relative path: nothing comes from elsewhere
        for target in re.findall(r"""^import .* from '([^']+)';$""", body, re.MULTILINE):
            assert target.startswith("./") and (STATIC / "js" / target[2:]).is_file(), target


def test_no_page_refers_to_another_server() -> None:
    for file in STATIC.rglob("*"):
        if file.suffix in (".html", ".js", ".css"):
            text = file.read_text()
            # the SVG namespace is a name, not an address anything fetches
            addresses = re.findall(
                r"(?:https?:)?//[\w.-]+\.\w+", text.replace("http://www.w3.org/2000/svg", "")
            )
            assert addresses == [], (file.name, addresses)
