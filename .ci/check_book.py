"""Check the built book in _build/html the way a reader meets it; installs nothing itself.

1. Every HTML page: each <img src>, and each internal <a href>/<link href>/<script src>, resolves to
   a file in the build (an internal '#anchor' must exist on its target page); every image is a
   readable, non-empty picture; no page shows a Python traceback.
2. Headless Chromium (flags for running as root without a display, each call wrapped in `timeout` because the book's
   index.html is a redirect that can otherwise hang) screenshots the landing page and one table
   page; each screenshot must exist and not be blank.

Usage: python .ci/check_book.py _build/html [--chromium PATH] [--screenshots DIR] [--page REL ...]
Exit status 0 when everything holds, 1 otherwise (every problem is printed).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

SKIP_DIRS = {"_sources", "_static", "_images", "_downloads"}
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")  # http:, https:, mailto:, data:, javascript:, //host
TRACEBACK = ("Traceback (most recent call last)", 'class="output traceback')


class PageParser(HTMLParser):
    """Collects links, images and element ids of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []  # (tag/attr, url)
        self.images: list[str] = []
        self.ids: set[str] = set()
        self.refresh: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "img" and "src" in a:
            self.images.append(a["src"])
        elif tag == "a" and a.get("href"):
            self.links.append(("a", a["href"]))
        elif tag == "link" and a.get("href") and a.get("rel", "") not in ("preconnect", "dns-prefetch"):
            self.links.append(("link", a["href"]))
        elif tag == "script" and a.get("src"):
            self.links.append(("script", a["src"]))
        elif tag == "meta" and a.get("http-equiv", "").lower() == "refresh":
            m = re.search(r"url=(.+)$", a.get("content", ""), re.I)
            if m:
                self.refresh = m.group(1).strip().strip("'\"")


def pages(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.html") if not (set(p.relative_to(root).parts[:-1]) & SKIP_DIRS))


def resolve(page: Path, url: str, root: Path) -> tuple[Path | None, str]:
    """The file an internal URL points at (None for external ones) and its fragment."""
    if EXTERNAL.match(url):
        return None, ""
    parts = urlsplit(url)
    if not parts.path:
        return page, parts.fragment
    target = (root / unquote(parts.path).lstrip("/")) if parts.path.startswith("/") else (page.parent / unquote(parts.path))
    if parts.path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target.resolve(), parts.fragment


def check_image(path: Path) -> str | None:
    if path.stat().st_size == 0:
        return "empty file"
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif"):
        try:
            from PIL import Image

            with Image.open(path) as im:
                im.verify()
            with Image.open(path) as im:
                if im.width < 8 or im.height < 8:
                    return f"tiny image {im.width}x{im.height}"
        except Exception as exc:  # noqa: BLE001 - any decode failure is a broken figure
            return f"unreadable image ({exc})"
    return None


def check_tree(root: Path) -> tuple[list[str], dict[Path, PageParser]]:
    problems: list[str] = []
    parsed: dict[Path, PageParser] = {}
    for page in pages(root):
        p = PageParser()
        text = page.read_text(encoding="utf-8", errors="replace")
        p.feed(text)
        parsed[page.resolve()] = p
        rel = page.relative_to(root)
        for marker in TRACEBACK:
            if marker in text:
                problems.append(f"{rel}: shows a traceback ({marker!r})")
                break
        for src in p.images:
            target, _ = resolve(page, src, root)
            if target is None:
                if not src.startswith("data:"):
                    problems.append(f"{rel}: external image {src}")
                continue
            if not target.is_file():
                problems.append(f"{rel}: <img src={src!r}> does not resolve")
            else:
                why = check_image(target)
                if why:
                    problems.append(f"{rel}: <img src={src!r}>: {why}")
    for page, p in parsed.items():
        rel = page.relative_to(root.resolve())
        for kind, url in p.links:
            target, frag = resolve(page, url, root)
            if target is None:
                continue
            if not target.is_file():
                problems.append(f"{rel}: <{kind}> {url!r} does not resolve")
                continue
            if frag and kind == "a" and target.suffix == ".html":
                tp = parsed.get(target)
                if tp is not None and frag not in tp.ids:
                    problems.append(f"{rel}: <a href={url!r}>: no element with id {frag!r} on {target.name}")
    return problems, parsed


def landing_page(root: Path, parsed: dict[Path, PageParser]) -> Path:
    """index.html is a redirect: follow it to the real landing page."""
    index = (root / "index.html").resolve()
    p = parsed.get(index)
    if p is not None and p.refresh:
        target, _ = resolve(index, p.refresh, root)
        if target is not None and target.is_file():
            return target
    return index


def screenshot(chromium: str, page: Path, out: Path, timeout_s: int = 90) -> str | None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    with tempfile.TemporaryDirectory() as profile:
        cmd = ["timeout", str(timeout_s), chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--virtual-time-budget=3000", "--hide-scrollbars",
               "--window-size=1280,1600", f"--screenshot={out.resolve()}", page.resolve().as_uri()]
        res = subprocess.run(cmd, capture_output=True, text=True)
    if not out.is_file():
        return f"chromium wrote no screenshot of {page.name} (exit {res.returncode}): {res.stderr.strip()[-400:]}"
    from PIL import Image

    with Image.open(out) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
    n = len(colours) if colours is not None else 1 << 16
    if n < 16:
        return f"screenshot of {page.name} looks blank ({n} colours)"
    print(f"screenshot {out} ({n if n < 1 << 16 else '>65535'} colours)")
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("html", type=Path, help="the built book, e.g. _build/html")
    ap.add_argument("--chromium", help="Chromium binary; without it no screenshots are taken")
    ap.add_argument("--screenshots", type=Path, default=Path("_build/screenshots"))
    ap.add_argument("--page", action="append", default=None,
                    help="page (relative to html) to screenshot besides the landing page; default notebooks/table1.html")
    args = ap.parse_args(argv)
    root = args.html
    if not (root / "index.html").is_file():
        print(f"no index.html under {root}: build the book first (make book)")
        return 1
    problems, parsed = check_tree(root)
    n_img = sum(len(p.images) for p in parsed.values())
    n_links = sum(len(p.links) for p in parsed.values())
    print(f"checked {len(parsed)} pages, {n_img} images, {n_links} links")
    if args.chromium:
        targets = [landing_page(root, parsed)] + [root / p for p in (args.page or ["notebooks/table1.html"])]
        for t in targets:
            if not t.is_file():
                problems.append(f"page to screenshot is missing: {t}")
                continue
            why = screenshot(args.chromium, t, args.screenshots / (t.stem + ".png"))
            if why:
                problems.append(why)
    for msg in problems:
        print("PROBLEM:", msg)
    print("book check:", "FAILED" if problems else "ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
