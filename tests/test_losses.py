"""Losses against independent computations: scipy.stats for the ZINB likelihood, hand sums for the label loss."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import special, stats

from grnformer.model.losses import hierarchical_label_loss, zinb_nll


def _scipy_zinb_nll(x, mu, theta, pi_logit):
    """Zero-inflated nbinom(n=theta, p=theta/(theta+mu)) in float64, straight from scipy."""
    log_nb = stats.nbinom.logpmf(x, theta, theta / (theta + mu))
    log_pi, log_not_pi = special.log_expit(pi_logit), special.log_expit(-pi_logit)
    return -np.where(x == 0, np.logaddexp(log_pi, log_not_pi + log_nb), log_not_pi + log_nb)


def _random_zinb(seed, log10_mu, log10_theta, logit_range, n=20_000):
    rng = np.random.default_rng(seed)
    mu = 10 ** rng.uniform(*log10_mu, n)
    theta = 10 ** rng.uniform(*log10_theta, n)
    pi_logit = rng.uniform(*logit_range, n)
    x = stats.nbinom.rvs(theta, theta / (theta + mu), random_state=rng).astype(np.float64)
    x[rng.random(n) < 0.3] = 0.0
    return x, mu, theta, pi_logit


@pytest.mark.parametrize("regime", [
    ((-2, 3), (-1, 2), (-5, 5)),     # what a model produces on single-cell counts
    ((-6, 5), (-4, 5), (-30, 30)),   # far tails: near-zero means, huge / tiny dispersions, saturated dropout
])
def test_zinb_nll_matches_scipy(regime):
    x, mu, theta, pi_logit = _random_zinb(0, *regime)
    expected = _scipy_zinb_nll(x, mu, theta, pi_logit)
    f32 = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    got = zinb_nll(f32(x), f32(mu), f32(theta), f32(pi_logit)).double().numpy()
    assert np.isfinite(got).all()
    # fp32 bound: a few ulps of the lgamma terms (large for counts in the thousands) plus a relative 1e-5.
    lgamma_scale = (np.abs(special.gammaln(x + theta)) + np.abs(special.gammaln(theta))
                    + np.abs(special.gammaln(x + 1)))
    tol = 1e-5 + 1e-5 * np.abs(expected) + 2e-7 * lgamma_scale
    assert (np.abs(got - expected) <= tol).all()
    small = lgamma_scale < 1e3  # where the lgamma terms are small the match is tight in absolute terms
    assert small.sum() > 5_000
    np.testing.assert_allclose(got[small], expected[small], rtol=1e-4, atol=1e-4)


def test_zinb_nll_is_fp32_and_finite_under_bf16_autocast():
    x, mu, theta, pi_logit = (torch.tensor(a, dtype=torch.float32)
                              for a in _random_zinb(1, (-6, 5), (-4, 5), (-30, 30), n=2_000))
    mu, theta, pi_logit = (t.bfloat16().requires_grad_() for t in (mu, theta, pi_logit))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nll = zinb_nll(x, mu, theta, pi_logit)
    assert nll.dtype == torch.float32
    nll.mean().backward()
    for t in (mu, theta, pi_logit):
        assert torch.isfinite(t.grad.float()).all()
    # same values as the fp32 computation on the same (bf16-rounded) parameters
    ref = zinb_nll(x, mu.detach().float(), theta.detach().float(), pi_logit.detach().float())
    torch.testing.assert_close(nll.detach(), ref)


def test_zinb_nll_zero_mean_and_certain_dropout():
    nll = zinb_nll(torch.tensor([0.0, 3.0, 0.0]), torch.tensor([0.0, 0.0, 5.0]), torch.tensor([1.0, 1.0, 1.0]),
                   torch.tensor([0.0, 0.0, 40.0]))
    assert nll[0].item() == pytest.approx(0.0, abs=1e-6)     # a zero under a zero mean is certain
    assert nll[1].item() > 10 and math.isfinite(nll[1].item())  # a count under a zero mean: very unlikely, finite
    assert nll[2].item() == pytest.approx(0.0, abs=1e-6)     # structural zero with probability ~1


# ------------------------------------------------------------------------------------------ label loss

def _bce(logit, target):
    return math.log1p(math.exp(-logit)) if target else math.log1p(math.exp(logit))


LOGITS = [[2.0, -1.0, 0.5, -3.0],
          [0.3, 1.2, -0.7, 0.0],
          [-2.0, 0.1, 1.5, 2.5]]
# coarse term 0 = leaves {0, 1}; coarse term 1 = leaves {1, 2, 3}; coarse term 2 has no leaf in the classifier
DESC = [[True, True, False, False],
        [False, True, True, True],
        [False, False, False, False]]


def _loss(codes, kind="softmax"):
    return hierarchical_label_loss(torch.tensor(LOGITS), torch.tensor(codes), torch.tensor(DESC), kind=kind)


def _lse(values):
    return math.log(sum(math.exp(v) for v in values))


def test_leaf_codes_softmax_is_cross_entropy():
    codes = [0, 3, 2]
    expected = F.cross_entropy(torch.tensor(LOGITS), torch.tensor(codes)).item()
    assert _loss(codes).item() == pytest.approx(expected, rel=1e-6)


def test_leaf_codes_bce_sums_one_vs_rest_over_leaves():
    codes = [0, 3, 2]
    per_cell = [sum(_bce(l, j == c) for j, l in enumerate(row)) for row, c in zip(LOGITS, codes)]
    assert _loss(codes, "bce").item() == pytest.approx(sum(per_cell) / 3, rel=1e-6)
    onehot = F.one_hot(torch.tensor(codes), 4).float()
    summed = F.binary_cross_entropy_with_logits(torch.tensor(LOGITS), onehot, reduction="sum").item() / 3
    assert _loss(codes, "bce").item() == pytest.approx(summed, rel=1e-6)


def test_coarse_code_raises_logsumexp_of_descendants():
    # cell 0: coarse 0 -> positive set {l0, l1}; cell 1: coarse 1 -> positive set {l1, l2, l3}; cell 2: unknown.
    r0, r1 = LOGITS[0], LOGITS[1]
    soft = ((_lse(r0) - _lse(r0[:2])) + (_lse(r1) - _lse(r1[1:]))) / 2
    assert _loss([4, 5, -1]).item() == pytest.approx(soft, rel=1e-6)
    c0 = _bce(_lse(r0[:2]), True) + _bce(r0[2], False) + _bce(r0[3], False)
    c1 = _bce(_lse(r1[1:]), True) + _bce(r1[0], False)
    assert _loss([4, 5, -1], "bce").item() == pytest.approx((c0 + c1) / 2, rel=1e-6)


@pytest.mark.parametrize("kind", ["softmax", "bce"])
def test_coarse_loss_ignores_how_mass_is_split_among_descendants(kind):
    a = torch.tensor([[3.0, -3.0, 0.0, 0.0]])
    b = torch.tensor([[-3.0, 3.0, 0.0, 0.0]])
    desc = torch.tensor(DESC)
    assert hierarchical_label_loss(a, torch.tensor([4]), desc, kind=kind) == pytest.approx(
        hierarchical_label_loss(b, torch.tensor([4]), desc, kind=kind).item())
    assert hierarchical_label_loss(a, torch.tensor([0]), desc, kind=kind) \
        < hierarchical_label_loss(b, torch.tensor([0]), desc, kind=kind)


def test_true_leaf_gradient_does_not_shrink_with_more_leaves():
    """The collapse we saw: averaging over leaves made the true leaf's pull vanish as leaves were added."""
    for kind in ("softmax", "bce"):
        grads = []
        for n_leaves in (4, 400):
            logits = torch.zeros(1, n_leaves, requires_grad=True)
            hierarchical_label_loss(logits, torch.tensor([0]), torch.zeros(0, n_leaves, dtype=torch.bool),
                                    kind=kind).backward()
            grads.append(-logits.grad[0, 0].item())
        assert grads[1] >= grads[0] * 0.99 > 0.4, (kind, grads)


@pytest.mark.parametrize("kind", ["softmax", "bce"])
def test_unknown_labels_weigh_zero_and_never_nan(kind):
    only_first = _loss([0, -1, -1], kind).item() * 1.0
    full_first = hierarchical_label_loss(torch.tensor(LOGITS[:1]), torch.tensor([0]), torch.tensor(DESC),
                                         kind=kind).item()
    assert only_first == pytest.approx(full_first, rel=1e-6)
    assert _loss([0, -1, 6], kind).item() == pytest.approx(full_first, rel=1e-6)  # code 6: coarse with no leaf
    logits = torch.tensor(LOGITS, requires_grad=True)
    loss = hierarchical_label_loss(logits, torch.tensor([-1, -1, 6]), torch.tensor(DESC), kind=kind)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="softmax"):
        _loss([0, 1, 2], "focal")


def test_label_loss_in_fp32_under_autocast():
    logits = torch.tensor(LOGITS).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = hierarchical_label_loss(logits, torch.tensor([0, 4, -1]), torch.tensor(DESC))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
