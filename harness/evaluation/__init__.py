"""Post-processing, metrics (sed_eval-exact event/segment F1, PSDS with sed_scores_eval), bootstrap
intervals within a run, and prediction files."""
