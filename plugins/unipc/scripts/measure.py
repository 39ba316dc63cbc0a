"""Print the numbers docs/unipc.md quotes: convergence slopes on the exact Gaussian oracle and the
largest differences to diffusers' UniPCMultistepScheduler, with the tests' own setup.

    .venv/bin/python plugins/unipc/scripts/measure.py
"""

import importlib.util
import pathlib
import warnings

warnings.filterwarnings("ignore", message="__array__ implementation")  # numpy 2 on diffusers' set_timesteps

_path = pathlib.Path(__file__).resolve().parents[1] / "tests" / "test_unipc.py"
_spec = importlib.util.spec_from_file_location("test_unipc", _path)
t = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(t)

print(f"order of convergence: steps {t.CONVERGENCE_STEPS}, log-SNR-uniform from t = 1 to {t.T_MIN}, "
      f"data N({t.MU.tolist()}, {t.S}²), max |x̂₀ − exact|")
for options, expected in t.ORDERS:
    for variant in ("bh1", "bh2"):
        slope, errors = t.convergence_slope(options, variant)
        print(f"  {str(options):45s} {variant}  slope {slope:.2f} (expected {expected:.0f})  "
              f"errors {' '.join(f'{e:.2e}' for e in errors)}")

print("max |difftk − diffusers| over every step before the last / at the output (float64, T = 1000 linear):")
SETTINGS = [("eps", "linspace"), ("eps", "leading"), ("eps", "trailing"), ("v", "linspace"), ("x0", "linspace")]
for order in (2, 3):
    for variant in ("bh1", "bh2"):
        for prediction, spacing in SETTINGS:
            rows = [t.max_difference_to_diffusers(steps, spacing, order, variant, prediction) for steps in (5, 10, 25, 50)]
            inner, final = max(r[0] for r in rows), max(r[1] for r in rows)
            print(f"  order {order} {variant} {prediction:3s} {spacing:8s} steps 5,10,25,50: {inner:.1e} / {final:.1e}")
