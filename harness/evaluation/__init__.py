"""Post-processing, metrics (sed_eval-exact event/segment F1) and prediction files."""
