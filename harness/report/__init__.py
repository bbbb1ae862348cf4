"""The report stage: statistics (stats), tables (tables), figures (figures), assembly (build).

`build_report(run_dir, out_dir, test)` and `build_summary_report(summary_file, out_dir, test)` are the
two entry points the CLI calls.
"""

from harness.report.build import build_report, build_summary_report

__all__ = ["build_report", "build_summary_report"]
