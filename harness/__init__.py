"""harness: statistically sound ablation studies of knowledge distillation for sound event detection."""

import warnings

__version__ = "0.1.0"

# sed_eval imports dcase_util, which imports pkg_resources (setuptools < 81 is pinned for it): its
# deprecation notice says nothing a user can act on, and every job worker printed it into the study's output.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
