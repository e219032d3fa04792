"""Pictures of a fitted multi-block factor model (matplotlib, imported when called).

* :func:`plot_variance_explained`: modality x structure heatmap of the variance table
  (:meth:`~hcl_stats._models.base.BlockFactorModel.explained_variance`).
* :func:`plot_structure`: which modalities each selected subset joins, with its rank and,
  given a :func:`hcl_stats.selection.structure_stability` report, how often subsamples
  select it.
* :func:`plot_block_loadings`: each modality's loadings, feature by factor, with the
  exact zeros outside the structure left blank.

Every function draws on a given matplotlib ``Axes`` (or a new figure) and returns what it
drew on, so figures can be composed and saved by the caller. See ``docs/model.md`` for
the quantities shown and ``docs/selection.md`` for the stability report.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_block_loadings", "plot_structure", "plot_variance_explained"]


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _new_axes(ax, figsize):
    if ax is not None:
        return ax
    return _pyplot().subplots(figsize=figsize)[1]


def _structure_of(obj):
    """The Structure of a fitted model, or ``obj`` itself when it is a Structure."""
    structure = getattr(obj, "structure_", None)
    return obj if structure is None else structure


def plot_variance_explained(model, *, fraction=True, columns="blocks", ax=None,
                            cmap="viridis", annotate=True):
    """Heatmap of the share of each modality's variance carried by each structure.

    Parameters
    ----------
    model : fitted BlockFactorModel
        HCL or a baseline (anything with ``explained_variance``).
    fraction : bool, default=True
        Shares of each modality's total variance (rows of the table divided by
        ``total``) rather than variances in the data's units.
    columns : {"blocks", "all"}, default="blocks"
        ``"blocks"``: one column per structure; ``"all"``: also the ``noise`` and
        ``residual`` columns of the table (the ``total`` column is never drawn).
    ax : matplotlib Axes or None, default=None
        Where to draw (a new figure when None).
    cmap : str, default="viridis"
        Colour map.
    annotate : bool, default=True
        Write each cell's value in it.

    Returns
    -------
    ax : matplotlib Axes
        The image is ``ax.images[0]``; its array is the table drawn, its ``x`` tick labels
        the structure labels and its ``y`` tick labels the modalities.
    """
    if columns not in ("blocks", "all"):
        raise ValueError(f"columns must be 'blocks' or 'all', got {columns!r}")
    table = model.explained_variance(fraction=fraction).drop(columns="total")
    if columns == "blocks":
        table = table.drop(columns=["noise", "residual"])
    values = table.to_numpy(dtype=float)
    ax = _new_axes(ax, (1.2 + 0.7 * values.shape[1], 1.0 + 0.45 * values.shape[0]))
    vmax = 1.0 if fraction else max(float(np.nanmax(np.abs(values))), 1e-300)
    image = ax.imshow(values, aspect="auto", cmap=cmap, vmin=0.0, vmax=vmax)
    ax.set_xticks(range(values.shape[1]), [str(c) for c in table.columns], rotation=45,
                  ha="right")
    ax.set_yticks(range(values.shape[0]), [str(i) for i in table.index])
    ax.set_xlabel("structure")
    ax.set_ylabel("modality")
    if annotate:
        for (i, j), v in np.ndenumerate(values):
            if v != 0:
                light = image.norm(v) < 0.5
                ax.text(j, i, f"{v:.2f}" if fraction else f"{v:.3g}", ha="center",
                        va="center", fontsize=7, color="white" if light else "black")
    ax.figure.colorbar(image, ax=ax, label="share of variance" if fraction else "variance")
    ax.set_title("variance explained per modality and structure")
    return ax


def plot_structure(structure, *, stability=None, ax=None, color="tab:blue"):
    """Diagram of a structure: one row per subset, a filled cell per member modality.

    Parameters
    ----------
    structure : Structure or fitted model
        The structure (a fitted model's ``structure_`` is used).
    stability : Bunch or pandas.DataFrame or None, default=None
        A :func:`hcl_stats.selection.structure_stability` report (or its ``subsets``
        table): each subset's selection frequency over the subsamples is written on the
        right and sets the cells' opacity.
    ax : matplotlib Axes or None, default=None
        Where to draw (a new figure when None).
    color : str, default="tab:blue"
        Colour of the member cells.

    Returns
    -------
    ax : matplotlib Axes
        ``y`` tick labels are the subset labels (``structure.label``) from the most global
        down; the text artists ``"r = k"`` (and ``"f = 0.xx"``) carry the ranks (and
        frequencies) in the same order.
    """
    structure = _structure_of(structure)
    blocks = sorted(structure.blocks, key=lambda b: (-len(b[0]), b[0]))
    M = structure.n_modalities
    freq = None
    if stability is not None:
        table = getattr(stability, "subsets", stability)
        freq = dict(zip(table["subset"], table["frequency"]))
    ax = _new_axes(ax, (2.5 + 0.6 * M, 0.8 + 0.35 * len(blocks)))
    from matplotlib.patches import Rectangle

    for i, (subset, rank) in enumerate(blocks):
        label = structure.label(subset)
        f = None if freq is None else float(freq.get(label, 0.0))
        alpha = 1.0 if f is None else 0.25 + 0.75 * f
        for m in range(M):
            inside = m in subset
            ax.add_patch(Rectangle((m - 0.45, i - 0.4), 0.9, 0.8,
                                   facecolor=color if inside else "none",
                                   edgecolor=color if inside else "0.8", alpha=alpha))
        ax.text(M - 0.2, i, f"r = {rank}", va="center", fontsize=9)
        if f is not None:
            ax.text(M + 0.7, i, f"f = {f:.2f}", va="center", fontsize=9)
    ax.set_xlim(-0.6, M + (1.6 if freq is not None else 0.6))
    ax.set_ylim(len(blocks) - 0.5, -0.5)
    ax.set_xticks(range(M), [structure.modality_label(m) for m in range(M)], rotation=45,
                  ha="right")
    ax.set_yticks(range(len(blocks)), [structure.label(s) for s, _ in blocks])
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    title = f"structure: K = {structure.n_components} factors"
    if freq is not None:
        title += " (f: selection frequency)"
    ax.set_title(title)
    return ax


def plot_block_loadings(model, *, modalities=None, fig=None, cmap="RdBu_r"):
    """Each modality's loadings as a feature x factor image, blank outside the structure.

    Columns are the model's factors, grouped by structure (labels on top); the blocks a
    modality does not belong to are exact zeros and are left blank.

    Parameters
    ----------
    model : fitted BlockFactorModel
        HCL or a baseline.
    modalities : sequence of int or str or None, default=None
        Which modalities to draw (default: all), one panel each.
    fig : matplotlib Figure or None, default=None
        Figure to draw into (a new one when None).
    cmap : str, default="RdBu_r"
        Diverging colour map, centred on zero per panel.

    Returns
    -------
    fig : matplotlib Figure
        One Axes per modality (``fig.axes``, colour bars excluded), whose image array is
        the modality's loadings with NaN outside its blocks.
    """
    plt = _pyplot()
    structure = model.structure_
    index = [model._modality_index(m) for m in
             (range(structure.n_modalities) if modalities is None else modalities)]
    edges = np.concatenate([[0], np.cumsum(model.n_features_per_modality_)])
    if fig is None:
        fig = plt.figure(figsize=(2.0 + 0.25 * structure.n_components * len(index), 4.0))
    axes = fig.subplots(1, len(index), squeeze=False)[0]
    cm = plt.get_cmap(cmap).with_extremes(bad="0.9")
    for ax, m in zip(axes, index):
        W = model.loadings_[edges[m]:edges[m + 1]].astype(float)
        shown = np.full_like(W, np.nan)
        for subset in structure.subsets:
            if m in subset:
                cols = structure.columns(subset)
                shown[:, cols] = W[:, cols]
        lim = max(float(np.nanmax(np.abs(shown))) if np.isfinite(shown).any() else 0.0, 1e-300)
        image = ax.imshow(np.ma.masked_invalid(shown), aspect="auto", cmap=cm, vmin=-lim,
                          vmax=lim, interpolation="nearest")
        for subset in structure.subsets:
            cols = structure.columns(subset)
            ax.axvline(cols.start - 0.5, color="0.4", lw=0.5)
        ax.set_xticks([(structure.columns(s).start + structure.columns(s).stop - 1) / 2
                       for s in structure.subsets],
                      [structure.label(s) for s in structure.subsets], rotation=90,
                      fontsize=7)
        ax.set_title(f"modality {structure.modality_label(m)}", fontsize=9)
        ax.set_ylabel("feature")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle("block loadings (blank: zero by structure)")
    return fig
