"""Structure selection: which modality subsets share latent factors, and how many.

:func:`select_structure` chooses the structure from a sample covariance with
random-matrix tests (see :mod:`hcl_stats._estimation.selection` for the method);
:func:`structure_stability` repeats the selection on subsamples and reports how often
each subset is selected, with which rank, and how stable each block's loadings are.
"""

from hcl_stats._estimation.selection import select_structure
from hcl_stats.selection._stability import structure_stability

__all__ = ["select_structure", "structure_stability"]
