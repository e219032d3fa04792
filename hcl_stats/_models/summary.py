"""Statsmodels-style result summaries (text and HTML) for the package's models.

A :class:`Summary` holds a title, a header of ``(name, value)`` pairs and named pandas
tables. The tables keep the exact numbers (``summary.tables["explained_variance"]`` is the
model's own table); only the text and HTML renderings round them.
"""

from __future__ import annotations

import html
from numbers import Integral, Real

import numpy as np

__all__ = ["Summary", "model_summary"]

#: Significant digits of numbers in the renderings.
DIGITS = 6


def format_value(value):
    """How a header value or table cell is written in the text and HTML renderings."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return f"{float(value):.{DIGITS}g}"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "(" + ", ".join(format_value(v) for v in value) + ")"
    return str(value)


class Summary:
    """A printable summary: ``str(summary)`` is text, ``summary.as_html()`` is HTML.

    Parameters
    ----------
    title : str
        Heading.
    info : list of (str, object)
        Header entries, shown as ``name: value`` in two columns.
    tables : dict of str to pandas.DataFrame
        Named tables, shown in order.
    notes : sequence of str, default=()
        Footnotes.

    Attributes
    ----------
    title, info, tables, notes
        As given; ``info`` is also available as a dict through :meth:`info_dict`.
    """

    def __init__(self, title, info, tables, notes=()):
        self.title = title
        self.info = list(info)
        self.tables = dict(tables)
        self.notes = list(notes)

    def info_dict(self):
        """The header entries as a dict."""
        return dict(self.info)

    def _table_text(self, name, frame):
        body = frame.to_string(float_format=lambda v: f"{v:.{DIGITS}g}")
        return name, body

    def as_text(self):
        """Plain-text rendering."""
        blocks = [self._table_text(name, frame) for name, frame in self.tables.items()]
        pairs = [(str(k), format_value(v)) for k, v in self.info]
        half = (len(pairs) + 1) // 2
        left, right = pairs[:half], pairs[half:]
        kw = max((len(k) for k, _ in pairs), default=0)
        vw = max((len(v) for _, v in left), default=0)
        header = []
        for i in range(half):
            line = f"{left[i][0] + ':':<{kw + 1}} {left[i][1]:>{vw}}"
            if i < len(right):
                line += f"    {right[i][0] + ':':<{kw + 1}} {right[i][1]}"
            header.append(line)
        width = max([len(self.title)] + [len(x) for x in header] +
                    [len(line) for _, body in blocks for line in body.splitlines()] + [40])
        out = [self.title.center(width), "=" * width, *header]
        for name, body in blocks:
            out += ["=" * width, name, "-" * width, body]
        out.append("=" * width)
        for note in self.notes:
            out.append(note)
        return "\n".join(out)

    def as_html(self):
        """HTML rendering (what Jupyter displays)."""
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(format_value(v))}"
                       f"</td></tr>" for k, v in self.info)
        parts = [f'<div class="hcl-summary"><h4>{html.escape(self.title)}</h4>',
                 f'<table class="hcl-summary-info">{rows}</table>']
        for name, frame in self.tables.items():
            table = frame.to_html(float_format=lambda v: f"{v:.{DIGITS}g}", border=0)
            parts.append(f"<h5>{html.escape(name)}</h5>{table}")
        for note in self.notes:
            parts.append(f"<p>{html.escape(note)}</p>")
        parts.append("</div>")
        return "\n".join(parts)

    def _repr_html_(self):
        return self.as_html()

    def __str__(self):
        return self.as_text()

    def __repr__(self):
        return self.as_text()


#: (attributes, first present wins; label; fitted): the fitted ``denoise_`` and ``scale_``
#: are the rules ``"auto"`` resolved to
_OPTIONAL = (
    (("denoise_", "denoise"), "Denoise", False),
    (("scale_", "scale"), "Scale", False),
    (("solver",), "Solver", False),
    (("objective",), "Objective function", False),
    (("objective_",), "Objective", True),
    (("n_iter_",), "Iterations", True),
    (("converged_",), "Converged", True),
    (("gradient_norm_",), "Relative gradient norm", True),
)


def model_summary(model):
    """Build the :class:`Summary` of a fitted :class:`~hcl_stats._models.base.BlockFactorModel`.

    Header: model, samples, modalities and their widths, total rank, number of blocks, and
    the fitting options and solver diagnostics the model has (objective, iterations,
    convergence, gradient norm). Tables: ``structure`` (block, level, rank, first column),
    ``modalities`` (width, rank carried, noise variance, total variance), when a modality
    was missing for some samples ``samples`` (the samples observing each modality, on the
    diagonal, and each pair: ``n_joint_samples_``), and the per-modality x per-structure
    ``explained_variance`` table in absolute terms and as ``explained_variance_fraction``.
    """
    import pandas as pd
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, "loadings_")
    st = model.structure_
    M = model.n_modalities_
    info = [("Model", type(model).__name__),
            ("No. samples", int(model.n_samples_)),
            ("No. modalities", int(M)),
            ("Features per modality", tuple(int(p) for p in model.n_features_per_modality_)),
            ("Total rank K", int(model.n_components_)),
            ("No. blocks", len(st))]
    for attrs, label, fitted in _OPTIONAL:
        present = [a for a in attrs if hasattr(model, a)]
        if present:
            value = getattr(model, present[0])
            if fitted or isinstance(value, (str, Real)) or value is None:
                info.append((label, value if value is not None else "none"))
    structure = st.to_frame().set_index("structure")
    modalities = pd.DataFrame(
        {"features": model.n_features_per_modality_.astype(int),
         "rank": [st.modality_rank(m) for m in range(M)],
         "noise_variance": model.modality_noise_variance(),
         "total_variance": model.total_variance_},
        index=pd.Index([st.modality_label(m) for m in range(M)], name="modality"))
    tables = {"structure": structure, "modalities": modalities}
    notes = ["Explained variance: ||B_{m,S}||_F^2 per block, the sum of the noise variances "
             "for noise; rows add up to trace(S_mm). Modality noise_variance: the mean over "
             "its features."]
    joint = getattr(model, "n_joint_samples_", None)
    if joint is not None and np.any(joint < model.n_samples_):
        tables["samples"] = pd.DataFrame(np.asarray(joint, dtype=int),
                                         index=modalities.index,
                                         columns=list(modalities.index))
        notes.append("Samples: those observing each modality (diagonal) and each pair; "
                     "each covariance block was estimated from the samples observing both "
                     "modalities (pairwise covariance).")
    tables["explained_variance"] = model.explained_variance()
    tables["explained_variance_fraction"] = model.explained_variance(fraction=True)
    if hasattr(model, "converged_") and not model.converged_:
        notes.append("Warning: the solver did not converge (see Iterations).")
    return Summary(f"{type(model).__name__} results", info, tables, notes)
