"""Measure one spectral line in a window of a 1-D spectrum: centre, FWHM, flux and
equivalent width, each with its error, as an astronomer at the telescope asks of a
fresh spectrum (IRAF splot's 'k' and 'e' keys).

The model is a linear continuum plus a Gaussian, or a pseudo-Voigt (a Gaussian and a
Lorentzian of the same FWHM mixed by eta) for lines with wings; the fit is
Levenberg-Marquardt (lsq.py), weighted by the spectrum's variance. Errors come from
the covariance; when there is no usable variance, a constant one is estimated from
the residuals (the covariance is scaled by the reduced chi2), so errors are still
honest for a spectrum without its VAR extension.

An absorption line takes a fraction of the continuum beneath it, so it is fitted as
continuum * (1 + a * profile), a < 0; an emission line adds to it, continuum + amp *
profile. Fitting an absorption line additively on a sloped continuum moves its centre
by about slope/continuum * sigma^2 (0.08 A for a white dwarf's H-alpha, sigma 14 A,
on a blue continuum); which form applies is decided by the sign of the line in the
initial guess.

The equivalent width follows IRAF: EW = -flux / continuum, positive for absorption.
Everything that keeps a line from being measured raises LineFitError with a sentence
for the user: the API shows it as it is.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .jsonfloat import json_float, json_floats
from .lsq import GAUSS_AREA, LORENTZ_AREA, SingularMatrix, gaussian_line, levenberg_marquardt, propagate, \
    pseudo_voigt_line

SPEED_OF_LIGHT_KM_S = 299792.458
MODELS = ("gaussian", "voigt")
#: a line is there when its amplitude is at least this many sigma from zero
MIN_SIGNIFICANCE = 2.0
CURVE_POINTS = 200
C0, C1, AMP, MU, FWHM, ETA = range(6)


class LineFitError(ValueError):
    """No line could be measured in the window; the message says why, for people."""


@dataclass
class LineFit:
    kind: str                      #: "absorption" (amplitude < 0) or "emission"
    model: str                     #: "gaussian" or "voigt"
    centre: float
    centre_error: float
    fwhm: float
    fwhm_error: float
    amplitude: float               #: peak height above (negative: below) the continuum
    amplitude_error: float
    flux: float                    #: integrated line flux, negative for absorption
    flux_error: float
    equivalent_width: float        #: -flux / continuum, in x units; positive for absorption
    equivalent_width_error: float
    continuum: float               #: the continuum at the centre
    continuum_error: float
    slope: float                   #: of the continuum, per x unit
    slope_error: float
    eta: Optional[float]           #: the Lorentzian fraction (voigt only)
    eta_error: Optional[float]
    chi2_reduced: Optional[float]  #: None when the variance was estimated (it is 1 by construction)
    n_points: int
    converged: bool
    variance_estimated: bool       #: True when no usable variance was given
    estimated_variance: Optional[float]   #: that constant variance (residuals' chi2 / dof); else None
    curve: Dict[str, List[float]] = field(default_factory=dict)   #: the model over the window: x, y
    continuum_model: str = "added"  #: "multiplied" (absorption: continuum * (1 + a*profile)) or "added"

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready: floats rounded, NaN and infinities as None."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = json_float(value)
        out["curve"] = {k: json_floats(v) for k, v in self.curve.items()}
        return out


def _finite(value: Optional[float]) -> bool:
    """A number that is not NaN nor infinite (None: a value missing, as the API's JSON has it)."""
    return value is not None and math.isfinite(value)


def _window_points(x: Sequence[float], y: Sequence[float], variance: Optional[Sequence[float]],
                   window: Optional[Tuple[float, float]]) -> Tuple[List[float], List[float], Optional[List[float]]]:
    """The finite points inside the window, sorted by x, and their variances (None when
    any of them is missing, non-finite or not positive: then one constant variance is
    estimated for all, rather than fitting a subset the caller did not choose)."""
    if variance is not None and len(variance) != len(y):
        raise LineFitError(f"the variance has {len(variance)} values for {len(y)} flux values")
    if len(x) != len(y):
        raise LineFitError(f"the spectrum has {len(x)} x values for {len(y)} flux values")
    finite_x = [float(v) for v in x if _finite(v)]
    if not finite_x:
        raise LineFitError("the spectrum has no finite x values")
    lo, hi = (min(finite_x), max(finite_x)) if window is None else sorted(map(float, window))
    if hi < min(finite_x) or lo > max(finite_x):
        raise LineFitError(f"the window {lo:g}..{hi:g} is outside the spectrum, "
                           f"which covers {min(finite_x):g}..{max(finite_x):g}")
    points = []
    for i, (xi, yi) in enumerate(zip(x, y)):
        if _finite(xi) and _finite(yi) and lo <= xi <= hi:
            vi = variance[i] if variance is not None and _finite(variance[i]) else math.nan
            points.append((float(xi), float(yi), float(vi)))    # numpy scalars are slow in loops
    points.sort()
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    vs = [p[2] for p in points]
    usable = variance is not None and all(v > 0 for v in vs)     # NaN > 0 is False
    return xs, ys, (vs if usable else None)


def initial_guess(x: Sequence[float], y: Sequence[float]) -> List[float]:
    """(c0, c1, amp, mu, fwhm) from the data, x measured from the window's centre: the
    continuum through the medians of the window's edges, the centre at the extreme of
    the continuum-subtracted data (smoothed over 3 points), the FWHM from where it
    crosses half of that extreme."""
    n = len(x)
    edge = max(2, n // 10)
    xl, yl = median(x[:edge]), median(y[:edge])
    xr, yr = median(x[-edge:]), median(y[-edge:])
    c1 = (yr - yl) / (xr - xl) if xr != xl else 0.0
    c0 = yl - c1 * xl
    resid = [yi - (c0 + c1 * xi) for xi, yi in zip(x, y)]
    smooth = [sum(resid[max(0, i - 1):i + 2]) / len(resid[max(0, i - 1):i + 2]) for i in range(n)]
    top = max(range(n), key=lambda i: smooth[i])
    bottom = min(range(n), key=lambda i: smooth[i])
    peak = top if abs(smooth[top]) >= abs(smooth[bottom]) else bottom
    amp = smooth[peak]
    half = amp / 2.0

    def crossing(step: int) -> float:
        i = peak
        while 0 <= i + step < n and abs(smooth[i + step]) > abs(half):
            i += step
        j = i + step
        if not 0 <= j < n:
            return x[i]
        a, b = smooth[i] - half, smooth[j] - half
        return x[i] + (x[j] - x[i]) * (a / (a - b) if a != b else 0.5)

    dx = (x[-1] - x[0]) / max(n - 1, 1)
    fwhm = abs(crossing(1) - crossing(-1))
    fwhm = min(max(fwhm, 2.0 * dx), 0.8 * (x[-1] - x[0]))
    return [c0, c1, amp, x[peak], fwhm]


def _times_continuum(line_model):
    """The additive line model `line_model` (c0, c1, amp, mu, fwhm[, eta]) as
    (c0 + c1*x) * (1 + a * profile): params (c0, c1, a, mu, fwhm[, eta])."""
    def model(params: Sequence[float], x: Sequence[float]):
        c0, c1, a = params[0], params[1], params[2]
        shape, jac = line_model([0.0, 0.0, 1.0] + list(params[3:]), x)
        cont = [c0 + c1 * xi for xi in x]
        factor = [1.0 + a * s for s in shape]
        f = [c * k for c, k in zip(cont, factor)]
        columns = [factor, [xi * k for xi, k in zip(x, factor)], [c * s for c, s in zip(cont, shape)]]
        columns += [[c * a * d for c, d in zip(cont, column)] for column in jac[3:]]
        return f, columns
    return model


def fit_line(x: Sequence[float], y: Sequence[float], variance: Optional[Sequence[float]] = None,
             window: Optional[Tuple[float, float]] = None, model: str = "gaussian") -> LineFit:
    """Fit one line in `window` (x units, both ends included; the whole spectrum when
    None). Points with a non-finite x or y are skipped. Raises LineFitError."""
    if model not in MODELS:
        raise LineFitError(f"unknown line model {model!r}: use one of {', '.join(MODELS)}")
    xs, ys, vs = _window_points(x, y, variance, window)
    n_params = 5 if model == "gaussian" else 6
    if len(xs) < max(5, n_params + 1):
        raise LineFitError(f"the window holds {len(xs)} finite points; a {model} fit needs at least "
                           f"{max(5, n_params + 1)}: widen the window")
    x_ref = 0.5 * (xs[0] + xs[-1])
    u = [xi - x_ref for xi in xs]
    weights = [1.0 / v for v in vs] if vs is not None else [1.0] * len(xs)
    start = initial_guess(u, ys)
    span = u[-1] - u[0]
    dx = span / (len(u) - 1)
    bounds = [(None, None), (None, None), (None, None), (u[0], u[-1]), (0.2 * dx, 2.0 * span)]
    fn = gaussian_line
    if model == "voigt":
        start.append(0.5)
        bounds.append((0.0, 1.0))
        fn = pseudo_voigt_line
    guess_continuum = start[C0] + start[C1] * start[MU]
    multiplied = start[AMP] < 0 and guess_continuum > 0
    if multiplied:
        start[AMP] /= guess_continuum
        bounds[AMP] = (-1.0, None)      # no line takes more than all the light
        fn = _times_continuum(fn)
    try:
        result = levenberg_marquardt(fn, start, u, ys, weights, bounds=bounds)
    except SingularMatrix:
        raise LineFitError("no line: the fit is degenerate (the data do not constrain a line here)") from None
    if not result.converged:
        raise LineFitError(f"no line: the fit did not converge in {result.iterations} iterations")
    p = result.params
    scale = result.chi2_reduced if vs is None else 1.0
    if not math.isfinite(scale) or scale <= 0:
        scale = 1.0
    cov = [[c * scale for c in row] for row in result.covariance]
    err = [math.sqrt(max(cov[i][i], 0.0)) for i in range(len(p))]
    if not err[AMP] > 0 or abs(p[AMP]) / err[AMP] < MIN_SIGNIFICANCE:
        raise LineFitError(f"no line: the fitted amplitude {p[AMP]:.4g} ± {err[AMP]:.3g} is not significant "
                           f"(less than {MIN_SIGNIFICANCE:g} sigma)")
    if p[MU] <= u[0] or p[MU] >= u[-1]:
        raise LineFitError("no line: the fitted centre ran to the edge of the window; centre the window on the line")
    if p[FWHM] >= bounds[FWHM][1]:
        raise LineFitError("no line: the fitted line is wider than the window; widen the window")

    eta = p[ETA] if model == "voigt" else 0.0
    area = (1.0 - eta) * GAUSS_AREA + eta * LORENTZ_AREA
    continuum = p[C0] + p[C1] * p[MU]
    grad_cont = [0.0] * len(p)
    grad_cont[C0], grad_cont[C1], grad_cont[MU] = 1.0, p[MU], p[C1]
    # the line's peak height above (below) the continuum, and its gradient
    if multiplied:
        amplitude = p[AMP] * continuum
        grad_amp = [p[AMP] * g for g in grad_cont]
        grad_amp[AMP] = continuum
    else:
        amplitude = p[AMP]
        grad_amp = [0.0] * len(p)
        grad_amp[AMP] = 1.0
    flux = amplitude * p[FWHM] * area
    grad_flux = [g * p[FWHM] * area for g in grad_amp]
    grad_flux[FWHM] += amplitude * area
    if model == "voigt":
        grad_flux[ETA] += amplitude * p[FWHM] * (LORENTZ_AREA - GAUSS_AREA)
    if continuum != 0:
        ew = -flux / continuum
        grad_ew = [-gf / continuum + flux * gc / continuum ** 2 for gf, gc in zip(grad_flux, grad_cont)]
        ew_error = propagate(grad_ew, cov)
    else:
        ew, ew_error = math.nan, math.nan

    u_curve = [u[0] + span * i / (CURVE_POINTS - 1) for i in range(CURVE_POINTS)]
    y_curve, _ = fn(p, u_curve)
    return LineFit(
        kind="absorption" if p[AMP] < 0 else "emission", model=model,
        centre=p[MU] + x_ref, centre_error=err[MU], fwhm=p[FWHM], fwhm_error=err[FWHM],
        amplitude=amplitude, amplitude_error=propagate(grad_amp, cov), flux=flux, flux_error=propagate(grad_flux, cov),
        equivalent_width=ew, equivalent_width_error=ew_error,
        continuum=continuum, continuum_error=propagate(grad_cont, cov), slope=p[C1], slope_error=err[C1],
        eta=p[ETA] if model == "voigt" else None, eta_error=err[ETA] if model == "voigt" else None,
        chi2_reduced=result.chi2_reduced if vs is not None else None, n_points=len(xs),
        converged=result.converged, variance_estimated=vs is None,
        estimated_variance=scale if vs is None else None,
        curve={"x": [v + x_ref for v in u_curve], "y": y_curve},
        continuum_model="multiplied" if multiplied else "added",
    )


def redshift(centre: float, centre_error: float, rest: float) -> Tuple[float, float, float]:
    """(z, its error, the velocity c*z in km/s) of a line observed at `centre` whose
    rest wavelength is `rest` (same units)."""
    if not rest > 0:
        raise LineFitError(f"the rest wavelength must be positive, not {rest!r}")
    z = centre / rest - 1.0
    return z, abs(centre_error) / rest, z * SPEED_OF_LIGHT_KM_S


def fit_spectrum(x: Sequence[Optional[float]], flux: Sequence[Optional[float]],
                 variance: Optional[Sequence[Optional[float]]], window: Tuple[float, float],
                 model: str = "gaussian", rest_wavelength: Optional[float] = None) -> Dict[str, Any]:
    """fit_line as the API answers it: the JSON-ready fit (None for missing values is
    accepted in x, flux and variance, and skipped), with, given the line's rest
    wavelength in x's unit, its redshift, redshift_error and velocity (c*z, km/s) and
    velocity_error. Raises LineFitError."""
    fit = fit_line(x, flux, variance, window, model)
    out = fit.to_dict()
    out.update(rest_wavelength=None, redshift=None, redshift_error=None, velocity=None, velocity_error=None)
    if rest_wavelength is not None:
        z, z_error, velocity = redshift(fit.centre, fit.centre_error, rest_wavelength)
        out.update(rest_wavelength=json_float(rest_wavelength), redshift=json_float(z),
                   redshift_error=json_float(z_error), velocity=json_float(velocity),
                   velocity_error=json_float(z_error * SPEED_OF_LIGHT_KM_S))
    return out
