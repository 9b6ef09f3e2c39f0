"""Likelihood and label losses, as small functions that run in fp32 whatever autocast is active."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def zinb_nll(x: Tensor, mu: Tensor, theta: Tensor, pi_logit: Tensor, eps: float = 1e-8) -> Tensor:
    """Elementwise negative log-likelihood of counts `x` under a zero-inflated negative binomial.

    NB(mean mu, inverse dispersion theta) is scipy's nbinom(n=theta, p=theta/(theta+mu)); with probability
    sigmoid(pi_logit) the count is a structural zero instead. Written with softplus / logaddexp / log1p so that no
    probability is ever formed explicitly, and in fp32 because bf16 lgamma differences lose every digit.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, mu, theta, pi_logit = x.float(), mu.float(), theta.float(), pi_logit.float()
        # theta log(theta / (theta + mu)) and x log(mu / (theta + mu)) as log1p, so neither cancels when one
        # of theta, mu dwarfs the other.
        log_nb_zero = -theta * torch.log1p(mu / (theta + eps))
        log_nb = (log_nb_zero - x * torch.log1p(theta / (mu + eps))
                  + torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1.0))
        # log(pi + (1 - pi) NB(0)) with pi = sigmoid(l): logaddexp(l, log NB(0)) - softplus(l).
        log_zero = torch.logaddexp(pi_logit, log_nb_zero) - F.softplus(pi_logit)
        log_nonzero = log_nb - F.softplus(pi_logit)
        return -torch.where(x < 0.5, log_zero, log_nonzero)


LABEL_LOSSES = ("softmax", "bce")


def hierarchical_label_loss(logits: Tensor, codes: Tensor, descendants: Tensor, kind: str = "softmax") -> Tensor:
    """Mean label loss of one label class over the cells whose label is known.

    `codes[i]` < n_leaves names a leaf; a code n_leaves + j names coarse term j (row j of `descendants`,
    n_coarse x n_leaves), whose descendant leaves form the positive set: an ancestor label raises the logsumexp
    of its descendant leaves ("one of these"), whichever of them it is. Code -1 (unknown) and coarse terms
    without a descendant leaf weigh 0; a batch with no usable label gives 0, not NaN.

    kind "softmax" (default): cross-entropy of the positive set under a softmax over the leaves,
    logsumexp(all leaves) - logsumexp(positive leaves). Leaves of one class are mutually exclusive, and the
    true leaf gets the full gradient whatever the number of leaves.
    kind "bce": one-vs-rest binary cross-entropy, the positive set's logsumexp against each negative leaf,
    summed over leaves (not averaged: averaging over hundreds of leaves drowns the one positive term and the
    classifier collapses onto one class, which we observed).
    """
    if kind not in LABEL_LOSSES:
        raise ValueError(f"label loss kind must be one of {LABEL_LOSSES}, not {kind!r}")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float()
        n_leaves = logits.shape[1]
        eye = torch.eye(n_leaves, dtype=torch.bool, device=logits.device)
        table = torch.cat([eye, descendants.to(device=logits.device, dtype=torch.bool)])
        positive = table[codes.clamp_min(0)]                                   # [B, n_leaves]
        usable = (codes >= 0) & positive.any(dim=1)
        positive = torch.where(usable[:, None], positive, eye[0])              # keep unused rows finite
        pos_logit = logits.masked_fill(~positive, float("-inf")).logsumexp(dim=1)
        if kind == "softmax":
            per_cell = logits.logsumexp(dim=1) - pos_logit
        else:
            per_cell = F.softplus(-pos_logit) + F.softplus(logits).masked_fill(positive, 0.0).sum(dim=1)
        weight = usable.float()
        return (per_cell * weight).sum() / weight.sum().clamp_min(1.0)
