"""Sphinx extension that generates funcloss's API pages, concept pages, gallery and tables.

Everything under ``docs/_generated/`` is written here at ``builder-inited`` from the package
itself (``funcloss.__all__``, ``funcloss.nn.__all__``, each family module, the README's
sections, the transform-support cache), so a new public loss gets its page without editing the
docs. At ``build-finished`` every public name must have a documented object in the build:
otherwise the build fails.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
OUT = DOCS / "_generated"

# Family module -> (page name, title). A family file not listed here gets a page all the same,
# titled from its module docstring.
FAMILIES = {
    "funcloss._cross_entropy": ("cross_entropy", "Cross-entropy and NLL"),
    "funcloss._logistic": ("logistic", "Binary cross-entropy"),
    "funcloss._regression": ("regression", "Regression losses"),
    "funcloss._margin": ("margin", "Margin losses"),
    "funcloss._embedding": ("embedding", "Embedding and ranking losses"),
    "funcloss._sequence": ("sequence", "Sequence losses (CTC)"),
    "funcloss._linear": ("linear", "Linear cross-entropy (fused output layer)"),
    "funcloss._overlap": ("overlap", "Segmentation overlap losses (Dice family)"),
    "funcloss._lovasz": ("lovasz", "Lovász losses (hinge, softmax)"),
    "funcloss._tree": ("tree", "Losses over pytrees"),
    "funcloss._fenchel_young": (
        "fenchel_young",
        "Sparsemax, Fenchel-Young losses and multi-class hinges",
    ),
    "funcloss._robust": ("robust", "Robust regression losses"),
    "funcloss._divergence": ("divergence", "Divergences (Jensen-Shannon, generalized KL)"),
    "funcloss._ranking": ("ranking", "Ranking losses"),
    "funcloss._box": ("box", "Bounding-box losses (GIoU, DIoU, CIoU)"),
    "funcloss._image": ("image", "Image losses (total variation, SSIM, PSNR)"),
    "funcloss._focal": ("focal", "Focal losses (sigmoid, softmax, poly-1, asymmetric)"),
    "funcloss._contrastive": ("contrastive", "Metric and contrastive learning"),
}
# Public names that are not losses: documented on the authoring page.
AUTHORING = ("custom_backward", "loss_module", "set_value_checks")

# Concept pages: (page, title, README section heading it takes, intro).
CONCEPTS = (
    (
        "transforms",
        "Transforms",
        "## Catalogue",
        "Every funcloss loss runs under `vmap`, `grad`, `jacrev`, `jacfwd`, `hessian`, "
        "`jacrev(jacrev)` and `torch.compile(fullgraph=True)`. The README's catalogue follows; "
        "the measured table is on [Transform support](../transform_support.md).",
    ),
    ("masks", "Masks (`where=`)", "## Masks (`where=`)", ""),
    ("pytrees", "Pytrees (`tree_loss`)", "## Losses over pytrees", ""),
    (
        "memory",
        "Memory-lean cross-entropy and performance",
        "## Performance",
        "`cross_entropy` and `linear_cross_entropy` have hand-written backward passes "
        "(transform-safe `autograd.Function`s, see {func}`funcloss.custom_backward`) that keep "
        "no `(N, C)` buffer alive between forward and backward; `linear_cross_entropy` never "
        "materialises the logits.",
    ),
    ("differences", "Deliberate differences from torch", "### Where funcloss deliberately", ""),
    ("broadcasting", "Broadcasting and dtypes", "### Broadcasting and dtypes", ""),
    ("value_checks", "Value checks and host reads", "### Value checks, meta tensors", ""),
    ("autocast", "Mixed precision", "### Mixed precision", ""),
    ("authoring_guide", "Writing your own loss", "## Writing your own loss", ""),
)


def _public() -> tuple[list[str], list[str]]:
    import funcloss
    import funcloss.nn

    names = [n for n in funcloss.__all__ if not n.startswith("_")]
    return names, list(funcloss.nn.__all__)


def _subpackages() -> dict[str, list[str]]:
    """The public names of funcloss's public subpackages (``funcloss.testing``, ...)."""
    out = {}
    for sub in ("testing", "distributed"):
        if importlib.util.find_spec(f"funcloss.{sub}") is not None:
            module = importlib.import_module(f"funcloss.{sub}")
            out[sub] = list(module.__all__)
    return out


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


# -- docstring sections -----------------------------------------------------------------------


def _section(doc: str, name: str) -> dict[str, str]:
    """The entries of a Google-style section (``Args:``) of a dedented docstring."""
    lines = doc.splitlines()
    try:
        start = lines.index(f"{name}:")
    except ValueError:
        return {}
    entries: dict[str, list[str]] = {}
    current = None
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        match = re.match(r"^    (\*{0,2}\w+)(?: \([^)]*\))?: ?(.*)$", line)
        if match:
            current = match.group(1).lstrip("*")
            entries[current] = [match.group(2)]
        elif current is not None and line.strip():
            entries[current].append(line.strip())
    return {k: " ".join(v).strip() for k, v in entries.items()}


def _returns(doc: str) -> str:
    lines = doc.splitlines()
    if "Returns:" not in lines:
        return ""
    out = []
    for line in lines[lines.index("Returns:") + 1 :]:
        if line and not line.startswith(" "):
            break
        out.append(line.strip())
    return " ".join(out).strip()


# -- API pages --------------------------------------------------------------------------------


def _module_of(fn_name: str) -> type | None:
    import funcloss.nn

    for cls_name in funcloss.nn.__all__:
        cls = getattr(funcloss.nn, cls_name)
        fn = getattr(cls, "_fn", None)
        if fn is not None and getattr(fn, "__name__", None) == fn_name:
            return cls
    return None


def _family_pages(names: list[str]) -> list[str]:
    import funcloss

    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        if name in AUTHORING:
            continue
        obj = getattr(funcloss, name)
        groups[obj.__module__].append(name)
    pages = []
    order = list(FAMILIES)
    for module_name in sorted(groups, key=lambda m: order.index(m) if m in order else len(order)):
        module = sys.modules[module_name]
        page, title = FAMILIES.get(
            module_name,
            (module_name.split(".")[-1].lstrip("_"), (module.__doc__ or module_name).split(":")[0]),
        )
        text = [_title(title), ".. currentmodule:: funcloss\n"]
        summary = inspect.getdoc(module) or ""
        text.append(f"From ``{module_name}``. {summary.splitlines()[0] if summary else ''}\n")
        text.append(".. autosummary::\n   :nosignatures:\n")
        text.extend(f"   {name}" for name in groups[module_name])
        text.append("")
        for name in groups[module_name]:
            text.append(f".. autofunction:: {name}\n")
            cls = _module_of(name)
            if cls is not None:
                text.append(f"   Module: :class:`funcloss.nn.{cls.__name__}`.\n")
        _write(OUT / "api" / f"{page}.rst", "\n".join(text) + "\n")
        pages.append(f"api/{page}")
    return pages


def _shape_section(fn, inputs: tuple[str, ...]) -> str:
    doc = inspect.getdoc(fn) or ""
    args = _section(doc, "Args")
    lines = [".. rubric:: Shape\n"]
    for name in inputs:
        if name in args:
            lines.append(f"- **{name}**: {args[name]}")
    output = _returns(doc)
    if output:
        lines.append(f"- **output**: {output}")
    return "\n".join(lines) + "\n"


def _indent(text: str, by: str = "   ") -> str:
    return "\n".join(by + line if line.strip() else "" for line in text.splitlines())


def _qualified_refs(text: str, namespace: str) -> str:
    """``:func:`name``` written inside a function's module -> ``:func:`namespace.name```."""
    return re.sub(r":(func|class):`([A-Za-z_]\w*)`", rf":\1:`{namespace}.\2`", text)


def _class_entry(cls: type, name: str, namespace: str, where: str) -> str:
    """A generated loss module: signature, forward, Shape (from its function's docstring)."""
    fn = cls._fn
    signature = inspect.Signature(
        [p.replace(annotation=inspect.Parameter.empty) for p in cls._config]
    )
    forward = inspect.signature(cls.forward)
    forward = forward.replace(
        parameters=[
            p.replace(annotation=inspect.Parameter.empty)
            for p in forward.parameters.values()
            if p.name != "self"
        ],
        return_annotation=inspect.Signature.empty,
    )
    body = (
        f"Module form of :func:`{namespace}.{fn.__name__}`, torch's class name and "
        "constructor arguments. The constructor takes the function's config "
        "(checked at construction; tensors are registered as buffers); "
        f"``forward{forward}`` takes its tensors.\n\n"
        + _qualified_refs(_shape_section(fn, cls._inputs), namespace)
        + f"\nExample: the function's, :func:`{namespace}.{fn.__name__}`, with its config "
        f"passed to the constructor: ``{where}.{name}(**config)(*tensors)``.\n"
    )
    return f".. class:: {name}{signature}\n\n{_indent(body)}\n"


def _modules_page(nn_names: list[str]) -> str:
    import funcloss
    import funcloss.nn

    text = [
        _title("Modules (funcloss.nn)"),
        ".. module:: funcloss.nn\n",
        inspect.getdoc(funcloss.nn) + "\n",
        ".. list-table::\n   :header-rows: 1\n\n   * - module\n     - function\n",
    ]
    for name in nn_names:
        fn = getattr(getattr(funcloss.nn, name), "_fn", None)
        function = fn.__name__ if fn is not None else "tree_loss"
        target = f":func:`funcloss.{function}`"
        text.append(f"   * - :class:`{name}`\n     - {target}")
    text.append("")
    for name in nn_names:
        cls = getattr(funcloss.nn, name)
        if hasattr(cls, "_config"):
            text.append(_class_entry(cls, name, "funcloss", "funcloss.nn"))
            continue
        text.append(f".. autoclass:: {name}\n")
        fn = getattr(cls, "_fn", None) or (funcloss.tree_loss if name == "TreeLoss" else None)
        if fn is not None:
            params = inspect.signature(cls.forward).parameters
            forward = tuple(p for p in params if p != "self")
            shape = _qualified_refs(_shape_section(fn, forward), "funcloss")
            text.append(_indent(shape) + "\n")
    return "\n".join(text) + "\n"


def _distributed_page() -> str:
    import funcloss.distributed as dist

    text = [
        _title("funcloss.distributed"),
        ".. module:: funcloss.distributed\n",
        inspect.getdoc(dist) + "\n",
        "The guide: :doc:`../../distributed`.\n",
    ]
    for name in dist.__all__:
        obj = getattr(dist, name)
        if isinstance(obj, type) and hasattr(obj, "_config"):
            text.append(_class_entry(obj, name, "funcloss.distributed", "funcloss.distributed"))
        else:
            text.append(f".. autofunction:: {name}\n")
    return "\n".join(text) + "\n"


def _authoring_page() -> str:
    text = [
        _title("Authoring kit and value checks"),
        ".. currentmodule:: funcloss\n",
        "Write a loss once as a function, give it a memory-lean, transform-safe backward with "
        ":func:`custom_backward`, a module with :func:`loss_module`, and verify it with "
        ":func:`funcloss.testing.check_loss`. The walk-through is "
        ":doc:`../concepts/authoring_guide`.\n",
    ]
    text.extend(f".. autofunction:: {name}\n" for name in AUTHORING)
    return "\n".join(text) + "\n"


def _testing_page() -> str:
    return (
        _title("funcloss.testing")
        + "\n.. automodule:: funcloss.testing\n   :members:\n   :imported-members:\n"
    )


# -- concept pages ----------------------------------------------------------------------------


def _readme_section(heading_prefix: str) -> tuple[str, str]:
    """(heading, body) of the README section whose heading starts with ``heading_prefix``, up to
    the next heading of the same or a higher level, links rewritten for the docs."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading_prefix))
    level = len(lines[start].split(" ")[0])
    body, fenced = [], False
    for line in lines[start + 1 :]:
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(rf"^#{{1,{level}}} ", line):
            break
        if not fenced and any(line.startswith(c[2]) for c in CONCEPTS):
            break  # a subsection with a page of its own
        if not fenced and line.startswith("#"):
            line = "#" + line[level:]  # README's ### under a ## section -> ## on the page
        body.append(line)
    text = "\n".join(body)
    # docs/X from the README is ../../X from docs/_generated/concepts/
    text = re.sub(r"\]\(docs/([^)]+)\)", r"](../../\1)", text)
    # other repository files are not pages: name them
    repo_file = r"\[([^\]]+)\]\(((?:examples|tests|benchmarks|funcloss)/[^)]+)\)"
    text = re.sub(repo_file, r"\1 (`\2`)", text)
    # in-README anchors -> the concept page that now holds the section
    anchors = {
        "#losses-over-pytrees": "pytrees.md",
        "#value-checks-meta-tensors-and-host-reads": "value_checks.md",
    }
    for anchor, page in anchors.items():
        text = text.replace(f"]({anchor})", f"]({page})")
    return lines[start].lstrip("# "), text


def _concept_pages() -> list[str]:
    pages = []
    for page, title, heading, intro in CONCEPTS:
        _, body = _readme_section(heading)
        note = "*From the README.*"
        text = f"# {title}\n\n{intro}\n\n{note}\n\n{body.strip()}\n"
        if page == "memory":
            text += "\nThe benchmark behind these numbers is `examples/benchmark.py`.\n"
        _write(OUT / "concepts" / f"{page}.md", text)
        pages.append(f"concepts/{page}")
    return pages


# -- transform support ------------------------------------------------------------------------


def _transform_support_page() -> str:
    table = json.loads((DOCS / "transform_support.json").read_text())
    transforms = table["transforms"]
    lines = [
        "# Transform support",
        "",
        "Measured from the test registry (`tests/registry.py`) by `tests/transform_support.py`: "
        "for each spec (mean reduction, one drawn float64 case) every transform runs on torch's "
        "own loss and on funcloss's. A cell reads `ok` when both succeed, else what failed "
        "(`torch: fails` means torch's loss fails and funcloss's is ok): `fails` (an error), "
        "`fallback` (vmap's slow per-sample loop), `WRONG` (a "
        "result that differs from funcloss's eager derivative, itself checked against torch). "
        "For a loss beyond torch the other column is the anchor library it is checked against "
        "(named in the cell, e.g. `monai: fails`), where that library runs here. "
        f"Measured on torch {table['torch']}; cached in `docs/transform_support.json` by "
        "`python docs/_ext/transform_support_cache.py` (the docs test fails when the cache is "
        "stale).",
        "",
        "| spec | " + " | ".join(f"`{t}`" for t in transforms) + " |",
        "|---" * (len(transforms) + 1) + "|",
    ]
    for spec, row in table["rows"].items():
        cells = []
        other = row.get("reference", "torch")  # a loss beyond torch: its anchor library
        for t in transforms:
            cell = row[t]
            if cell["torch"] in ("ok", "n/a") and cell["funcloss"] == "ok":
                cells.append("ok")
            elif cell["funcloss"] == "ok":
                cells.append(f"{other}: **{cell['torch']}**")
            else:
                cells.append(f"{other}: **{cell['torch']}**, funcloss: **{cell['funcloss']}**")
        lines.append(f"| `{spec}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- hooks ------------------------------------------------------------------------------------


def generate(app: Sphinx) -> None:
    sys.path.insert(0, str(ROOT))
    names, nn_names = _public()
    families = _family_pages(names)
    _write(OUT / "api" / "modules.rst", _modules_page(nn_names))
    _write(OUT / "api" / "authoring.rst", _authoring_page())
    _write(OUT / "api" / "testing.rst", _testing_page())
    api = [*families, "api/modules", "api/authoring", "api/testing"]
    if importlib.util.find_spec("funcloss.distributed") is not None:
        _write(OUT / "api" / "distributed.rst", _distributed_page())
        api.append("api/distributed")
    concepts = _concept_pages()
    _write(OUT / "transform_support.md", _transform_support_page())

    from gallery import gallery_page

    _write(OUT / "gallery.md", gallery_page(OUT / "gallery"))
    toc_api = "\n".join(f"   {p}" for p in api)
    toc_concepts = "\n".join(f"   {p}" for p in concepts)
    _write(
        OUT / "api.rst",
        _title("API reference")
        + "\nOne page per loss family (each loss, its maths, its module, an example), the "
        "modules, the authoring kit and the testing kit.\n\n"
        + f".. toctree::\n   :maxdepth: 1\n\n{toc_api}\n",
    )
    _write(
        OUT / "concepts.rst",
        _title("Concepts") + f"\n.. toctree::\n   :maxdepth: 1\n\n{toc_concepts}\n",
    )


def check_public_names(app: Sphinx, exception: Exception | None) -> None:
    """Fail the build when a public name has no documented object (page and anchor)."""
    if exception is not None:
        return
    names, nn_names = _public()
    objects = app.env.get_domain("py").objects
    expected = [f"funcloss.{n}" for n in names if n != "__version__"]
    expected += [f"funcloss.nn.{n}" for n in nn_names]
    expected += [f"funcloss.{sub}.{n}" for sub, names in _subpackages().items() for n in names]
    missing = [name for name in expected if name not in objects]
    if missing:
        raise ExtensionError(f"public names without a documented page: {', '.join(missing)}")


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", generate)
    app.connect("build-finished", check_public_names)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
