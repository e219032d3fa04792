"""Baselines behind the same API as :class:`hcl_stats.HCL`.

:class:`ConcatSVD` (unstructured), :class:`JIVE` and :class:`AJIVE` (global + specific
structure only) and :class:`SLIDE` (any binary structure). All take a list/tuple/dict of
modalities in ``fit``, score new samples in ``transform`` and expose ``structure_`` and
``loadings_`` laid out like HCL's, so the metrics in :mod:`hcl_stats.metrics` apply to any
of them unchanged. :func:`matched_estimator` configures each of them for a given
structure. The methods and their conventions are described in docs/baselines.md.
"""

from hcl_stats.baselines._ajive import AJIVE
from hcl_stats.baselines._concat_svd import ConcatSVD
from hcl_stats.baselines._jive import JIVE
from hcl_stats.baselines._matched import ESTIMATORS, matched_estimator
from hcl_stats.baselines._slide import SLIDE

__all__ = ["AJIVE", "ConcatSVD", "ESTIMATORS", "JIVE", "SLIDE", "matched_estimator"]
