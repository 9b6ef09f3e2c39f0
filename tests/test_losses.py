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


def _loss(codes):
    return hierarchical_label_loss(torch.tensor(LOGITS), torch.tensor(codes), torch.tensor(DESC))


def test_leaf_codes_are_one_vs_rest_bce():
    codes = [0, 3, 2]
    per_cell = [sum(_bce(l, j == c) for j, l in enumerate(row)) / 4 for row, c in zip(LOGITS, codes)]
    assert _loss(codes).item() == pytest.approx(sum(per_cell) / 3, rel=1e-6)
    onehot = F.one_hot(torch.tensor(codes), 4).float()
    assert _loss(codes).item() == pytest.approx(F.binary_cross_entropy_with_logits(torch.tensor(LOGITS), onehot).item())


def test_coarse_code_raises_logsumexp_of_descendants():
    # cell 0: coarse 0 -> positive logsumexp(l0, l1), negatives l2, l3 (3 terms);
    # cell 1: coarse 1 -> positive logsumexp(l1, l2, l3), negative l0 (2 terms); cell 2: unknown.
    r0, r1 = LOGITS[0], LOGITS[1]
    c0 = (_bce(math.log(math.exp(r0[0]) + math.exp(r0[1])), True) + _bce(r0[2], False) + _bce(r0[3], False)) / 3
    c1 = (_bce(math.log(sum(math.exp(v) for v in r1[1:])), True) + _bce(r1[0], False)) / 2
    assert _loss([4, 5, -1]).item() == pytest.approx((c0 + c1) / 2, rel=1e-6)


def test_coarse_loss_ignores_how_mass_is_split_among_descendants():
    a = torch.tensor([[3.0, -3.0, 0.0, 0.0]])
    b = torch.tensor([[-3.0, 3.0, 0.0, 0.0]])
    desc = torch.tensor(DESC)
    assert hierarchical_label_loss(a, torch.tensor([4]), desc) == pytest.approx(
        hierarchical_label_loss(b, torch.tensor([4]), desc).item())
    assert hierarchical_label_loss(a, torch.tensor([0]), desc) < hierarchical_label_loss(b, torch.tensor([0]), desc)


def test_unknown_labels_weigh_zero_and_never_nan():
    only_first = sum(_bce(l, j == 0) for j, l in enumerate(LOGITS[0])) / 4
    assert _loss([0, -1, -1]).item() == pytest.approx(only_first, rel=1e-6)
    assert _loss([0, -1, 6]).item() == pytest.approx(only_first, rel=1e-6)  # code 6: coarse with no leaf
    logits = torch.tensor(LOGITS, requires_grad=True)
    loss = hierarchical_label_loss(logits, torch.tensor([-1, -1, 6]), torch.tensor(DESC))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_label_loss_in_fp32_under_autocast():
    logits = torch.tensor(LOGITS).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = hierarchical_label_loss(logits, torch.tensor([0, 4, -1]), torch.tensor(DESC))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
