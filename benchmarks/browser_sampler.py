"""How long one Algorithm 2 run takes in the page: the book's live figure in headless Chromium.

Serves ``book/_static`` (colddiff-live.js, onnxruntime-web in ort/, the exported models in live/,
all set up by ``make book``) with a page holding the chapter 4 and chapter 6 figures, presses
"restore" and "generate" ``--runs`` times, and prints the time the page measured for each run of
Algorithm 2 (T = 20 steps of the blur model, one 32 px digit, onnxruntime-web on one WebAssembly
thread), as median and range.

    .venv/bin/python benchmarks/build_static.py   # or `make book`: writes book/_static/{ort,live}
    .venv/bin/python benchmarks/browser_sampler.py --runs 20
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import statistics
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "book" / "_static"

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="_static/colddiff-live.css">
<script src="_static/colddiff-live.js"></script></head><body>
<div class="colddiff-live" data-mode="restore" data-models="mnist-blur"></div>
<div class="colddiff-live" data-mode="generate" data-models="mnist-blur-gen,mnist-superres-gen"></div>
</body></html>"""


def serve(folder: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def chromium(width: int = 1280):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which(
        "chromium-browser"
    )
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},1600",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver")), options=options
    )
    driver.set_script_timeout(120)
    return driver


def wait_ready(driver) -> list:
    """Wait for every live figure of the page to start; return their errors (empty when all started)."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const wait = () => (window.colddiffLive && window.colddiffLive.ready)
          ? window.colddiffLive.ready.then(() => done(window.colddiffLive.errors)) : setTimeout(wait, 50);
        wait();""")


def press(driver, index: int, action: str) -> dict:
    """Run figure ``index``'s ``action`` ("restore" or "generate") to the end; return its ``last`` run."""
    return driver.execute_async_script(
        """
        const [i, action, done] = arguments;
        const st = window.colddiffLive.components[i].state;
        st[action]().then(() => done({ms: st.last.ms, name: st.last.name}));""",
        index,
        action,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    missing = [
        f
        for f in ("colddiff-live.js", "ort/ort.wasm.min.js", "live/book.json")
        if not (STATIC / f).exists()
    ]
    if missing:
        print(
            f"error: book/_static lacks {missing}: run `make book` (or benchmarks/build_static.py) first",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(STATIC, Path(tmp) / "_static")
        (Path(tmp) / "index.html").write_text(PAGE)
        server = serve(Path(tmp))
        driver = chromium()
        try:
            driver.get(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            errors = wait_ready(driver)
            if errors:
                print(
                    f"error: the page's figures did not start: {errors}",
                    file=sys.stderr,
                )
                return 1
            # restore from x_T
            driver.execute_script("""const s = window.colddiffLive.components[0].root.querySelector('input[type=range]');
                                     s.value = s.max; s.dispatchEvent(new Event('input'));""")
            for index, action in ((0, "restore"), (1, "generate")):
                # warm-up: the browser compiles WebAssembly in tiers, the first runs are
                # slow
                for _ in range(5):
                    press(driver, index, action)
                times = [press(driver, index, action)["ms"] for _ in range(args.runs)]
                print(
                    f"{action:8s} Algorithm 2 ({press(driver, index, action)['name']}), T = 20, one 32 px digit: median {statistics.median(times):.1f} ms "
                    f"(min {min(times):.1f}, max {max(times):.1f}) over {args.runs} runs"
                )
            print(
                "browser:",
                driver.capabilities.get("browserVersion"),
                "| machine:",
                _machine(),
            )
        finally:
            driver.quit()
            server.shutdown()
    return 0


def _machine() -> str:
    sys.path.insert(0, str(ROOT))
    from colddiff_lib.runtime import machine

    return machine()


if __name__ == "__main__":
    raise SystemExit(main())
