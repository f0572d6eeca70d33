"""The explorer in a real browser: JupyterLab in headless Chromium (Playwright) opens a copy of
notebooks/10_explorer.ipynb, runs all cells, and we check that the widgets render and that dragging
the "pan x" slider changes the image.

Opt-in: runs only when selected with `pytest -m browser` (it starts a Jupyter server and a browser,
about a minute). Needs Debian's chromium (`apt-get install -y chromium`, or POLYINR_CHROMIUM=path) and
`pip install playwright` (Playwright drives the system browser; `playwright install` is not needed).
"""
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from polyinr.tools.experiments import repo_root

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("POLYINR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser_selected(request):
    if "browser" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("browser test: opt-in, run with `pytest -m browser`")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install -y chromium, or set POLYINR_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare_notebook(dest: Path) -> Path:
    """A copy of the explorer notebook with injected parameters: smoke sizes, a run folder in dest."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    nb = load_notebook_node(str(repo_root() / "notebooks/10_explorer.ipynb"))
    nb = parameterize_notebook(nb, {"smoke": True, "run_dir": str(dest / "run"), "resolution": 64})
    path = dest / "10_explorer.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def lab_server(tmp_path, browser_selected):
    """JupyterLab on a free localhost port with a random token, rooted at a temp folder holding the
    notebook copy; stopped (its whole process group, i.e. the kernels too) afterwards."""
    root = tmp_path / "lab"
    root.mkdir()
    _prepare_notebook(root)
    port, token = _free_port(), uuid.uuid4().hex
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), HF_HUB_OFFLINE="1", MPLBACKEND="Agg",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    log = open(tmp_path / "jupyter.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
         "--LabApp.expose_app_in_browser=True", f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"JupyterLab did not start: {(tmp_path / 'jupyter.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "token": token, "root": root, "log": tmp_path / "jupyter.log"}
    finally:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)        # the server's own process group: it and its kernels
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


NOTEBOOK_STATE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.sessionContext || !w.sessionContext.session) return null;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  const errors = [];
  for (const c of cells) {
    for (let i = 0; i < c.model.outputs.length; i++) {
      const o = c.model.outputs.get(i);
      if (o.type === 'error') errors.push(JSON.stringify(o.toJSON()).slice(0, 2000));
    }
  }
  return {status: w.sessionContext.session.kernel ? w.sessionContext.session.kernel.status : 'none',
          executed: cells.filter(c => c.model.executionCount !== null).length, cells: cells.length, errors};
}"""


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)


def test_explorer_in_jupyterlab(lab_server, tmp_path):
    from playwright.sync_api import sync_playwright
    t0 = time.time()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{lab_server['url']}/lab/tree/10_explorer.ipynb?token={lab_server['token']}")
            page.wait_for_selector(".jp-Notebook", timeout=90_000)
            page.wait_for_function(f"() => {{ const s = ({NOTEBOOK_STATE})(); return s && s.status === 'idle'; }}",
                                   timeout=120_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # every code cell executed (parameters + injected parameters included) and the kernel idle again
            page.wait_for_function(
                f"() => {{ const s = ({NOTEBOOK_STATE})(); return s && s.status === 'idle' && s.executed === s.cells; }}",
                timeout=240_000, polling=500)
            state = page.evaluate(NOTEBOOK_STATE)
            assert state["errors"] == [], state["errors"]

            # the widgets rendered: the app box, its sliders and the image (a loaded PNG of 64 x 64 px)
            app = page.locator(".polyinr-explorer").first
            app.scroll_into_view_if_needed()
            assert app.is_visible()
            assert app.locator(".widget-slider").count() >= 5 and app.locator(".widget-dropdown").count() >= 5
            img = app.locator("img.polyinr-explorer-image, .polyinr-explorer-image img").first
            page.wait_for_function("(el) => el.complete && el.naturalWidth > 0", arg=img.element_handle())
            assert img.evaluate("(el) => [el.naturalWidth, el.naturalHeight]") == [64, 64]
            page.screenshot(path=str(shots / "before.png"))
            before_src, before_png = img.get_attribute("src"), img.screenshot()
            status = app.locator(".polyinr-status").first
            before_status = status.inner_text()

            # drag the "pan x" slider handle to the right: the kernel re-renders and the image changes
            slider = app.locator(".widget-slider", has=page.locator(".widget-label", has_text="pan x")).first
            readout_before = slider.locator(".widget-readout").inner_text()
            handle = slider.locator(".noUi-handle").first
            box = handle.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] / 2 + 15, box["y"] + box["height"] / 2, steps=5)
            page.mouse.up()
            page.wait_for_function("([el, src]) => el.getAttribute('src') !== src && el.complete && el.naturalWidth > 0",
                                   arg=[img.element_handle(), before_src], timeout=60_000)
            page.wait_for_function(f"() => {{ const s = ({NOTEBOOK_STATE})(); return s && s.status === 'idle'; }}",
                                   timeout=60_000)
            page.wait_for_timeout(500)
            readout_after = slider.locator(".widget-readout").inner_text()
            after_png = img.screenshot()
            after_status = status.inner_text()
            page.screenshot(path=str(shots / "after.png"))
        finally:
            browser.close()
    assert float(readout_after) > float(readout_before), (readout_before, readout_after)
    assert after_status != before_status, "the status line (view extent) did not change"
    a, b = _pixels(before_png), _pixels(after_png)
    assert a.shape == b.shape
    changed = (np.abs(a - b) > 16).mean()
    assert changed > 0.01, f"only {changed:.4f} of the image's screenshot pixels changed"
    keep = os.environ.get("POLYINR_BROWSER_SHOTS")
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)
    print(json.dumps({"browser_test_seconds": round(time.time() - t0, 1), "changed_pixel_share": round(float(changed), 4),
                      "pan_x": [readout_before, readout_after]}))
