"""Downstream prediction and inference on factor scores: which structures matter for y.

- :class:`StructuredGroupLasso`: group lasso with one group per structure block (squared or
  logistic loss; cvxpy reference solver and a fast proximal solver; penalty by leak-free
  K-fold cross-validation or an information criterion; optional errors-in-variables
  correction).
- :func:`structure_inference`: statsmodels OLS / Logit on chosen structures, coefficient
  table with confidence intervals, a Wald test and partial R^2 per structure.
- :func:`sample_split_inference`: select on one part of the samples, infer on the other
  (valid post-selection inference).
- :func:`pseudo_inverse_scores`: the reference code's scores with their noise covariance.

Typical use: fit the factor model (on unlabelled data if there are more of them), then::

    Z = model.transform(X_labelled)
    sgl = StructuredGroupLasso(model.structure_).fit(Z, y)
    sgl.selected_labels_
"""

from hcl_stats.downstream._group_lasso import StructuredGroupLasso
from hcl_stats.downstream._inference import (SampleSplitInference, StructureInference,
                                             sample_split_inference, structure_inference)
from hcl_stats.downstream._scores import pseudo_inverse_scores

__all__ = ["SampleSplitInference", "StructureInference", "StructuredGroupLasso",
           "pseudo_inverse_scores", "sample_split_inference", "structure_inference"]
