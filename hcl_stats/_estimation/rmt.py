"""Random-matrix thresholds used by structure selection (Marchenko-Pastur, Tracy-Widom).

All functions are closed forms or one-dimensional numerical integrals; nothing here is
simulated, so the thresholds are deterministic. A structure selection asks for the same
thresholds many times (the same dimensions, degrees of freedom and level), so the
Tracy-Widom and largest-root thresholds are cached; the scalar functions use :mod:`math`
(correctly rounded square roots, like NumPy's) because they run in loops over Python
floats.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.special
import scipy.stats

__all__ = ["tw1_quantile", "mp_edge", "wishart_edge_threshold", "largest_ratio_sf",
           "largest_ratio_threshold", "mp_median",
           "cca_largest_root_threshold", "spike_population", "spike_signal", "spike_noise",
           "spike_cosine2", "spike_score_cosine2", "sphericity_statistic"]

# Chiani (2014): TW1 is well approximated by a shifted gamma law (shape, scale, shift).
_TW1_GAMMA = (46.446, 0.186054, 9.84801)


# the same few levels are asked for thousands of times by one selection
@functools.lru_cache(maxsize=64)
def tw1_quantile(q):
    """Quantile ``q`` of the Tracy-Widom law of order 1 (shifted-gamma approximation).

    Examples
    --------
    >>> round(tw1_quantile(0.99), 1)
    2.0
    """
    k, theta, shift = _TW1_GAMMA
    return float(scipy.stats.gamma.ppf(q, k, scale=theta) - shift)


def mp_edge(gamma):
    """Upper edge ``(1 + sqrt(gamma))^2`` of the Marchenko-Pastur law (unit variance)."""
    return (1.0 + np.sqrt(gamma)) ** 2


@functools.lru_cache(maxsize=4096)
def wishart_edge_threshold(p, df, alpha):
    """Level-``alpha`` threshold for the largest eigenvalue of a unit-variance white
    sample covariance with ``p`` features and ``df`` degrees of freedom (Johnstone 2001:
    centring ``(sqrt(df - 1/2) + sqrt(p - 1/2))^2``, Tracy-Widom scale), divided by ``df``.
    """
    a, b = np.sqrt(df - 0.5), np.sqrt(max(p, 1) - 0.5)
    mu = (a + b) ** 2
    sigma = (a + b) * (1.0 / a + 1.0 / b) ** (1.0 / 3.0)
    return float((mu + sigma * tw1_quantile(1.0 - alpha)) / df)


# Gauss-Legendre rule for the tail integral of largest_ratio_sf (its integrand is smooth and
# log-concave beyond the zeros of its polynomial factor, so a fixed rule on a window of
# _TAIL_EFOLDS e-folds is accurate to about machine precision)
_GAUSS_LEGENDRE = np.polynomial.legendre.leggauss(64)
_TAIL_EFOLDS = 38.0


def _log_simplex_integral(q, a):
    """``log`` of the integral over the unit simplex (``q - 1``-dimensional Lebesgue
    measure) of ``prod_i u_i^a prod_{i<j} |u_i - u_j|`` for ``q`` unordered coordinates:
    Selberg's Laguerre integral ``prod_j Gamma(a + 1 + j/2) Gamma(1 + (j+1)/2) /
    Gamma(3/2)`` divided by ``Gamma`` of the integrand's degree plus ``q`` (the trace
    integrated out)."""
    j = np.arange(q) / 2.0
    log_laguerre = float(np.sum(scipy.special.gammaln(a + 1.0 + j)
                                + scipy.special.gammaln(1.5 + j)) - q * math.lgamma(1.5))
    return log_laguerre - math.lgamma(q * (a + 1.0) + q * (q - 1) / 2.0)


@functools.lru_cache(maxsize=1024)
def _ratio_tail_integrand(q, nu):
    """``(log_constant, a, c, zeros)`` of the density behind :func:`largest_ratio_sf` for
    ``q`` features and ``nu >= q`` degrees of freedom (``q >= 3``).

    The density at ``s`` of "a normalised eigenvalue ``u_i = lambda_i / trace`` at ``s``,
    counted with the sign ``(-1)^(number of others above it)``" is
    ``exp(log_constant) s^a (1 - s)^c prod_j (s - zeros_j)``: the joint density of the
    ``q`` normalised eigenvalues is proportional to ``prod u^a prod |u_i - u_j|`` on the
    simplex (``a = (nu - q - 1) / 2``); fixing one at ``s``, dropping the absolute values
    of its ``q - 1`` differences (that is the sign) and rescaling the others to the unit
    simplex leaves ``s^a (1 - s)^c`` times the expected characteristic polynomial of the
    other ``q - 1``, an ensemble of the same kind with ``nu - 1`` degrees of freedom. That
    polynomial's coefficients are expectations of elementary symmetric functions,
    ``E e_k = C(q - 1, k) nu'(nu' - 1)...(nu' - k + 1) / prod_{i<k} ((q - 1) nu' + 2 i)``
    (``nu' = nu - 1``: principal minors of a Wishart matrix over powers of its trace,
    which is independent of the normalised eigenvalues). It is a Jacobi polynomial:
    ``z^(q-1) 2F1(1 - q, -nu'; (q - 1) nu' / 2; -1 / (2 z))`` in ``z = s / (1 - s)``,
    which Pfaff's transformation turns into ``P_(q-1)^(alpha, beta)`` with ``alpha =
    (q - 1) nu' / 2 - 1`` and ``beta = nu' - q + 1``. Its zeros are the eigenvalues of
    that family's Jacobi matrix (computed shifted by 1, so that they keep their relative
    accuracy where they crowd near -1), mapped to ``s``.
    """
    a = (nu - q - 1) / 2.0
    n, nu1 = q - 1, nu - 1
    c = n * a + n * (n - 1) / 2.0 + q - 2
    alpha, beta = n * nu1 / 2.0 - 1.0, float(nu1 - n)
    k = np.arange(n, dtype=float)
    s = 2 * k + alpha + beta
    # diagonal of the monic Jacobi recurrence plus 1, written without cancellation
    diag = 2 * ((beta + k) * (alpha + beta + k + 1) + (k + 1) * (k + alpha)) / (s * (s + 2))
    k1, s1 = k[1:], s[1:]
    off = np.sqrt(4 * k1 * (k1 + alpha) * (k1 + beta) * (k1 + alpha + beta)
                  / (s1 ** 2 * (s1 + 1) * (s1 - 1)))
    v, info = scipy.linalg.lapack.dsterf(diag, off)  # 1 + zeros of P on [-1, 1]
    if info:  # (QL without square roots did not converge: bisection)
        v = scipy.linalg.eigvalsh_tridiagonal(diag, off, lapack_driver="stebz")
    v = np.sort(v)
    zeros = v / (4.0 - v)  # z = v / (2 (2 - v)), then s = z / (1 + z)
    log_constant = (math.log(q) + _log_simplex_integral(n, a) - _log_simplex_integral(q, a)
                    - float(np.sum(np.log1p(-zeros))))
    return log_constant, a, c, zeros


def _log_ratio_integrand(s, q, nu):
    """Sign and ``log`` of the absolute value of the density of
    :func:`_ratio_tail_integrand` at the points ``s`` (an array in ``(0, 1)``)."""
    log_constant, a, c, zeros = _ratio_tail_integrand(q, nu)
    diff = s[:, None] - zeros
    if s.min() > zeros[-1]:  # beyond the zeros (the upper tail): positive
        sign = np.ones(len(s))
    else:
        sign = np.where(np.count_nonzero(diff < 0, axis=1) % 2, -1.0, 1.0)
        diff = np.abs(diff)
    return sign, log_constant + a * np.log(s) + c * np.log1p(-s) + np.log(diff).sum(axis=1)


def _log_ratio_tail(t, q, nu):
    """``log`` of the integral from ``t`` to 1 of the density of
    :func:`_ratio_tail_integrand` (``-inf`` where it is not positive), and ``log`` of the
    density at ``t`` (``nan`` where it is not positive)."""
    _, a, c, zeros = _ratio_tail_integrand(q, nu)
    slope = a / t - c / (1.0 - t) + float(np.sum(1.0 / (t - zeros))) if t > zeros[-1] else 0.0
    if slope < 0:
        # beyond the zeros the log-density is concave: it falls by at least the tangent's
        # slope, so the window holds all of the integral but about e^-_TAIL_EFOLDS of it
        hi = min(1.0, t + _TAIL_EFOLDS / -slope)
    else:  # before the mode or among the zeros: the window found on a grid
        grid = t + (1.0 - t) * np.linspace(0.0, 1.0, 513)[1:-1] ** 2
        log_f = _log_ratio_integrand(grid, q, nu)[1]
        above = np.nonzero(log_f > log_f.max() - _TAIL_EFOLDS)[0]
        hi = float(grid[above[-1] + 1]) if above[-1] + 1 < len(grid) else 1.0
    x, w = _GAUSS_LEGENDRE
    # the nodes and, last, t itself
    sign, log_f = _log_ratio_integrand(np.append(t + (hi - t) * (x + 1) / 2, t), q, nu)
    peak = float(log_f[:-1].max())
    total = float(w @ (sign[:-1] * np.exp(log_f[:-1] - peak))) * (hi - t) / 2
    log_tail = peak + math.log(total) if total > 0 else -math.inf
    return log_tail, float(log_f[-1]) if sign[-1] > 0 else math.nan


def largest_ratio_sf(r, p, df):
    """Probability that ``lambda_1 / mean(lambda)`` exceeds ``r`` under white noise.

    ``lambda``: the eigenvalues of a sample covariance of ``p`` white features (any
    variance) with ``df`` degrees of freedom; the mean is over all ``p`` (``trace / p``),
    so the statistic lies in ``[1, p]`` whatever the noise variance. Exact for ``min(p,
    df) <= 2`` (for two: ``(1 - (r - 1)^2)^((df - 1) / 2)``); otherwise this is the
    probability that an **odd** number of normalised eigenvalues ``lambda_i / trace``
    exceed ``t = r / p``, an integral computed to about machine precision (see
    :func:`_ratio_tail_integrand`), which differs from the probability wanted by that of
    an even number of them, at least two, above ``t``: zero for ``t >= 1/2`` (at most one
    can be there), and small in the upper tail, where two normalised eigenvalues must both
    exceed the level that the largest alone exceeds with probability ``alpha``.
    With ``df < p`` the ``df`` non-zero eigenvalues are those of ``df`` features with
    ``p`` degrees of freedom, so the statistic is ``p / df`` times theirs.

    Examples
    --------
    >>> round(largest_ratio_sf(1.6, 2, 19), 6), round((1 - 0.6 ** 2) ** 9, 6)
    (0.018014, 0.018014)
    """
    q, nu = min(p, df), max(p, df)
    r = float(r) * q / p
    if q < 2 or r >= q:
        return 0.0
    if r <= 1:
        return 1.0
    if q == 2:
        return (1.0 - (r - 1.0) ** 2) ** ((nu - 1) / 2.0)
    return min(math.exp(_log_ratio_tail(r / q, q, nu)[0]), 1.0)


@functools.lru_cache(maxsize=4096)
def largest_ratio_threshold(p, df, alpha):
    """Level-``alpha`` threshold for ``lambda_1 / mean(lambda)`` of a white sample
    covariance with ``p`` features and ``df`` degrees of freedom: the ``r`` with
    ``largest_ratio_sf(r, p, df) = alpha`` (the test's level holds for this statistic,
    the noise variance being unknown, at every ``p``).

    :func:`wishart_edge_threshold` is the threshold for ``lambda_1 / sigma^2`` with the
    noise variance known; dividing by the mean eigenvalue, which contains ``lambda_1``,
    gives a narrower statistic, so that threshold is too high for it: by far at small
    ``p`` (for ``p = 2`` and ``n = 20`` it exceeds 2, the largest value the statistic can
    take), less as ``p`` grows and the mean eigenvalue concentrates. With ``min(p, df) =
    1`` the statistic is constant and the threshold is that constant: nothing exceeds it.

    Examples
    --------
    >>> r = largest_ratio_threshold(3, 19, 0.01)
    >>> round(r, 3), round(largest_ratio_sf(r, 3, 19), 6)
    (1.964, 0.01)
    """
    q, nu = min(p, df), max(p, df)
    if q < 2:
        return float(p)
    if q == 2:  # the closed form of largest_ratio_sf
        return p / q * (1.0 + math.sqrt(1.0 - alpha ** (2.0 / (nu - 1))))
    return p / q * _ratio_quantile(q, nu, alpha)


def _ratio_quantile(q, nu, alpha):
    """The root ``r`` of ``log(tail(r / q)) = log(alpha)`` (:func:`_log_ratio_tail`), for
    ``3 <= q <= nu``.

    Newton's method from :func:`wishart_edge_threshold`, the threshold of the wider
    known-variance statistic: beyond the zeros of the density's polynomial factor the
    density is log-concave, hence so is its tail, and Newton's iterates from above the
    root decrease to it. Where a step does not decrease (a start below the root, or a root
    among the zeros), Brent's method on a bracket found by halving towards 1.
    """
    log_alpha = math.log(alpha)
    top = q * float(_ratio_tail_integrand(q, nu)[3][-1])
    r = min(wishart_edge_threshold(q, nu, alpha), q * (1.0 - 1e-9))
    for _ in range(50):
        log_tail, log_density = _log_ratio_tail(r / q, q, nu)
        excess = log_tail - log_alpha
        # d log(tail) / dr = -density / (q tail)
        new = r + excess * q * math.exp(log_tail - log_density)
        if abs(new - r) <= 1e-13 * r:  # converged, to rounding
            return new
        if not (excess < 0 and max(top, 1.0) < new < r):
            break
        r = new

    def excess(r):
        return _log_ratio_tail(r / q, q, nu)[0] - log_alpha

    hi = q * (1.0 - 1e-9)
    lo = 1.0 + (min(r, hi) - 1.0) / 2.0
    for _ in range(60):
        if excess(lo) > 0:
            return scipy.optimize.brentq(excess, lo, hi, xtol=1e-13 * lo)
        hi, lo = lo, 1.0 + (lo - 1.0) / 2.0
    return min(wishart_edge_threshold(q, nu, alpha), q * (1.0 - 1e-9))


def _mp_quantile_unit(q, y):
    """Quantile of the Marchenko-Pastur law with ratio ``y <= 1`` (unit variance)."""
    lo, hi = (1 - np.sqrt(y)) ** 2, (1 + np.sqrt(y)) ** 2
    # substitution x = lo + (hi - lo) sin^2(t) removes the square-root endpoint singularities
    t = np.linspace(0.0, np.pi / 2, 4001)
    x = lo + (hi - lo) * np.sin(t) ** 2
    dx = 2 * (hi - lo) * np.sin(t) * np.cos(t)
    dens = np.sqrt(np.clip((hi - x) * (x - lo), 0, None)) / (2 * np.pi * y * np.maximum(x, 1e-300))
    f = dens * dx
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(t))])
    cdf /= cdf[-1]
    return float(np.interp(q, cdf, x))


def mp_median(gamma):
    """Median of the non-zero eigenvalues of a white unit-variance sample covariance with
    aspect ratio ``gamma = p / df`` (for ``gamma > 1`` the ``df`` non-zero eigenvalues)."""
    if gamma <= 1:
        return _mp_quantile_unit(0.5, gamma)
    return gamma * _mp_quantile_unit(0.5, 1.0 / gamma)


@functools.lru_cache(maxsize=4096)
def cca_largest_root_threshold(p, q, df, alpha):
    """Level-``alpha`` threshold for the largest squared sample canonical correlation
    between independent Gaussian vectors of dimensions ``p`` and ``q`` with ``df``
    degrees of freedom (Johnstone 2008: Tracy-Widom law of the logit of the largest root
    of a double Wishart matrix with ``p`` variables, ``q`` hypothesis and ``df - q`` error
    degrees of freedom).
    """
    m, n = q, df - q
    if min(p, q) < 1 or n < 1:
        return 1.0
    N = m + n - 1.0
    g = 2 * np.arcsin(np.sqrt((min(p, m) - 0.5) / N))
    phi = 2 * np.arcsin(np.sqrt(min((max(p, m) - 0.5) / N, 1.0)))
    mu = 2 * np.log(np.tan((phi + g) / 2))
    denom = np.sin(phi + g) ** 2 * np.sin(phi) * np.sin(g)
    if denom <= 0:
        return 1.0
    sigma = (16.0 / N ** 2 / denom) ** (1.0 / 3.0)
    logit = mu + sigma * tw1_quantile(1.0 - alpha)
    return float(1.0 / (1.0 + np.exp(-logit)))


def spike_population(ratio, gamma):
    """Population spike ``ell`` (signal variance / noise variance) behind a sample eigenvalue
    ``ratio = lambda_hat / sigma^2`` above the edge (inverse of ``(1 + ell)(1 + gamma/ell)``);
    ``sqrt(gamma)`` (the detection limit) below it."""
    return float(spike_signal((ratio,), 1.0, gamma))


def spike_signal(spikes, sigma2, gamma):
    """``sum(spike_population(e / sigma2, gamma) for e in spikes)``: the total population
    spike behind the sample eigenvalues ``spikes`` at noise variance ``sigma2``.

    Written as a loop over Python floats: a function call per eigenvalue would cost more
    than the arithmetic.
    """
    floor = math.sqrt(gamma)
    g4 = 4.0 * gamma
    terms = []
    for e in spikes:
        b = e / sigma2 - 1.0 - gamma
        disc = b * b - g4
        terms.append(floor if b <= 0 or disc <= 0 else (b + math.sqrt(disc)) / 2.0)
    return sum(terms)


# from this many spikes on, spike_noise evaluates its equation at the crossing points in
# array passes (at most _BLOCK points times spikes each); below, with Python floats
_ARRAY_SPIKES = 48
_BLOCK = 1 << 16


def _spike_constants(gamma):
    """``sqrt(gamma)``, ``1 + gamma``, ``(1 + sqrt(gamma))^2``, ``(1 - sqrt(gamma))^2``."""
    root = math.sqrt(gamma)
    return root, 1.0 + gamma, (1.0 + root) ** 2, (1.0 - root) ** 2


def _spike_equation(s, spikes, trace, p, gamma):
    """``p s + sum_j s ell_j(s) - trace`` at the noise variance ``s`` (Python floats).

    ``s ell(s)`` is ``(e - s (1 + gamma) + sqrt(e - s (1 + sqrt(gamma))^2)
    sqrt(e - s (1 - sqrt(gamma))^2)) / 2`` for a spike ``e`` above the detection limit
    (``s < e / (1 + sqrt(gamma))^2``) and ``s sqrt(gamma)`` at or below it: ``s`` times
    :func:`spike_population`, written without the ratio ``e / s`` (so finite at ``s = 0``,
    where it is ``e``). The terms are added left to right to ``p s - trace``.
    """
    return _spike_residual(s, spikes, trace, p, *_spike_constants(gamma))


def _spike_residual(s, spikes, trace, p, root, g1, a2, b2, sqrt=math.sqrt):
    """:func:`_spike_equation` with the constants of ``gamma`` (:func:`_spike_constants`)
    given: the root finder evaluates it many times at one ``gamma``."""
    value = p * s - trace
    for e in spikes:
        a = e - s * a2
        value += (e - s * g1 + sqrt(a) * sqrt(e - s * b2)) / 2.0 if a > 0 else s * root
    return value


def _spike_equation_at(points, spikes, trace, p, gamma):
    """:func:`_spike_equation` at each of the noise variances ``points`` (1-d array;
    ``spikes`` an array): the same operations elementwise, added in the same order
    (``cumsum``), so the same bits."""
    root, g1, a2, b2 = _spike_constants(gamma)
    s = points[:, None]
    a = spikes - s * a2
    above = a > 0
    b = np.where(above, spikes - s * b2, 0.0)
    h = np.where(above, (spikes - s * g1 + np.sqrt(np.where(above, a, 0.0)) * np.sqrt(b)) / 2.0,
                 s * root)
    return np.cumsum(np.hstack([p * s - trace, h]), axis=1)[:, -1]


def _values_at(points, spikes, trace, p, gamma):
    """``(point, _spike_equation(point, ...))`` for the ``points`` in their order, lazily:
    one point at a time for a few spikes, in array passes for many."""
    if len(spikes) < _ARRAY_SPIKES:
        constants = _spike_constants(gamma)
        for s in points:
            yield s, _spike_residual(s, spikes, trace, p, *constants)
        return
    e = np.array(spikes)
    step = max(_BLOCK // len(spikes), 1)
    for start in range(0, len(points), step):
        chunk = points[start:start + step]
        yield from zip(chunk, _spike_equation_at(np.array(chunk), e, trace, p, gamma).tolist())


# (np.finfo costs more than the rest of a call's set-up)
_TINY = float(np.finfo(float).tiny)
_RTOL = 4 * float(np.finfo(float).eps)


def spike_noise(spikes, trace, p, gamma):
    """The noise variance ``s`` with ``p s = trace - s spike_signal(spikes, s, gamma)``.

    The trace of a spiked covariance is ``sigma^2 (p + sum_j ell_j)``; the equation
    matches it, with each spike's population size ``ell_j`` recovered from its sample
    eigenvalue at noise variance ``s``. Returns its largest root in ``(0, trace / p]``,
    the limit of the fixed-point iteration ``s <- trace / (p + spike_signal(spikes, s,
    gamma))`` from ``trace / p`` (the map is increasing in ``s``), to four machine
    epsilons relative (:func:`scipy.optimize.brentq`); the smallest positive float where
    the spikes carry the whole trace.

    The iteration itself is not run: its steps contract by about the share of the trace
    the spikes carry, so where one spike carries nearly all of it, it needs a number of
    steps of the order of ``1 / (1 - share)``. Instead: the left side minus the right,
    ``F(s)`` (:func:`_spike_equation`), is concave between consecutive crossing points
    ``e_j / (1 + sqrt(gamma))^2``, where a spike crosses the detection limit (``s
    ell_j(s)`` is linear plus the square root of a product of two positive linear
    functions above it, linear below); ``F`` is positive at ``trace / p`` and at most 0
    at ``s = 0``. So the largest root lies in the highest interval between crossing
    points with ``F <= 0`` at its lower end, and it is the only root there.

    Examples
    --------
    Far above the detection limit ``s ell(s)`` is about ``e - s (1 + gamma)``, so that
    the root is about the variance outside the spikes over ``p - k (1 + gamma)``:

    >>> s = spike_noise([1e6], 1e6 + 49.0, 50, 0.01)
    >>> round(s, 4), round(49.0 / (50 - 1.01), 4)
    (1.0002, 1.0002)
    """
    tiny = _TINY
    top = trace / p
    spikes = [float(e) for e in spikes]
    if not top > 0:
        return tiny
    if not spikes:
        return top
    constants = _spike_constants(gamma)
    a2 = constants[2]
    points = sorted({e / a2 for e in spikes if 0 < e / a2 < top}, reverse=True) + [0.0]
    hi = top
    for lo, value in _values_at(points, spikes, trace, p, gamma):
        if value == 0:
            return max(lo, tiny)
        if value < 0:
            root = scipy.optimize.brentq(_spike_residual, lo, hi,
                                         args=(spikes, trace, p, *constants),
                                         xtol=tiny, rtol=_RTOL, maxiter=500)
            return max(root, tiny)
        hi = lo
    return tiny  # rounding left no variance outside the spikes


def spike_cosine2(ell, gamma):
    """Squared cosine between a sample spike eigenvector and its population direction."""
    return float(max((1.0 - gamma / ell ** 2) / (1.0 + gamma / ell), 0.0))


def spike_score_cosine2(ell, gamma):
    """Squared cosine between a sample spike's score vector (the right singular vector of
    the ``n x p`` data) and the true factor scores of the same samples:
    ``(1 - gamma / ell^2) / (1 + 1 / ell)``, zero at or below the detection limit
    (Paul 2007; Benaych-Georges and Nadakuditi 2012). :func:`spike_cosine2` is its
    counterpart for the eigenvector."""
    return float(max((1.0 - gamma / ell ** 2) / (1.0 + 1.0 / ell), 0.0))


def sphericity_statistic(evals, df):
    """John's sphericity statistic of a sample covariance, standardised for high dimension.

    ``evals``: the ``q`` eigenvalues of a sample covariance with ``df`` degrees of freedom
    (zeros included when ``q > df``). With ``U = mean((evals / mean(evals) - 1)^2)``,
    ``(df U - q - 1) / 2`` is asymptotically standard normal under white noise
    (``Sigma = sigma^2 I``) as ``q`` and ``df`` grow together, at any ratio ``q / df``
    (John 1971; Ledoit and Wolf 2002); it grows with any departure from sphericity.
    ``inf`` for fewer than two eigenvalues or a zero trace (nothing to test).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((2000, 50))
    >>> abs(sphericity_statistic(np.linalg.eigvalsh(np.cov(X, rowvar=False)), 1999)) < 3
    True
    """
    evals = np.maximum(np.asarray(evals, dtype=float), 0.0)  # (np.clip's min-only case)
    q, mean = len(evals), float(evals.mean()) if len(evals) else 0.0
    if q < 2 or mean <= 0:
        return float("inf")
    U = float(((evals / mean - 1.0) ** 2).mean())
    return (df * U - q - 1.0) / 2.0

