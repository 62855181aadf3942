"""Weighted non-linear least squares (Levenberg-Marquardt) in plain Python, and the
peak models the measurements fit with it.

linefit (a line on a spectrum) and imexam (a star's radial profile, a trace's
profile across the slit) fit a handful of parameters to a few hundred points, in the
API, which may not import numpy or scipy. At that size the standard library is fast
enough if the per-point work stays in C: the model returns whole columns of its
Jacobian, and the normal matrix is built from `sum(map(mul, ...))` of them. The
matrices are tiny (at most 6x6), so a Gauss-Jordan inverse with pivoting does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from operator import mul
from typing import Callable, List, Optional, Sequence, Tuple

Vector = List[float]
Matrix = List[List[float]]
#: model(params, x) -> (values at x, one column of partial derivatives per parameter)
Model = Callable[[Sequence[float], Sequence[float]], Tuple[Vector, List[Vector]]]

FOUR_LN2 = 4.0 * math.log(2.0)
#: area of a Gaussian of unit peak and unit FWHM: sqrt(pi / (4 ln 2))
GAUSS_AREA = math.sqrt(math.pi / FOUR_LN2)
#: area of a Lorentzian of unit peak and unit FWHM
LORENTZ_AREA = math.pi / 2.0


class SingularMatrix(ArithmeticError):
    """The normal matrix cannot be inverted: a parameter is not constrained by the data."""


def invert(matrix: Matrix) -> Matrix:
    """Inverse of a small square matrix (Gauss-Jordan with partial pivoting)."""
    n = len(matrix)
    a = [list(map(float, row)) + [1.0 if i == j else 0.0 for j in range(n)] for i, row in enumerate(matrix)]
    scale = max((abs(v) for row in matrix for v in row), default=0.0)
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if not abs(a[pivot][col]) > scale * 1e-15:
            raise SingularMatrix(f"singular matrix (column {col})")
        a[col], a[pivot] = a[pivot], a[col]
        p = a[col][col]
        a[col] = [v / p for v in a[col]]
        for r in range(n):
            if r != col and a[r][col] != 0.0:
                f = a[r][col]
                a[r] = [v - f * w for v, w in zip(a[r], a[col])]
    return [row[n:] for row in a]


def propagate(gradient: Sequence[float], covariance: Matrix) -> float:
    """1-sigma error of a function of the parameters, from its gradient (first order)."""
    var = sum(g_i * c_ij * g_j for g_i, row in zip(gradient, covariance) for c_ij, g_j in zip(row, gradient))
    return math.sqrt(var) if var > 0 else 0.0


@dataclass
class LsqResult:
    params: Vector
    #: inverse of the weighted normal matrix, zero rows/columns for fixed parameters
    covariance: Matrix
    chi2: float
    dof: int
    iterations: int
    converged: bool
    model: Vector

    @property
    def chi2_reduced(self) -> float:
        return self.chi2 / self.dof if self.dof > 0 else math.nan

    def errors(self, scale: float = 1.0) -> Vector:
        return [math.sqrt(max(self.covariance[i][i], 0.0) * scale) for i in range(len(self.params))]


def _chi2(y: Sequence[float], w: Sequence[float], f: Sequence[float]) -> Tuple[float, Vector]:
    r = [yi - fi for yi, fi in zip(y, f)]
    return sum(map(mul, map(mul, r, r), w)), r


def _clip(params: Vector, bounds: Optional[Sequence[Tuple[Optional[float], Optional[float]]]]) -> Vector:
    if not bounds:
        return params
    out = []
    for p, (lo, hi) in zip(params, bounds):
        if lo is not None and p < lo:
            p = lo
        if hi is not None and p > hi:
            p = hi
        out.append(p)
    return out


def levenberg_marquardt(model: Model, params: Sequence[float], x: Sequence[float], y: Sequence[float],
                        weights: Sequence[float], *, fixed: Sequence[int] = (),
                        bounds: Optional[Sequence[Tuple[Optional[float], Optional[float]]]] = None,
                        max_iterations: int = 200, tolerance: float = 1e-10) -> LsqResult:
    """Minimise sum(weights * (y - model)^2) over the parameters not in `fixed`,
    keeping each within its (low, high) bounds (None: open). Converged when an
    accepted step changes chi2 by less than `tolerance` relative, or when no step can
    lower it any more (the minimum, to floating-point precision)."""
    p = [float(v) for v in params]
    free = [i for i in range(len(p)) if i not in set(fixed)]
    f, jac = model(p, x)
    chi2, r = _chi2(y, weights, f)
    lam = 1e-3
    converged = False
    iterations = 0
    alpha: Matrix = []
    for iterations in range(1, max_iterations + 1):
        wj = {i: list(map(mul, jac[i], weights)) for i in free}
        alpha = [[sum(map(mul, wj[i], jac[j])) for j in free] for i in free]
        beta = [sum(map(mul, wj[i], r)) for i in free]
        improved = False
        while lam < 1e12:
            damped = [[a * (1.0 + lam) if k == m else a for m, a in enumerate(row)] for k, row in enumerate(alpha)]
            try:
                inv = invert(damped)
            except SingularMatrix:
                lam *= 10.0
                continue
            step = [sum(map(mul, row, beta)) for row in inv]
            trial = list(p)
            for i, s in zip(free, step):
                trial[i] += s
            trial = _clip(trial, bounds)
            f_new, jac_new = model(trial, x)
            chi2_new, r_new = _chi2(y, weights, f_new)
            if chi2_new <= chi2:
                change = chi2 - chi2_new
                p, f, jac, r = trial, f_new, jac_new, r_new
                old, chi2 = chi2, chi2_new
                lam = max(lam / 10.0, 1e-12)
                improved = True
                if change <= tolerance * max(old, 1e-300):
                    converged = True
                break
            lam *= 10.0
        if not improved:
            converged = True      # no step lowers chi2: we are at the minimum
        if converged:
            break
    wj = {i: list(map(mul, jac[i], weights)) for i in free}
    alpha = [[sum(map(mul, wj[i], jac[j])) for j in free] for i in free]
    inv = invert(alpha)
    cov = [[0.0] * len(p) for _ in p]
    for a, i in enumerate(free):
        for b, j in enumerate(free):
            cov[i][j] = inv[a][b]
    return LsqResult(p, cov, chi2, len(y) - len(free), iterations, converged, f)


# ---- models -----------------------------------------------------------------------

def gaussian_line(params: Sequence[float], x: Sequence[float]) -> Tuple[Vector, List[Vector]]:
    """c0 + c1*x + amp * exp(-4 ln2 (x - mu)^2 / fwhm^2); params (c0, c1, amp, mu, fwhm).
    x is measured from the point the continuum is referred to."""
    c0, c1, amp, mu, fwhm = params
    k = FOUR_LN2 / (fwhm * fwhm)
    d = [xi - mu for xi in x]
    g = [math.exp(-k * di * di) for di in d]
    ag = [amp * gi for gi in g]
    f = [c0 + c1 * xi + v for xi, v in zip(x, ag)]
    d_mu = [2.0 * k * v * di for v, di in zip(ag, d)]
    d_fwhm = [v * di / fwhm for v, di in zip(d_mu, d)]
    return f, [[1.0] * len(x), list(x), g, d_mu, d_fwhm]


def pseudo_voigt_line(params: Sequence[float], x: Sequence[float]) -> Tuple[Vector, List[Vector]]:
    """c0 + c1*x + amp * (eta * L + (1 - eta) * G), G and L a Gaussian and a Lorentzian
    of unit peak and the same FWHM (Thompson, Cox & Hastings 1987); params
    (c0, c1, amp, mu, fwhm, eta)."""
    c0, c1, amp, mu, fwhm, eta = params
    k = FOUR_LN2 / (fwhm * fwhm)
    q = 4.0 / (fwhm * fwhm)
    d = [xi - mu for xi in x]
    g = [math.exp(-k * di * di) for di in d]
    lor = [1.0 / (1.0 + q * di * di) for di in d]
    shape = [eta * li + (1.0 - eta) * gi for li, gi in zip(lor, g)]
    f = [c0 + c1 * xi + amp * s for xi, s in zip(x, shape)]
    # d/dd of G = -2 k d G ; of L = -2 q d L^2 ; d/dmu = -d/dd ; d/dfwhm = -(d/fwhm) d/dd
    slope = [amp * (eta * 2.0 * q * di * li * li + (1.0 - eta) * 2.0 * k * di * gi) for di, li, gi in zip(d, lor, g)]
    d_fwhm = [s * di / fwhm for s, di in zip(slope, d)]
    d_eta = [amp * (li - gi) for li, gi in zip(lor, g)]
    return f, [[1.0] * len(x), list(x), shape, slope, d_fwhm, d_eta]
