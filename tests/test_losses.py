import math

import pytest
import torch
import torch.nn.functional as F

from deid.errors import InputError
from reid_model.losses import (
    alignment_loss,
    difference_alignment_loss,
    id_loss,
    single_alignment_loss,
    triplet_loss,
)


def _naive_triplet(x: torch.Tensor, t: list[int], margin: float) -> float:
    terms = []
    for a in range(len(t)):
        dp = [float((x[a] - x[p]).norm()) for p in range(len(t)) if p != a and t[p] == t[a]]
        dn = [float((x[a] - x[n]).norm()) for n in range(len(t)) if t[n] != t[a]]
        if not dp or not dn:
            continue
        gap = max(dp) - min(dn)
        terms.append(max(0.0, gap + margin) if margin > 0 else math.log1p(math.exp(gap)))
    return sum(terms) / len(terms)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def _naive_info_nce(us: list[torch.Tensor], vs: list[torch.Tensor], tau: float) -> float:
    total = 0.0
    for m, u in enumerate(us):
        logits = [_cos(u, v) / tau for v in vs]
        total += math.log(sum(math.exp(z) for z in logits)) - logits[m]
    return total / len(us)


def _naive_difference(p: torch.Tensor, q: torch.Tensor, tau: float) -> float:
    b, n, _ = p.shape
    pairs = [(i, j) for i in range(b) for j in range(i + 1, b)]
    per_token = [
        _naive_info_nce(
            [p[i, k] - p[j, k] for i, j in pairs], [q[i, k] - q[j, k] for i, j in pairs], tau
        )
        for k in range(n)
    ]
    return sum(per_token) / n


def test_id_loss_hand_computed_and_smoothing():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([0, 1])
    expected = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-1.0))) / 2
    assert id_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    # Smoothing 0.2 over 2 classes: target distribution (0.9, 0.1).
    logp = F.log_softmax(logits, dim=1)
    smooth = -(0.9 * logp[0, 0] + 0.1 * logp[0, 1] + 0.1 * logp[1, 0] + 0.9 * logp[1, 1]) / 2
    assert id_loss(logits, targets, 0.2).item() == pytest.approx(smooth.item(), rel=1e-6)
    with pytest.raises(InputError, match="label_smoothing"):
        id_loss(logits, targets, 1.0)
    with pytest.raises(InputError, match="targets"):
        id_loss(logits, torch.tensor([0]))


def test_triplet_hand_computed_1d():
    # Points on a line: labels a a b. Anchor 0: d_ap=1, d_an=3; anchor 1: d_ap=1, d_an=2;
    # anchor 2 has no positive and is excluded.
    x = torch.tensor([[0.0], [1.0], [3.0]])
    t = torch.tensor([0, 0, 1])
    soft = (math.log1p(math.exp(1 - 3)) + math.log1p(math.exp(1 - 2))) / 2
    assert triplet_loss(x, t).item() == pytest.approx(soft, rel=1e-5)
    assert triplet_loss(x, t, margin=1.5).item() == pytest.approx((0 + 0.5) / 2, rel=1e-5)


@pytest.mark.parametrize("margin", [0.0, 0.3])
def test_triplet_matches_naive_loop(margin):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 5, generator=g)
    t = [0, 0, 0, 1, 1, 2, 2, 2, 3]  # label 3 has no positive
    got = triplet_loss(x, torch.tensor(t), margin=margin).item()
    assert got == pytest.approx(_naive_triplet(x, t, margin), rel=1e-5)
    got_n = triplet_loss(x, torch.tensor(t), margin=margin, normalize=True).item()
    assert got_n == pytest.approx(_naive_triplet(F.normalize(x, dim=1), t, margin), rel=1e-5)


def test_triplet_degenerate_batches_are_zero_and_differentiable():
    for t in ([0, 0, 0], [0, 1, 2], [0]):
        x = torch.randn(len(t), 4, requires_grad=True)
        loss = triplet_loss(x, torch.tensor(t))
        loss.backward()
        assert loss.item() == 0.0 and torch.all(x.grad == 0)


def test_triplet_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.autograd.gradcheck(lambda z: triplet_loss(z, t), (x,))
    assert torch.autograd.gradcheck(lambda z: triplet_loss(z, t, margin=5.0), (x,))


def test_difference_alignment_matches_naive_loop():
    g = torch.Generator().manual_seed(2)
    p = torch.randn(4, 3, 5, generator=g)
    q = torch.randn(4, 3, 5, generator=g)
    got = difference_alignment_loss(p, q, temperature=0.5).item()
    assert got == pytest.approx(_naive_difference(p, q, 0.5), rel=1e-5)
    # Perfectly aligned differences give a lower loss than unrelated ones.
    assert difference_alignment_loss(p, 2 * p + 1, 0.1).item() < got


def test_difference_alignment_hand_computed_three_images():
    # B=3, N=1, D=2: pairs (0,1), (0,2), (1,2).
    p = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]]])
    q = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[1.0, 1.0]]])
    # u = (-1,0), (0,-1), (1,-1)/sqrt2 ; v = (-1,0), (-1,-1)/sqrt2, (0,-1)
    r = 1 / math.sqrt(2)
    cos = [[1.0, r, 0.0], [0.0, r, 1.0], [-r, 0.0, r]]
    expected = (
        sum(math.log(sum(math.exp(c) for c in row)) - row[m] for m, row in enumerate(cos)) / 3
    )
    assert difference_alignment_loss(p, q, temperature=1.0).item() == pytest.approx(expected)


def test_single_alignment_matches_naive_loop():
    g = torch.Generator().manual_seed(3)
    p = torch.randn(5, 2, 4, generator=g)
    q = torch.randn(5, 2, 4, generator=g)
    expected = (
        sum(
            _naive_info_nce([p[i, k] for i in range(5)], [q[i, k] for i in range(5)], 0.2)
            for k in range(2)
        )
        / 2
    )
    assert single_alignment_loss(p, q, 0.2).item() == pytest.approx(expected, rel=1e-5)


def test_alignment_gradcheck():
    g = torch.Generator().manual_seed(4)
    p = torch.randn(4, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    q = torch.randn(4, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: difference_alignment_loss(a, b, 0.3), (p, q))
    assert torch.autograd.gradcheck(lambda a, b: single_alignment_loss(a, b, 0.3), (p, q))


def test_alignment_small_batches_and_errors():
    p = torch.randn(1, 2, 3, requires_grad=True)
    loss = difference_alignment_loss(p, torch.randn(1, 2, 3))
    loss.backward()
    assert loss.item() == 0.0 and p.grad is not None
    # A single pair has only itself to match: exactly zero.
    assert difference_alignment_loss(torch.randn(2, 1, 3), torch.randn(2, 1, 3)).item() == 0.0
    with pytest.raises(InputError, match="same dimension"):
        difference_alignment_loss(torch.randn(3, 2, 4), torch.randn(3, 2, 5))
    with pytest.raises(InputError, match="temperature"):
        single_alignment_loss(torch.randn(3, 2, 4), torch.randn(3, 2, 4), temperature=0.0)


def test_alignment_dispatch():
    p, q = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    assert alignment_loss("none", p, None).item() == 0.0
    assert alignment_loss("single", p, q, 0.1).item() == single_alignment_loss(p, q, 0.1).item()
    assert alignment_loss("difference", p, q).item() == difference_alignment_loss(p, q).item()
    with pytest.raises(InputError, match="MFM"):
        alignment_loss("difference", p, None)
    with pytest.raises(InputError, match="unknown"):
        alignment_loss("both", p, q)  # type: ignore[arg-type]


def test_difference_alignment_pair_subset():
    g = torch.Generator().manual_seed(5)
    p, q = torch.randn(6, 2, 3, generator=g), torch.randn(6, 2, 3, generator=g)
    full = difference_alignment_loss(p, q, 0.5)
    assert difference_alignment_loss(p, q, 0.5, max_pairs=15).item() == full.item()  # 15 = all
    sub = difference_alignment_loss(
        p, q, 0.5, max_pairs=4, generator=torch.Generator().manual_seed(0)
    )
    again = difference_alignment_loss(
        p, q, 0.5, max_pairs=4, generator=torch.Generator().manual_seed(0)
    )
    assert sub.item() == again.item() != full.item()
    # Same value as the naive loss over the four pairs the generator picks.
    i, j = torch.triu_indices(6, 6, offset=1)[
        :, torch.randperm(15, generator=torch.Generator().manual_seed(0))[:4]
    ]
    expected = (
        sum(
            _naive_info_nce(
                [p[a, n] - p[b, n] for a, b in zip(i, j, strict=True)],
                [q[a, n] - q[b, n] for a, b in zip(i, j, strict=True)],
                0.5,
            )
            for n in range(2)
        )
        / 2
    )
    assert sub.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(InputError, match="generator"):
        difference_alignment_loss(p, q, max_pairs=4)
    with pytest.raises(InputError, match="max_pairs"):
        difference_alignment_loss(p, q, max_pairs=1)
