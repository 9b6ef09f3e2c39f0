"""Label prediction from the label tokens, stopping at an ontology ancestor when the leaves are uncertain.

The classifier of a label class outputs probabilities over its leaf terms; a residual leaf (data.corpus.labels) is
reported as the code of its coarse term, which names the same term. When the top leaf holds less than
``threshold`` of the probability, the prediction moves up to the most specific coarse ancestor of that leaf
(the one with the fewest descendant leaves; ties go to the larger mass) whose descendant leaves together hold at
least ``threshold``; if none does, the top leaf is kept. ``threshold=0`` always names a leaf.

Scoring, when obs carries the true terms (<class>_ontology_term_id): true terms are encoded like the training
labels (unseen terms map to their closest observed ancestor; unknown ones are not scored). 'strict' counts a
prediction correct only when it is the true term; 'ontology' also when it is a descendant of the true term (a
leaf under a coarse true label, or a coarse term whose leaves all lie under it) — predicting an ancestor of the
true term is never counted correct. Macro-F1 is over the terms present among truths and predictions; the
ontology version replaces a prediction counted correct by the true term before computing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from sklearn.metrics import f1_score

from grnformer.bundle.checkpoint import Bundle
from grnformer.data.corpus.labels import LabelEncoder, column
from grnformer.errors import InputError
from grnformer.inference.device import load_task_bundle
from grnformer.inference.distributed import combine_rows
from grnformer.inference.file_runner import run_file
from grnformer.inference.loop import context_collator, run_model
from grnformer.inference.option_fields import options_from
from grnformer.inference.prepared import prepare_input
from grnformer.tasks.task_options import DEFAULT_THRESHOLD, ClassifyOptions


def hierarchical_predict(probs: np.ndarray, encoder: LabelEncoder, threshold: float = DEFAULT_THRESHOLD
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(codes, probability) per cell: a leaf code, or n_leaves + j for coarse term j (see module docstring)."""
    top = probs.argmax(axis=1)
    p_top = probs[np.arange(len(probs)), top]
    codes, conf = np.where(encoder.residual[top] >= 0, encoder.residual[top], top), p_top.astype(np.float32)
    if encoder.n_coarse == 0:
        return codes, conf
    desc = encoder.descendants  # [n_coarse, n_leaves]
    mass = probs @ desc.T.astype(probs.dtype)  # [n, n_coarse]
    size = desc.sum(axis=1)
    for i in np.flatnonzero(p_top < threshold):
        ok = np.flatnonzero(desc[:, top[i]] & (mass[i] >= threshold))
        if len(ok):
            best = ok[np.lexsort((-mass[i, ok], size[ok]))[0]]
            codes[i], conf[i] = encoder.n_leaves + best, mass[i, best]
    return codes, conf


def _is_descendant_or_same(pred: np.ndarray, true: np.ndarray, encoder: LabelEncoder) -> np.ndarray:
    """pred == true, or pred lies under the coarse true term (leaf under it, or coarse with all leaves under it)."""
    n = encoder.n_leaves
    desc = encoder.descendants
    out = pred == true
    coarse_true = true >= n
    for i in np.flatnonzero(coarse_true & ~out):
        under = desc[true[i] - n]
        out[i] = under[pred[i]] if pred[i] < n else bool(np.all(under >= desc[pred[i] - n]))
    return out


def score_predictions(pred: np.ndarray, true: np.ndarray, encoder: LabelEncoder) -> dict[str, float | int]:
    """Accuracy and macro-F1, strict and ontology-aware, over cells with a known true code."""
    known = true >= 0
    pred, true = pred[known], true[known]
    if len(true) == 0:
        return {"n_scored": 0}
    strict = pred == true
    onto = _is_descendant_or_same(pred, true, encoder)
    return {"n_scored": int(len(true)),
            "accuracy": float(strict.mean()), "accuracy_ontology": float(onto.mean()),
            "macro_f1": float(f1_score(true, pred, average="macro")),
            "macro_f1_ontology": float(f1_score(true, np.where(onto, true, pred), average="macro"))}


def classify(bundle: Bundle, adata: AnnData, options: ClassifyOptions | None = None, *,
             device: str | torch.device | None = None, progress: bool = True,
             **keywords: Any) -> dict[str, dict[str, Any]]:
    """Write obs['grnformer_<class>'] (term ID) and obs['grnformer_<class>_prob'] for each label class.

    ``options``: a `ClassifyOptions`, its fields as keywords, or both (keywords win). Returns {class: metrics}
    for the classes whose true terms are in obs (empty when none are); the same goes to
    uns['grnformer_classify']."""
    o = options_from(ClassifyOptions, options, keywords).validate()
    bundle, dev = load_task_bundle(bundle, device)
    known = list(bundle.config.label_sizes)
    classes = known if o.classes is None else [o.classes] if isinstance(o.classes, str) else list(o.classes)
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise InputError(f"label classes {unknown} are not predicted by this model; it knows {', '.join(known)}.")
    prep = prepare_input(bundle, adata, o.organism)
    probs = {c: np.zeros((prep.n_cells, bundle.config.label_sizes[c]), dtype=np.float32) for c in classes}
    collator = context_collator(bundle, "random-expressed", seed=o.seed)
    for rows, _, _, out in run_model(bundle, prep, np.arange(prep.n_cells), [collator], dev, o.batch_size,
                                     o.precision, progress=progress, desc="classify", sharded=True):
        for c in classes:
            probs[c][rows] = torch.softmax(out.label_logits[c].float(), dim=-1).cpu().numpy()
    probs = {c: combine_rows(p) for c, p in probs.items()}
    metrics: dict[str, dict[str, Any]] = {}
    class_index = list(bundle.labels.classes)
    for c in classes:
        encoder = bundle.labels.encoders[c]
        codes, conf = hierarchical_predict(probs[c], encoder, o.threshold)
        terms = np.asarray(encoder.leaves + encoder.coarse, dtype=object)[codes]
        adata.obs[f"grnformer_{c}"] = pd.Categorical(prep.to_user_rows(terms, adata.n_obs))
        adata.obs[f"grnformer_{c}_prob"] = prep.to_user_rows(conf, adata.n_obs)
        if column(c) in adata.obs:
            metrics[c] = score_predictions(codes, prep.cells.label_codes[:, class_index.index(c)], encoder)
    adata.uns["grnformer_classify"] = {"threshold": o.threshold, "metrics": metrics}
    return metrics


def classify_file(checkpoint: str | Path | Bundle, in_path: str | Path, out_path: str | Path,
                  options: ClassifyOptions | None = None, *, device: str | torch.device | None = None,
                  progress: bool = True, **keywords: Any) -> Path:
    """CLI entry: the input h5ad with predictions in obs (metrics in uns), written atomically; metrics printed
    (options as for `classify`, checked before anything is read)."""
    options = options_from(ClassifyOptions, options, keywords).validate()
    return run_file(checkpoint, in_path, out_path,
                    lambda bundle, adata, dev: classify(bundle, adata, options, device=dev, progress=progress),
                    report=_print_metrics, device=device)


def _print_metrics(metrics: dict[str, dict[str, Any]]) -> None:
    for c, m in metrics.items():
        print(f"{c}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items()))
