"""hcl_stats: hierarchical multimodal factor models.

Which latent factors are shared by all modalities, which by some, and which belong to one:
the :class:`HCL` estimator fits a structured factor model whose loadings are exactly zero
where a modality does not belong to a structure (Li, Yu and Zhou, arXiv 2604.05462).
The method notes in the repository's ``docs/`` folder describe the model, the estimator,
the noise rules and structure selection.
"""

from hcl_stats._hcl import HCL
from hcl_stats._statistics.pooling import pool_covariances
from hcl_stats._structure import Structure

__version__ = "0.1.0"

__all__ = ["HCL", "Structure", "__version__", "pool_covariances"]
