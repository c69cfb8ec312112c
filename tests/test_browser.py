"""The built book in a real browser: headless Chromium opens every page of the HTML.

For each page it checks that no JavaScript error was logged, that MathJax typeset the page's
equations, and that the figures are present (the notebooks' images loaded); it saves a screenshot
of each page in ``_build/screenshots``. The HTML is built from the notebooks that papermill executed
(tests/test_book.py; executed here if missing), with MathJax served from the local
``django-static-mathjax`` package since CI has no network, and served over HTTP on 127.0.0.1.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); without them the
test is skipped and says why.
"""

import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build" / "browser"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="headless Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does this)")


def toc_entries():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part["chapters"]]


@pytest.fixture(scope="module")
def site():
    """Build the HTML from executed notebooks into _build/browser/_build/html; serve it on localhost."""
    import mathjax  # django-static-mathjax: MathJax 3 files for offline use

    from test_book import EXECUTED, execute, notebooks

    if BUILD.exists():
        shutil.rmtree(BUILD)
    (BUILD / "book").mkdir(parents=True)
    for path in (ROOT / "book").iterdir():
        if path.suffix in (".md", ".bib"):
            shutil.copy(path, BUILD / "book" / path.name)
    shutil.copytree(ROOT / "book" / "_ext", BUILD / "book" / "_ext")
    for nb in notebooks():
        executed = EXECUTED / nb.name
        if not executed.exists():
            EXECUTED.mkdir(parents=True, exist_ok=True)
            execute(nb, executed, QUICK=True, FULL_TRAINING=False, DEVICE="cpu")
        shutil.copy(executed, BUILD / "book" / nb.name)
    shutil.copytree(Path(mathjax.__file__).parent / "static" / "mathjax" / "es5", BUILD / "_mathjax")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"  # already executed by papermill
    config.setdefault("sphinx", {}).setdefault("config", {})
    config["sphinx"]["config"]["html_static_path"] = ["_mathjax"]
    config["sphinx"]["config"]["mathjax_path"] = "tex-mml-chtml.js"
    (BUILD / "_config.yml").write_text(yaml.safe_dump(config))
    shutil.copy(ROOT / "_toc.yml", BUILD / "_toc.yml")
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", str(BUILD), "--warningiserror", "--keep-going"], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    html = BUILD / "_build" / "html"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1280,1600",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def source_text(entry):
    path = ROOT / f"{entry}.ipynb"
    if path.exists():
        return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")
    return (ROOT / f"{entry}.md").read_text()


@pytest.mark.parametrize("entry", toc_entries())
def test_page_loads_typesets_and_shows_its_figures(entry, site, browser):
    browser.get(f"{site}/{entry}.html")
    typeset = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const wait = (n) => {
          if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
            MathJax.startup.promise.then(() => done(document.querySelectorAll('mjx-container').length));
          } else if (n > 100) { done(-1); } else { setTimeout(() => wait(n + 1), 100); }
        };
        wait(0);""")
    # Not the book's errors: the server's 404 for a favicon, and the theme's own console message on a
    # first visit (pydata-sphinx-theme logs "Got invalid theme mode" when no mode is stored yet).
    benign = ("favicon.ico", "Got invalid theme mode")
    # CI has no network: files the published page takes from CDNs (require.js for widgets, the
    # animation's icon font) cannot load here. Those are skipped; any error they cause is not.
    logs = browser.get_log("browser")  # reading the log empties it: read it once
    offline = [e for e in logs if e["level"] == "SEVERE"
               and e.get("source") == "network" and "127.0.0.1" not in e["message"].split(" ")[0]]
    errors = [e for e in logs
              if e["level"] == "SEVERE" and e not in offline and not any(b in e["message"] for b in benign)]
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{Path(entry).name}.png"))
    assert not errors, errors
    text = source_text(entry)
    if "$" in text or "{math}" in text:
        assert typeset > 0, f"MathJax typeset nothing on {entry} (result {typeset})"
    if (ROOT / f"{entry}.ipynb").exists() and not Path(entry).name.startswith(("00_", "A")):
        images = browser.execute_script(
            "return Array.from(document.querySelectorAll('main img')).filter(i => i.complete && i.naturalWidth > 0).length")
        assert images > 0, f"no figure on {entry}"
    # Markdown printed by a cell is rendered too: a table shows as a table, not as lines of pipes.
    raw_tables = browser.execute_script(
        "return Array.from(document.querySelectorAll('.cell_output p'))"
        ".filter(p => p.textContent.trim().startsWith('|')).length")
    assert raw_tables == 0, f"{entry}: {raw_tables} Markdown table(s) printed as text"


def test_the_sliders_play_without_a_kernel(site, browser):
    """Chapter 2's sliders over t are JavaScript players: moving to the next frame changes the picture."""
    browser.get(f"{site}/book/02_degradations.html")
    players = browser.execute_script("return document.querySelectorAll('.animation input[type=range]').length")
    assert players >= 7, f"chapter 2 has {players} players"
    changed = browser.execute_script("""
        const anim = document.querySelector('.animation');
        const img = anim.querySelector('img');
        const before = img.src;
        anim.querySelector('button[title="Next frame"]').click();
        return img.src !== before && img.src.startsWith('data:image');""")
    assert changed, "the player's next-frame button did not change the frame"
