"""The driver imports no torch: planning, running (local workers train), reporting and `status` stay light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import warm_cache

DRIVER = """
import runpy, sys
sys.argv = ["harness", *sys.argv[1:]]
try:
    runpy.run_module("harness", run_name="__main__")
except SystemExit as e:
    code = e.code
print("TORCH_IN_DRIVER", "torch" in sys.modules, "EXIT", code)
"""


def test_a_run_and_its_report_import_no_torch_in_the_driver(tmp_path: Path, tiny_corpus, tiny_stages):
    (tmp_path / "s.toml").write_text(f'[study]\nname = "light"\nseeds = 1\n\n[[variant]]\nname = "A"\n\n'
                                     f'[data]\nroot = "{tiny_corpus}"\n')
    cache = warm_cache(tiny_stages, tmp_path)
    out = subprocess.run([sys.executable, "-c", DRIVER, "run", str(tmp_path / "s.toml"), "--profile", "tiny", "--runs",
                          str(tmp_path / "runs"), "--cache", str(cache), "--jobs", "1", "--set", "train.steps=2",
                          "--out", str(tmp_path / "report")], capture_output=True, text=True, timeout=600)
    assert "TORCH_IN_DRIVER False EXIT 0" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    assert (tmp_path / "report" / "report.md").is_file()
    # the workers did import it: the environment they describe names torch's CPU kernels
    (run_dir,) = (tmp_path / "runs").iterdir()  # light-tiny-<digest of the --set>
    assert "torch" in (run_dir / "environment.json").read_text()
    status = subprocess.run([sys.executable, "-c", DRIVER, "status", str(run_dir)],
                            capture_output=True, text=True, timeout=120)
    assert "TORCH_IN_DRIVER False EXIT 0" in status.stdout and "1 done" in status.stdout
