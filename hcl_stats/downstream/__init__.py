"""Downstream prediction and inference on factor scores: which structures matter for y.

- :class:`StructuredGroupLasso`: group lasso with one group per structure block (squared or
  logistic loss; cvxpy reference solver and a fast proximal solver; penalty by leak-free
  K-fold cross-validation or an information criterion; optional errors-in-variables
  correction).
- :func:`structure_inference`: statsmodels OLS / Logit on chosen structures, coefficient
  table with confidence intervals, a Wald test and partial R^2 per structure.
- :func:`sample_split_inference`: select on one part of the samples, infer on the other
  (valid post-selection inference).
- :func:`bootstrap_scores`: bootstrap draws of the scores over the factor-model fit, for
  Wald tests that account for the estimated first stage (``first_stage=`` of the two
  inference functions).
- :func:`pseudo_inverse_scores`: the reference code's scores with their noise covariance.

Typical use: fit the factor model (on unlabelled data if there are more of them), then::

    Z = model.transform(X_labelled)
    sgl = StructuredGroupLasso(model.structure_).fit(Z, y)
    sgl.selected_labels_

and, for Wald tests that account for the estimation of the factor model (needed unless the
factor model was fitted on many more samples than are labelled)::

    boot = bootstrap_scores(model, X_unlabelled, X_labelled, n_bootstrap=100)
    sample_split_inference(boot.scores, y, model.structure_, first_stage=boot).wald_table
"""

from hcl_stats.downstream._first_stage import (
                                             ScoreBootstrap,
                                             align_scores,
                                             bootstrap_scores,
)
from hcl_stats.downstream._group_lasso import StructuredGroupLasso
from hcl_stats.downstream._inference import (
                                             SampleSplitInference,
                                             StructureInference,
                                             sample_split_inference,
                                             structure_inference,
)
from hcl_stats.downstream._scores import pseudo_inverse_scores

__all__ = ["SampleSplitInference", "ScoreBootstrap", "StructureInference",
           "StructuredGroupLasso", "align_scores", "bootstrap_scores", "pseudo_inverse_scores",
           "sample_split_inference", "structure_inference"]
