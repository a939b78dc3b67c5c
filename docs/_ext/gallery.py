"""The loss gallery: each loss and its derivative against its natural argument, from funcloss.

Values are funcloss's own (``reduction="none"``), derivatives ``torch.func.vmap(grad(...))`` of
them, in float64. Run alone (``python docs/_ext/gallery.py OUT``) or from the docs build.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.func import grad, vmap

import funcloss

Curve = tuple[str, Callable[[torch.Tensor], torch.Tensor]]


def _zero(z):
    return torch.zeros_like(z)


def _regression() -> list[Curve]:
    curves: list[Curve] = [
        ("l1_loss", lambda r: funcloss.l1_loss(r, _zero(r), reduction="none")),
        ("mse_loss", lambda r: funcloss.mse_loss(r, _zero(r), reduction="none")),
        ("huber_loss δ=1", lambda r: funcloss.huber_loss(r, _zero(r), reduction="none")),
        (
            "huber_loss δ=0.5",
            lambda r: funcloss.huber_loss(r, _zero(r), reduction="none", delta=0.5),
        ),
        (
            "smooth_l1_loss β=0.5",
            lambda r: funcloss.smooth_l1_loss(r, _zero(r), reduction="none", beta=0.5),
        ),
        (
            "gaussian_nll_loss var=1",
            lambda r: funcloss.gaussian_nll_loss(r, _zero(r), torch.ones_like(r), reduction="none"),
        ),
    ]
    # Losses another release may add: plotted when funcloss has them.
    for name in ("log_cosh_loss", "barron_loss"):
        fn = getattr(funcloss, name, None)
        if fn is not None:
            curves.append((name, lambda r, fn=fn: fn(r, _zero(r), reduction="none")))
    return curves


def _logit() -> list[Curve]:
    bce = funcloss.binary_cross_entropy_with_logits
    curves: list[Curve] = [
        (
            f"binary_cross_entropy_with_logits y={y}",
            lambda z, y=y: bce(z, torch.full_like(z, y), reduction="none"),
        )
        for y in (1.0, 0.0, 0.7)
    ]
    curves.append(
        (
            "binary_cross_entropy_with_logits y=1, pos_weight=3",
            lambda z: bce(z, torch.ones_like(z), pos_weight=torch.tensor(3.0), reduction="none"),
        )
    )
    return curves


def _margin() -> list[Curve]:
    one = torch.ones
    return [
        (
            "soft_margin_loss",
            lambda m: funcloss.soft_margin_loss(m, torch.ones_like(m), reduction="none"),
        ),
        (
            "hinge: margin_ranking_loss margin=1",
            lambda m: funcloss.margin_ranking_loss(
                m, _zero(m), torch.ones_like(m), margin=1.0, reduction="none"
            ),
        ),
        (
            "multi_margin_loss p=1 (2 classes)",
            lambda m: funcloss.multi_margin_loss(
                torch.stack([_zero(m), m]).unsqueeze(0), torch.tensor([1]), reduction="none"
            )[0],
        ),
        (
            "multi_margin_loss p=2 (2 classes)",
            lambda m: funcloss.multi_margin_loss(
                torch.stack([_zero(m), m]).unsqueeze(0), torch.tensor([1]), p=2, reduction="none"
            )[0],
        ),
        (
            "multilabel_soft_margin_loss",
            lambda m: funcloss.multilabel_soft_margin_loss(
                m.reshape(1, 1), one(1, 1, dtype=m.dtype), reduction="none"
            )[0],
        ),
    ]


def _cross_entropy() -> list[Curve]:
    def ce(smoothing: float) -> Callable[[torch.Tensor], torch.Tensor]:
        def loss(z: torch.Tensor) -> torch.Tensor:
            logits = torch.stack([z, _zero(z)]).unsqueeze(0)
            return funcloss.cross_entropy(
                logits, torch.tensor([0]), label_smoothing=smoothing, reduction="none"
            )[0]

        return loss

    return [(f"cross_entropy label_smoothing={s}", ce(s)) for s in (0.0, 0.1, 0.3)]


def _poisson() -> list[Curve]:
    return [
        (
            f"poisson_nll_loss target={k}",
            lambda z, k=k: funcloss.poisson_nll_loss(z, torch.full_like(z, k), reduction="none"),
        )
        for k in (0.0, 1.0, 3.0)
    ]


def _embedding() -> list[Curve]:
    def cosine(y: float, margin: float = 0.0) -> Callable[[torch.Tensor], torch.Tensor]:
        def loss(theta: torch.Tensor) -> torch.Tensor:
            x1 = torch.stack([torch.ones_like(theta), _zero(theta)]).unsqueeze(0)
            x2 = torch.stack([torch.cos(theta), torch.sin(theta)]).unsqueeze(0)
            target = torch.tensor([y], dtype=theta.dtype)
            return funcloss.cosine_embedding_loss(x1, x2, target, margin=margin, reduction="none")[
                0
            ]

        return loss

    return [
        ("cosine_embedding_loss y=1", cosine(1.0)),
        ("cosine_embedding_loss y=-1, margin=0.5", cosine(-1.0, 0.5)),
    ]


def _distance() -> list[Curve]:
    def triplet(d: torch.Tensor) -> torch.Tensor:
        anchor = _zero(d).reshape(1, 1)
        return funcloss.triplet_margin_loss(
            anchor, d.reshape(1, 1), torch.full((1, 1), 2.0, dtype=d.dtype), reduction="none"
        )[0]

    return [
        (
            "hinge_embedding_loss y=1",
            lambda d: funcloss.hinge_embedding_loss(d, torch.ones_like(d), reduction="none"),
        ),
        (
            "hinge_embedding_loss y=-1",
            lambda d: funcloss.hinge_embedding_loss(d, -torch.ones_like(d), reduction="none"),
        ),
        ("triplet_margin_loss (negative at distance 2)", triplet),
    ]


def _probability() -> list[Curve]:
    return [
        (
            f"binary_cross_entropy y={y}",
            lambda p, y=y: funcloss.binary_cross_entropy(
                p, torch.full_like(p, y), reduction="none"
            ),
        )
        for y in (1.0, 0.0, 0.7)
    ]


# (file stem, title, x label, x range, curves)
FIGURES = (
    ("regression", "Regression losses", "residual  x − y", (-3.0, 3.0), _regression),
    ("logit", "Binary cross-entropy with logits", "logit  z", (-6.0, 6.0), _logit),
    ("margin", "Margin losses", "margin  y·x", (-3.0, 3.0), _margin),
    (
        "cross_entropy",
        "Cross-entropy (two classes)",
        "logit margin  z_y − z_other",
        (-6, 6),
        _cross_entropy,
    ),
    ("poisson", "Poisson NLL (log_input=True)", "log rate  x", (-3.0, 3.0), _poisson),
    ("cosine", "Cosine embedding loss", "angle θ between x1 and x2", (0.0, 3.1416), _embedding),
    ("distance", "Distance-based losses", "distance  d", (0.0, 4.0), _distance),
    ("probability", "Binary cross-entropy", "probability  p", (0.01, 0.99), _probability),
)


def _curve(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    value = vmap(fn)(x)
    slope = vmap(grad(fn))(x)
    return value.detach().numpy(), slope.detach().numpy()


def render(out: Path) -> list[tuple[str, str, list[str]]]:
    """Write one PNG per figure into ``out``; return (stem, title, curve names)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    made = []
    for stem, title, xlabel, (lo, hi), curves in FIGURES:
        x = torch.linspace(lo, hi, 401, dtype=torch.float64)
        fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
        names = []
        for name, fn in curves():
            value, slope = _curve(fn, x)
            ax_loss.plot(x.numpy(), value, label=name)
            ax_grad.plot(x.numpy(), slope, label=name)
            names.append(name)
        ax_loss.set(title=f"{title}: loss", xlabel=xlabel, ylabel="loss")
        ax_grad.set(title="derivative (torch.func.grad)", xlabel=xlabel, ylabel="d loss / d x")
        for ax in (ax_loss, ax_grad):
            ax.grid(alpha=0.3)
            ax.axhline(0, color="black", linewidth=0.5)
        ax_loss.legend(fontsize=7)
        fig.savefig(out / f"{stem}.png", dpi=80)
        plt.close(fig)
        made.append((stem, title, names))
    return made


def gallery_page(out: Path) -> str:
    lines = [
        "# Gallery",
        "",
        "Each loss (left) and its derivative (right) against its natural argument, computed by "
        'funcloss itself: values with `reduction="none"`, derivatives with '
        "`torch.func.vmap(torch.func.grad(loss))`, float64. Generated by `docs/_ext/gallery.py` "
        "at every docs build.",
        "",
    ]
    for stem, title, names in render(out):
        lines += [f"## {title}", "", ", ".join(f"`{n}`" for n in names), ""]
        lines += [f"![{title}](gallery/{stem}.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(Path(sys.argv[1])))
