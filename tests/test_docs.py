"""The documentation site: built with warnings as errors, then checked in headless Chromium.

The site is built with ``python -m sphinx -W --keep-going -b html docs <out>`` (or taken from
``FUNCLOSS_DOCS_HTML``, where ``.ci/run`` built it), served on 127.0.0.1, and opened in
Debian's ``chromium``: a harness page loads the API pages, the gallery and the search page in
iframes and reports what the browser rendered (MathJax output and no raw TeX left in the visible
text, each gallery image decoded with a width, search results for ``cross_entropy``).

Without the ``docs`` extra or ``chromium`` the tests are skipped locally; with ``CI`` set they
fail instead.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.parse
import warnings
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# One built site, one server: keep the file's tests on one xdist worker (`--dist loadgroup`).
pytestmark = pytest.mark.xdist_group("docs")
DOCS_PACKAGES = ("sphinx", "furo", "myst_parser", "sphinx-mathjax-offline")


def _require(what: list[str]) -> None:
    if not what:
        return
    how = "pip install -e '.[docs]'; apt-get install chromium"
    reason = f"docs tools missing: {', '.join(what)} ({how})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the docs tests")
    pytest.skip(reason)


def _missing_packages() -> list[str]:
    return [name for name in DOCS_PACKAGES if importlib.util.find_spec(name) is None]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require(_missing_packages())
    built = os.environ.get("FUNCLOSS_DOCS_HTML")
    if built:
        path = Path(built)
        assert (path / "index.html").is_file(), f"FUNCLOSS_DOCS_HTML={built} has no index.html"
        return path
    out = tmp_path_factory.mktemp("docs") / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    result = subprocess.run(
        [*command, str(DOCS), str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"docs build failed:\n{result.stdout}\n{result.stderr}"
    return out


def _inventory(site: Path) -> set[str]:
    """The documented Python objects, from Sphinx's ``objects.inv``."""
    data = (site / "objects.inv").read_bytes()
    body = data.split(b"\n", 4)[4]
    names = set()
    for line in zlib.decompress(body).decode().splitlines():
        name, domain_role = line.split(" ", 2)[:2]
        if domain_role.startswith("py:"):
            names.add(name)
    return names


def test_every_public_name_has_a_page(site: Path) -> None:
    import funcloss
    import funcloss.nn

    documented = _inventory(site)
    expected = {f"funcloss.{n}" for n in funcloss.__all__ if n != "__version__"}
    expected |= {f"funcloss.nn.{n}" for n in funcloss.nn.__all__}
    import funcloss.distributed
    import funcloss.testing

    for sub in (funcloss.testing, funcloss.distributed):
        expected |= {f"{sub.__name__}.{n}" for n in sub.__all__}
    assert expected - documented == set()
    # each loss's example is a doctest (run by pytest --doctest-modules), shown on its page
    public = [getattr(funcloss, n) for n in funcloss.__all__ if n != "__version__"]
    assert [f.__name__ for f in public if ">>>" not in (f.__doc__ or "")] == []
    # one page per loss family, each loss on it with its module linked
    family = (site / "_generated" / "api" / "regression.html").read_text()
    for name in ("huber_loss", "mse_loss", "kl_div"):
        assert f'id="funcloss.{name}"' in family
    assert 'href="modules.html#funcloss.nn.HuberLoss"' in family
    modules = (site / "_generated" / "api" / "modules.html").read_text()
    section = modules.split('id="funcloss.nn.HuberLoss"', 1)[1].split('id="funcloss.nn.', 1)[0]
    assert "Shape" in section and "target" in section


def test_the_build_fails_for_a_public_name_without_a_page() -> None:
    _require(_missing_packages())
    sys.path.insert(0, str(DOCS / "_ext"))
    import funcloss_docs
    from sphinx.errors import ExtensionError

    names, nn_names = funcloss_docs._public()
    objects = {f"funcloss.{n}": None for n in names if n != "__version__"}
    objects |= {f"funcloss.nn.{n}": None for n in nn_names}
    for sub, sub_names in funcloss_docs._subpackages().items():
        objects |= {f"funcloss.{sub}.{n}": None for n in sub_names}
    assert {"testing", "distributed"} <= set(funcloss_docs._subpackages())
    domain = types.SimpleNamespace(objects=objects)
    app = types.SimpleNamespace(env=types.SimpleNamespace(get_domain=lambda name: domain))
    funcloss_docs.check_public_names(app, None)  # every name documented: the build goes on
    del objects["funcloss.huber_loss"], objects["funcloss.nn.TreeLoss"]
    with pytest.raises(ExtensionError, match=r"funcloss\.huber_loss, funcloss\.nn\.TreeLoss"):
        funcloss_docs.check_public_names(app, None)


def test_the_site_is_offline(site: Path) -> None:
    """No script, stylesheet, font or image from another host, and MathJax is in the build."""
    external = re.compile(r"""<(?:script|link|img)\b[^>]*(?:src|href)=["'](?:https?:)?//""")
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20
    offenders = [str(p.relative_to(site)) for p in pages if external.search(p.read_text())]
    assert offenders == []
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert "_static/mathjax/tex-chtml.js" in (site / "_generated/api/regression.html").read_text()


class _Handler(http.server.SimpleHTTPRequestHandler):
    harness = ""
    results: dict[str, str]

    def do_GET(self) -> None:
        if self.path == "/__check.html":
            body = self.harness.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.results[urllib.parse.urlparse(self.path).path] = self.rfile.read(length).decode()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(site: Path):
    _require([] if CHROMIUM else ["chromium"])
    handler = type("Handler", (_Handler,), {"results": {}})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(site))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, handler
    httpd.shutdown()
    httpd.server_close()


def _chromium(*args: str, timeout: float = 60) -> subprocess.Popen:
    profile = tempfile.mkdtemp(prefix="funcloss-chromium-")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    command += ["--disable-extensions", f"--user-data-dir={profile}", *args]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


HARNESS = """<!doctype html><html><body><script>
const sleep = ms => new Promise(r => setTimeout(r, ms));
function load(url) {
  return new Promise(resolve => {
    const frame = document.createElement("iframe");
    frame.style.width = "1200px"; frame.style.height = "900px";
    frame.onload = () => resolve(frame);
    frame.src = url;
    document.body.appendChild(frame);
  });
}
async function until(test, ms) {
  for (let t = 0; t < ms; t += 100) { if (test()) return true; await sleep(100); }
  return false;
}
(async () => {
  const out = {math: {}, images: [], search: []};
  let mathjax = true;
  try {
    for (const page of PAGES) {
      const frame = await load(page);
      const win = frame.contentWindow, doc = frame.contentDocument;
      const ready = () => win.MathJax && win.MathJax.startup && win.MathJax.startup.promise;
      mathjax = await until(ready, mathjax ? 20000 : 500);  // once missing, do not wait again
      if (mathjax) await win.MathJax.startup.promise;
      out.math[page] = {
        rendered: doc.querySelectorAll("mjx-container").length,
        sources: doc.querySelectorAll(".math").length,
        text: doc.body.innerText,
      };
      frame.remove();
    }
    const gallery = await load("_generated/gallery.html");
    const images = [...gallery.contentDocument.images]
      .filter(i => i.getAttribute("src").includes("_images/"));
    await until(() => images.every(i => i.complete), 20000);
    out.images = images.map(i => ({src: i.getAttribute("src"), width: i.naturalWidth}));
    const search = await load("search.html?q=cross_entropy");
    const links = () => search.contentDocument.querySelectorAll("#search-results li a");
    await until(() => links().length > 0, 30000);
    out.search = [...links()].map(a => a.getAttribute("href"));
  } catch (error) { out.error = String(error); }
  await fetch("/__result", {method: "POST", body: JSON.stringify(out)});
})();
</script></body></html>"""


def _render(site: Path, server) -> dict:
    httpd, handler = server
    pages = sorted(
        str(p.relative_to(site))
        for p in (site / "_generated" / "api").glob("*.html")
        if 'class="math' in p.read_text()
    )
    handler.harness = HARNESS.replace("PAGES", json.dumps(pages))
    url = f"http://127.0.0.1:{httpd.server_address[1]}/__check.html"
    browser = _chromium(url)
    try:
        deadline = time.monotonic() + 90
        while "/__result" not in handler.results and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        browser.kill()
        browser.wait()
    assert "/__result" in handler.results, "chromium reported nothing within 90 s"
    result = json.loads(handler.results["/__result"])
    assert "error" not in result, result.get("error")
    result["pages"] = pages
    return result


def test_the_site_in_chromium(site: Path, server) -> None:
    """One browser run (the tests share it): maths, gallery images, search."""
    rendered = _render(site, server)
    _maths_rendered(site, rendered)
    _gallery_images_load(rendered)
    _search_finds_cross_entropy(site, rendered)


def _maths_rendered(site: Path, rendered: dict) -> None:
    assert len(rendered["pages"]) >= 5  # the family pages with maths
    raw_tex = re.compile(r"\\(?:frac|tfrac|begin|operatorname|sum|log|ell)\b")
    sources_with_frac = 0
    for page in rendered["pages"]:
        math = rendered["math"][page]
        assert math["sources"] > 0
        # every maths node became MathJax output, and no TeX is left in the visible text
        assert math["rendered"] >= math["sources"], page
        assert raw_tex.findall(math["text"]) == [], page
        sources_with_frac += "\\frac" in (site / page).read_text()
    assert sources_with_frac > 0  # the pages' sources did hold raw TeX for MathJax


def _gallery_images_load(rendered: dict) -> None:
    images = rendered["images"]
    assert len(images) >= 8
    assert [i["src"] for i in images if i["width"] == 0] == []


def _search_finds_cross_entropy(site: Path, rendered: dict) -> None:
    assert "cross_entropy" in (site / "searchindex.js").read_text()
    hits = rendered["search"]
    assert any("api/cross_entropy.html#funcloss.cross_entropy" in h for h in hits), hits[:10]


def test_screenshot(site: Path, server) -> None:
    """A screenshot of a family page: a real decoded image, not a blank page."""
    import matplotlib.image

    httpd, _ = server
    shots = site.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    path = shots / "regression.png"
    path.unlink(missing_ok=True)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/_generated/api/regression.html"
    browser = _chromium(
        f"--screenshot={path}", "--window-size=1280,1600", "--virtual-time-budget=15000", url
    )
    browser.wait(timeout=90)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (1600, 1280)
    assert pixels[..., :3].std() > 0.01


def test_transform_support_cache_is_fresh() -> None:
    """The cached table matches the registry, torch, and a re-measured sample of its cells."""
    import torch

    sys.path.insert(0, str(ROOT))
    from tests.registry import SPECS
    from tests.transform_support import TRANSFORMS, _cell, _runs

    table = json.loads((DOCS / "transform_support.json").read_text())
    hint = "stale: rerun python docs/_ext/transform_support_cache.py"
    assert table["torch"] == torch.__version__, hint
    assert table["transforms"] == list(TRANSFORMS), hint
    assert list(table["rows"]) == [spec.id for spec in SPECS], hint
    # re-measure the eager transforms of two specs (the compiled ones take minutes)
    eager = ("vmap", "vmap(grad)", "jacfwd", "hessian", "jacrev(jacrev)")
    # the cache script measures with the vmap fallback enabled (conftest disables it)
    was = torch._C._functorch._is_vmap_fallback_enabled()
    torch._C._functorch._set_vmap_fallback_enabled(True)
    try:
        for spec in (s for s in SPECS if s.id in ("mse_loss", "soft_margin_loss")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                case = spec.cases().example()
            ours = _runs(spec, case, spec.fn, "funcloss")
            theirs = _runs(spec, case, spec.oracle, "torch")
            for transform in eager:
                expected = ours[transform]()
                cell = table["rows"][spec.id][transform]
                assert _cell(theirs[transform], expected) == cell["torch"], (spec.id, transform)
                assert _cell(ours[transform], expected) == cell["funcloss"], (spec.id, transform)
    finally:
        torch._C._functorch._set_vmap_fallback_enabled(was)
