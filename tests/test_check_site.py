"""docs/check_site.py, the headless-Chromium check of the built site, on a tiny hand-made site:
a good page passes; a broken image, an overflowing page, a console error, an uncaught
exception, a request to another host and a link to a missing page are each named, with the
page."""

import base64
import importlib.util
import io
import os
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_site", ROOT / "docs" / "check_site.py")
check_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_site)


def _png(width, height) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def _page(body: str, head: str = "") -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>t</title>{head}</head>"
            f"<body style='margin:0'>{body}</body></html>")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Seven pages, one fault each but the first; the images 37x23 (not square), one inlined."""
    root = tmp_path_factory.mktemp("site")
    (root / "img").mkdir()
    (root / "img" / "good.png").write_bytes(_png(37, 23))
    inline = base64.b64encode(_png(23, 37)).decode()
    pages = {
        "index.html": _page(f"<p><a href='broken.html#top'>fine</a> <a href='tutorials/'>"
                            f"folder</a> <a href='https://example.com/'>away</a></p><img src='img/good.png'><img src='data:image/png;base64,"
                            f"{inline}'><pre style='overflow:auto'>{'x' * 400}</pre>"),
        "broken.html": _page("<img src='img/missing.png'><img src='img/good.png'>"),
        "tutorials/wide.html": _page("<div class='table' style='width:1500px'>wide</div>"),
        "errors.html": _page("<script>console.error('boom from the page')</script>"),
        "throws.html": _page("<script>undefinedFunction()</script>"),
        "tutorials/index.html": _page("<a href='../guide/data.md'>not rewritten</a> "
                                      "<a href='wide.html'>here</a> <a href='../gone/'>gone</a>"),
        "remote.html": _page("<p>cdn</p>", head="<script src='https://cdn.example.com/x.js'>"
                             "</script>"),
    }
    for name, text in pages.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def checked(site, tmp_path_factory):
    chromium = check_site.find_chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("headless Chromium is required under CI but is not on PATH")
        pytest.skip("headless Chromium is not installed (Debian package chromium)")
    shots = tmp_path_factory.mktemp("shots")
    lines = []
    status = check_site.check_site(site, shots, chromium, out=lines.append)
    return status, lines, shots


@pytest.mark.slow
def test_each_fault_is_named_with_its_page_and_nothing_else(checked):
    status, lines, _ = checked
    problems = lines[:-1]
    assert status == 1
    assert sorted({line.split(":")[0] for line in problems}) == [
        "broken.html", "errors.html", "remote.html", "throws.html", "tutorials/index.html",
        "tutorials/wide.html"]
    by_page = {page: [ln for ln in problems if ln.startswith(page + ":")]
               for page in ("broken.html", "errors.html", "remote.html", "throws.html",
                            "tutorials/index.html", "tutorials/wide.html")}
    assert by_page["tutorials/index.html"] == [
        "tutorials/index.html: link to a missing page or file: /guide/data.md",
        "tutorials/index.html: link to a missing page or file: /gone/"]
    assert "broken.html: image does not decode: img/missing.png" in by_page["broken.html"]
    assert not any("favicon" in ln or "good.png" in ln for ln in problems)
    assert any("console error: boom from the page" in ln for ln in by_page["errors.html"])
    assert any("uncaught exception" in ln and "undefinedFunction" in ln
               for ln in by_page["throws.html"])
    assert any("request to another host: https://cdn.example.com/x.js" in ln
               for ln in by_page["remote.html"])
    wide = by_page["tutorials/wide.html"]
    assert len(wide) == 1 and "horizontal overflow at 1200 px" in wide[0] \
        and "div.table" in wide[0]


@pytest.mark.slow
def test_summary_and_a_screenshot_of_each_page(checked, site):
    _, lines, shots = checked
    assert lines[-1].startswith("check_site: 7 pages, 4 images, 6 with problems, in ")
    assert lines[-1].endswith(f"screenshots in {shots}")
    for page in check_site.site_pages(site):
        shot = Image.open(shots / check_site.shot_name(page))
        assert shot.size == (check_site.WIDTH, check_site.HEIGHT)
    # the good page's images are on its screenshot: 37x23 + 23x37 red pixels
    colours = dict((rgb, n) for n, rgb in Image.open(shots / "index.png").convert("RGB")
                   .getcolors(maxcolors=1 << 20))
    assert colours.get((200, 30, 30)) == 37 * 23 + 23 * 37


def test_a_page_in_a_folder_of_its_own_is_named_by_the_folder():
    assert check_site.shot_name(Path("guide/data/index.html")) == Path("guide/data.png")
    assert check_site.shot_name(Path("index.html")) == Path("index.png")
    assert check_site.shot_name(Path("404.html")) == Path("404.png")


def test_pages_are_every_html_file_but_the_screenshots(tmp_path):
    for name in ("index.html", "a/index.html", "_screenshots/old.html", "a/b.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    pages = check_site.site_pages(tmp_path, skip=tmp_path / "_screenshots")
    assert [p.as_posix() for p in pages] == ["a/index.html", "index.html"]


def test_events_become_problems_and_local_requests_do_not():
    origin = "http://127.0.0.1:8123"
    events = [
        {"method": "Runtime.consoleAPICalled",
         "params": {"type": "error", "args": [{"value": "bad"}, {"value": 3}]}},
        {"method": "Runtime.consoleAPICalled", "params": {"type": "log", "args": [{"value": "ok"}]}},
        {"method": "Runtime.exceptionThrown",
         "params": {"exceptionDetails": {"exception": {"description": "TypeError: x\n at y"}}}},
        {"method": "Log.entryAdded", "params": {"entry": {"level": "error", "text": "Failed",
                                                          "url": "http://127.0.0.1:8123/a.png"}}},
        {"method": "Network.requestWillBeSent", "params": {"request": {"url": origin + "/a"}}},
        {"method": "Network.requestWillBeSent", "params": {"request": {"url": "data:image/png"}}},
        {"method": "Network.requestWillBeSent",
         "params": {"request": {"url": "https://fonts.example/f.css"}}},
    ]
    assert check_site._problems_in_events(events, origin) == [
        "console error: bad 3", "uncaught exception: TypeError: x",
        "console error: Failed (http://127.0.0.1:8123/a.png)",
        "request to another host: https://fonts.example/f.css"]


@pytest.mark.parametrize("ci, status", [(None, 0), ("1", 1)])
def test_without_chromium_it_says_so(tmp_path, monkeypatch, capsys, ci, status):
    monkeypatch.setattr(check_site, "find_chromium", lambda: None)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert check_site.main([str(tmp_path)]) == status
    assert "headless Chromium is not installed" in capsys.readouterr().out
