"""Load every page of the built site in headless Chromium and fail on what a reader would see
go wrong: an image that does not decode, a console error or an uncaught exception, a request
to another host (the site must work offline), a link to a page or file the site does not
have, or a page wider than a 1200-pixel window. A screenshot of each page is saved for a person
to look at.

    python docs/check_site.py SITE_DIR [--screenshots DIR]

One line per problem (``PAGE: problem``), then a summary; exit status 1 when there was one.
Without Chromium it says so and exits 0, or 1 when the CI variable is set.

The pages are served from SITE_DIR by a local HTTP server (as a reader's browser gets them),
and one browser loads them all, driven over the DevTools protocol on a local socket (its
WebSocket framing is written here: the standard library has none). Chromium resolves no host
but 127.0.0.1, so nothing is fetched from the network, and every request it tries is seen.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

WIDTH, HEIGHT = 1200, 900          # the window the pages are checked in
MAX_SHOT_HEIGHT = 4_000            # a screenshot shows the page's top 4000 px at most (a
                                   # whole API page is 16000 px: seconds to paint and encode),
MAX_FIGURES_SHOT_HEIGHT = 16_000   # but a page with images (a tutorial's figures) is shown
                                   # whole, up to about Chromium's largest surface
PAGE_TIMEOUT = 30.0                # seconds a page may take to load
WIDE_SHOWN = 3                     # the elements named per page that overflow

# Runs before the page's own scripts: every image loads now (no lazy loading below the fold).
PRELUDE = """
document.addEventListener("DOMContentLoaded", () => {
  for (const img of document.images) img.loading = "eager";
});
"""

# Evaluated after the load event: what the images and the layout look like.
INSPECT = """(async () => {
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map((i) => i.decode().catch(() => null)));
  const broken = imgs.filter((i) => !(i.complete && i.naturalWidth > 0))
                     .map((i) => (i.getAttribute("src") || "").slice(0, 80));
  const W = document.documentElement.clientWidth;
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
      (el.classList.length ? "." + Array.from(el.classList).slice(0, 2).join(".") : "");
  const clipped = (el) => {
    for (let a = el.parentElement; a && a !== document.documentElement; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== "visible" &&
          a.getBoundingClientRect().right <= W + 1) return true;
    }
    return false;
  };
  const wide = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || r.right <= W + 1) continue;
    if (wide.some((w) => w.el.contains(el)) || clipped(el)) continue;
    wide.push({el: el, text: name(el) + " " + Math.round(r.right) + " px"});
  }
  const links = Array.from(document.links).map((a) => a.href);
  return {images: imgs.length, broken: broken, links: links, scrollWidth: document.documentElement.scrollWidth,
          clientWidth: W, wide: wide.map((w) => w.text), height: document.documentElement.scrollHeight};
})()"""


# ---------------------------------------------------------------------------- the browser

class WebSocket:
    """The client side of a WebSocket (RFC 6455) on a local TCP socket: text messages out
    (masked, as a client must), text messages in (unmasked, maybe fragmented)."""

    def __init__(self, url: str, timeout: float):
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the browser closed the DevTools connection")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools refused the WebSocket: {head[:80]!r}")
        self.buffer = head.split(b"\r\n\r\n", 1)[1]

    def send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                  struct.pack("!BH", 0x80 | 126, n) if n < 1 << 16 else
                                  struct.pack("!BQ", 0x80 | 127, n))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buffer)))
            if not chunk:
                raise ConnectionError("the browser closed the DevTools connection")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)
            message += payload
            if first & 0x0F == 0x8:
                raise ConnectionError("the browser closed the DevTools connection")
            if first & 0x80:                    # the final fragment
                return message.decode()


class Browser:
    """Headless Chromium driven over the DevTools protocol: one page, loaded again and again."""

    def __init__(self, chromium: str, profile: Path):
        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--disable-extensions", "--disable-dev-shm-usage",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             "--remote-debugging-port=0", f"--user-data-dir={profile}",
             f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = self._devtools_url()
        self.ws = WebSocket(url, timeout=PAGE_TIMEOUT)
        self.next_id, self.events = 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Page.bringToFront", session=True)     # a background page draws no frames
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH,
                  height=HEIGHT, deviceScaleFactor=1, mobile=False)
        self.call("Page.addScriptToEvaluateOnNewDocument", session=True, source=PRELUDE)

    def _devtools_url(self) -> str:
        deadline = time.monotonic() + PAGE_TIMEOUT
        lines = []
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                threading.Thread(target=self.process.stderr.read, daemon=True).start()
                return found.group(1)
        self.close()
        raise RuntimeError("Chromium did not start its DevTools server: "
                           + "".join(lines[-3:]).strip())

    def call(self, method: str, *, session: bool = False, **params) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.receive())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float) -> bool:
        """Read events until ``method`` arrives (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.ws.sock.settimeout(left)
            try:
                self.events.append(json.loads(self.ws.receive()))
            except socket.timeout:
                return False
            finally:
                self.ws.sock.settimeout(PAGE_TIMEOUT)
        return True

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


# ---------------------------------------------------------------------------- one page

def _problems_in_events(events: list[dict], origin: str) -> list[str]:
    """Console errors, uncaught exceptions and requests to another host, from the events the
    browser sent while the page loaded."""
    problems = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            problems.append(f"console error: {text[:200]}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            problems.append(f"uncaught exception: {text.splitlines()[0][:200] if text else '?'}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error" and \
                urlsplit(params["entry"].get("url", "")).path != "/favicon.ico":
            entry = params["entry"]                # (the browser asks for a favicon unbidden)
            problems.append(f"console error: {entry.get('text', '')[:200]}"
                            + (f" ({entry['url'][:100]})" if entry.get("url") else ""))
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url.startswith(("http:", "https:", "ws:", "wss:")) and \
                    urlsplit(url).netloc != urlsplit(origin).netloc:
                problems.append(f"request to another host: {url[:200]}")
    return problems


def dead_links(links: list[str], origin: str, site: Path) -> list[str]:
    """The links (absolute URLs, as the browser resolved them) to ``origin`` whose path is
    neither a file of ``site`` nor a folder with an index.html: a link MkDocs did not rewrite
    (a notebook's ``../guide/data.md``) or a page that is gone. Each once, in order."""
    dead = []
    for link in links:
        parts = urlsplit(link)
        if f"{parts.scheme}://{parts.netloc}" != origin or link in dead:
            continue
        target = site / unquote(parts.path).lstrip("/")
        if not (target.is_file() or (target / "index.html").is_file()):
            dead.append(link[len(origin):])
    return dead


def check_page(browser: Browser, url: str, shot: Path, site: Path) -> tuple[list[str], int]:
    """Load ``url`` (a page of ``site``); return its problems and its number of images, and
    save its screenshot (the page's top :data:`MAX_SHOT_HEIGHT` pixels, or
    :data:`MAX_FIGURES_SHOT_HEIGHT` when it has images) to ``shot``."""
    browser.events = []
    browser.call("Page.navigate", session=True, url=url)
    if not browser.wait_for("Page.loadEventFired", PAGE_TIMEOUT):
        return [f"did not finish loading in {PAGE_TIMEOUT:.0f} s"], 0
    found = browser.call("Runtime.evaluate", session=True, expression=INSPECT,
                         awaitPromise=True, returnByValue=True)
    browser.wait_for("never", 0.2)             # late errors (scripts run after load)
    origin = f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"
    problems = _problems_in_events(browser.events, origin)
    if "exceptionDetails" in found:
        return problems + ["the check's script failed: "
                           + found["exceptionDetails"].get("text", "")], 0
    page = found["result"]["value"]
    problems += [f"image does not decode: {src or '(no src)'}" for src in page["broken"]]
    problems += [f"link to a missing page or file: {link}"
                 for link in dead_links(page["links"], origin, site)]
    if page["scrollWidth"] > page["clientWidth"]:
        problems.append(f"horizontal overflow at {WIDTH} px: the page is {page['scrollWidth']} "
                        f"px wide" + (f" ({', '.join(page['wide'][:WIDE_SHOWN])})"
                                      if page["wide"] else ""))
    elif page["wide"]:
        problems.append(f"wider than the {WIDTH} px window: {', '.join(page['wide'][:WIDE_SHOWN])}")
    limit = MAX_FIGURES_SHOT_HEIGHT if page["images"] else MAX_SHOT_HEIGHT
    height = max(HEIGHT, min(int(page["height"]), limit))
    data = browser.call("Page.captureScreenshot", session=True, format="png",
                        optimizeForSpeed=True, captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": WIDTH, "height": height,
                              "scale": 1})["data"]
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.write_bytes(base64.b64decode(data))
    return problems, page["images"]


# ---------------------------------------------------------------------------- the site

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    """``site`` served on 127.0.0.1 at a free port, from a daemon thread."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def site_pages(site: Path, skip: Path | None = None) -> list[Path]:
    """Every HTML page of ``site`` (relative paths, sorted), none under ``skip``."""
    pages = sorted(p.relative_to(site) for p in site.rglob("*.html"))
    if skip is not None and skip.resolve().is_relative_to(site.resolve()):
        inside = skip.resolve().relative_to(site.resolve())
        pages = [p for p in pages if not p.is_relative_to(inside)]
    return pages


def shot_name(page: Path) -> Path:
    """Where a page's screenshot goes, under the screenshots folder: ``guide/data.png`` for
    ``guide/data/index.html``, ``404.png`` for ``404.html``."""
    if page.name == "index.html" and page.parent != Path("."):
        return page.parent.with_suffix(".png")
    return page.with_suffix(".png")


def check_site(site: Path, shots: Path, chromium: str, out=print) -> int:
    """Check every page of ``site``; print a line per problem and a summary; return the exit
    status (1 when a page has a problem)."""
    start = time.monotonic()
    pages = site_pages(site, skip=shots)
    if not pages:
        out(f"check_site: no HTML page in {site}")
        return 1
    server = serve(site)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    failures = images = 0
    with tempfile.TemporaryDirectory(prefix="check-site-") as profile:
        browser = Browser(chromium, Path(profile))
        try:
            for page in pages:
                shot = shots / shot_name(page)
                problems, count = check_page(browser, f"{origin}/{page.as_posix()}", shot,
                                             site)
                images += count
                for problem in problems:
                    out(f"{page.as_posix()}: {problem}")
                failures += bool(problems)
        finally:
            browser.close()
            server.shutdown()
    out(f"check_site: {len(pages)} pages, {images} images, {failures} with problems, "
        f"in {time.monotonic() - start:.1f} s; screenshots in {shots}")
    return 1 if failures else 0


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="check_site.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the built site (mkdocs build's site/)")
    parser.add_argument("--screenshots", type=Path, metavar="DIR",
                        help="where the PNG screenshots go (default: SITE/_screenshots)")
    args = parser.parse_args(argv)
    if not args.site.is_dir():
        print(f"check_site: no folder {args.site}", file=sys.stderr)
        return 1
    chromium = find_chromium()
    if chromium is None:
        print("check_site: headless Chromium is not installed (chromium or chromium-browser on "
              "PATH); the pages were not checked" + (" and CI needs it" if os.environ.get("CI")
                                                     else ""))
        return 1 if os.environ.get("CI") else 0
    return check_site(args.site, args.screenshots or args.site / "_screenshots", chromium)


if __name__ == "__main__":
    sys.exit(main())
