"""Structure selection: which modality subsets share latent factors, and how many.

:func:`select_structure` chooses the structure from a sample covariance with
random-matrix tests (the method is described in ``docs/selection.md``);
:func:`structure_stability` repeats the selection on subsamples and reports how often
each subset is selected, with which rank, and how stable each block's loadings are.
"""

from hcl_stats._estimation.selection import SelectionResult, select_structure
from hcl_stats.selection._stability import StabilityResult, structure_stability

__all__ = ["SelectionResult", "StabilityResult", "select_structure", "structure_stability"]
