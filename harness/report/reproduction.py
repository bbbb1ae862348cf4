"""The paper's Table 4 against the demo's runs (`python -m harness reproduce-table`; docs/reproduction.md).

Every number is read from committed report tables, none recomputed: the published t and the paper's own
decision at alpha = 0.05 from the summary report of ablations/published/paper_validation.toml
(reports/paper-published/tables/table4_summary.csv), and per profile the runs' t, p and Holm p
(tables/table4_val_f1.csv) and convergence counts (tables/convergence.csv) of each study's report. Rows are
matched by their variant pair (a, b), never by label: labels are free text and differ in spelling.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DataError, not_a_file
from harness.records import atomic_file
from harness.report.tables import DASH, fmt_p

ALPHA = 0.05
ALPHA_TEXT = "0.05"  # as the report tables spell it in their significant_<alpha> columns
PUBLISHED_REPORT = "paper-published"
PUBLISHED_TABLE = Path("tables") / "table4_summary.csv"
RUN_TABLE = Path("tables") / "table4_val_f1.csv"  # the paper's Table 4 is on validation F1
CONVERGENCE_TABLE = Path("tables") / "convergence.csv"
REGENERATE = "python -m harness reproduce-table --out docs/reproduction.md"
PSEUDOLABEL_PAIR = ("EF+SW+EM+CS", "EF+W+EM+CS")  # "Strong + weak vs weak": reverses on the built-in corpus
PSEUDOLABEL_STUDY = "teacher-strength.md"  # linked once it exists beside the page

# Why a row does not reproduce: what failed, behind "budget (...)" when some run had not converged.
BUDGET, OPPOSITE, NOT_SIGNIFICANT, SIGNIFICANT, NOT_TESTABLE = (
    "budget", "opposite direction", "not significant", "significant", "not testable")


@dataclass(frozen=True)
class Profile:
    name: str
    reports: tuple[str, ...]  # report folders under --reports; a missing one is a study not run


# Named, not globbed: a `paper-quick` report would hold the same pairs again as table1-3's.
PROFILES: tuple[Profile, ...] = (
    Profile("quick", ("table1-quick", "table2-quick", "table3-quick")),
    Profile("quick-long", ("table1-quick-long", "table2-quick-long", "table3-quick-long")),
)


@dataclass(frozen=True)
class PublishedRow:
    label: str
    a: str
    b: str
    t_text: str  # as printed in the paper ("6.800")
    t: float
    significant: bool  # the paper's own "significant at alpha = 0.05" (no multiplicity correction)


@dataclass(frozen=True)
class RunRow:
    report: str  # the report folder's name
    a: str
    b: str
    t: float | None  # None: the report could not test it (fewer than 2 runs an arm)
    p: float | None
    p_holm: float | None  # Holm over the comparisons of this report
    converged: tuple[int, int]  # converged runs of a, of b
    runs: tuple[int, int]

    def flipped(self) -> RunRow:
        """The same comparison read as (b, a): t changes sign, p does not."""
        return RunRow(self.report, self.b, self.a, None if self.t is None else -self.t, self.p, self.p_holm,
                      self.converged[::-1], self.runs[::-1])

    @property
    def all_converged(self) -> bool:
        return self.converged == self.runs


@dataclass(frozen=True)
class Verdict:
    reproduces: bool
    reason: str | None  # when it does not: a failure above, or "budget (<failure>)"
    both_not_significant: bool = False  # reproduces a published null


def _rows(path: Path, required: tuple[str, ...], what: str, fix: str) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise not_a_file(path, what, fix)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"{path}: missing columns {missing}; {fix}")
        return header, list(reader)


def _float(raw: str, path: Path, column: str) -> float | None:
    if raw.strip() == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise DataError(f"{path}: column {column!r} holds {raw!r}, not a number") from None


def read_published(path: Path) -> tuple[PublishedRow, ...]:
    """The paper's comparisons from a summary report's table4_summary.csv."""
    fix = "rebuild it with `python -m harness report --summary ablations/published/paper_validation.toml`"
    header, rows = _rows(path, ("comparison", "a", "b", "published_t", "published_decisions"),
                         "the published Table 4", fix)
    alphas = [c.removeprefix("significant_") for c in header if c.startswith("significant_")]
    if ALPHA_TEXT not in alphas:  # published_decisions holds one Y/N per alpha, in these columns' order
        raise DataError(f"{path}: no significant_{ALPHA_TEXT} column to align published_decisions with; {fix}")
    at = alphas.index(ALPHA_TEXT)
    out = []
    for row in rows:
        t, decisions = _float(row["published_t"], path, "published_t"), row["published_decisions"].strip()
        if t is None or len(decisions) != len(alphas):
            raise DataError(f"{path}: comparison {row['comparison']!r} lacks the published t or its decisions; "
                            "give every comparison its t in the summary file")
        out.append(PublishedRow(row["comparison"], row["a"], row["b"], row["published_t"].strip(), t,
                                decisions[at] == "Y"))
    return tuple(out)


def _convergence(path: Path) -> dict[str, tuple[int, int]]:
    """Per variant: (converged runs, runs), as the report counted them."""
    fix = "rebuild the report with `python -m harness report runs/<study>`"
    _, rows = _rows(path, ("Experiment", "n", "converged"), "the convergence table", fix)
    return {r["Experiment"]: (int(r["converged"]), int(r["n"])) for r in rows}


def read_run_report(folder: Path) -> tuple[RunRow, ...]:
    """A study report's Table 4 on validation F1, each row with its arms' convergence counts."""
    path = folder / RUN_TABLE
    _, rows = _rows(path, ("comparison", "a", "b", "t", "p", "p_holm"), "the runs' Table 4",
                    "rebuild the report with `python -m harness report runs/<study>`")
    convergence = _convergence(folder / CONVERGENCE_TABLE)
    out = []
    for row in rows:
        for side in (row["a"], row["b"]):
            if side not in convergence:
                raise DataError(f"{folder / CONVERGENCE_TABLE}: no row for variant {side!r} of Table 4; "
                                "rebuild the report with `python -m harness report runs/<study>`")
        (ca, na), (cb, nb) = convergence[row["a"]], convergence[row["b"]]
        out.append(RunRow(folder.name, row["a"], row["b"], _float(row["t"], path, "t"), _float(row["p"], path, "p"),
                          _float(row["p_holm"], path, "p_holm"), (ca, cb), (na, nb)))
    return tuple(out)


def profile_rows(reports: Path, profile: Profile) -> tuple[dict[tuple[str, str], RunRow], tuple[str, ...]]:
    """The rows of a profile's reports by pair (a, b), and the report folders found."""
    by_pair: dict[tuple[str, str], RunRow] = {}
    found = tuple(name for name in profile.reports if (reports / name).is_dir())
    for name in found:
        for row in read_run_report(reports / name):
            for pair in ((row.a, row.b), (row.b, row.a)):
                if pair in by_pair:
                    raise DataError(f"{reports}: {row.a} vs {row.b} is compared in both {by_pair[pair].report} "
                                    f"and {name} at profile {profile.name}; keep one")
            by_pair[(row.a, row.b)] = row
    return by_pair, found


def match(published: PublishedRow, rows: dict[tuple[str, str], RunRow]) -> RunRow | None:
    """The run row of the published pair, read in the published order (a, b); None: not run."""
    if (published.a, published.b) in rows:
        return rows[(published.a, published.b)]
    reverse = rows.get((published.b, published.a))
    return None if reverse is None else reverse.flipped()


def _sign(t: float) -> int:
    return (t > 0) - (t < 0)


def verdict(published: PublishedRow, run: RunRow) -> Verdict:
    """Does the run reproduce the paper's finding? (docs/reproduction.md, "The rule")."""
    if run.t is None or run.p_holm is None:
        return Verdict(False, NOT_TESTABLE)
    significant = run.p_holm < ALPHA
    same_direction = _sign(run.t) == _sign(published.t)
    if published.significant and same_direction and significant:
        return Verdict(True, None)
    if not published.significant and not significant:
        return Verdict(True, None, both_not_significant=True)
    return Verdict(False, _reason(published, run, same_direction, significant))


def _reason(published: PublishedRow, run: RunRow, same_direction: bool, significant: bool) -> str:
    failed = SIGNIFICANT if not published.significant else (NOT_SIGNIFICANT if same_direction else OPPOSITE)
    # Runs stopped before they converged do not measure what the paper's runs did: the budget comes first,
    # what failed is kept beside it so that a reversal is not hidden behind it.
    return failed if run.all_converged else f"{BUDGET} ({failed})"


def _direction(t: float | None) -> str:
    return DASH if t is None else {1: ">", -1: "<", 0: "="}[_sign(t)]


def _run_cells(published: PublishedRow, run: RunRow | None, note: str) -> list[str]:
    if run is None:
        return [DASH] * 5 + ["not run"]
    v = verdict(published, run)
    converged = f"{'yes' if run.all_converged else 'no'} ({run.converged[0]}/{run.runs[0]}, " \
                f"{run.converged[1]}/{run.runs[1]})"
    said = "yes (both n.s.)" if v.both_not_significant else ("yes" if v.reproduces else f"no: {v.reason}")
    if not v.reproduces and (published.a, published.b) == PSEUDOLABEL_PAIR and run.t is not None \
            and _sign(run.t) != _sign(published.t):
        said += note
    t = DASH if run.t is None else f"{run.t:.2f}"
    return [_direction(run.t), t, fmt_p(run.p), fmt_p(run.p_holm), converged, said]


def _table(published: tuple[PublishedRow, ...], profiles: list[dict[tuple[str, str], RunRow]]) -> list[str]:
    head = ["comparison", "a", "b", "paper dir.", "paper t", f"paper sig. at {ALPHA_TEXT}"]
    align = [":---", ":---", ":---", ":---:", "---:", ":---:"]
    for profile in PROFILES:
        head += [f"{profile.name} {c}" for c in ("dir.", "t", "p", "p (Holm)", "converged", "reproduces?")]
        align += [":---:", "---:", "---:", "---:", ":---", ":---"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for row in published:
        cells = [row.label, row.a, row.b, _direction(row.t), row.t_text, "Y" if row.significant else "N"]
        for rows in profiles:
            cells += _run_cells(row, match(row, rows), "[^pseudolabels]")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _link(target: Path, docs: Path, text: str) -> str:
    return f"[{text}]({Path(os.path.relpath(target, docs)).as_posix()})"


def _sources(reports: Path, docs: Path, found: list[tuple[str, ...]]) -> str:
    parts = []
    for profile, names in zip(PROFILES, found):
        links = ", ".join(_link(reports / n / "report.md", docs, n) for n in names) or "none"
        absent = [n for n in profile.reports if n not in names]
        parts.append(f"{profile.name}: {links}" + (f" ({', '.join(absent)}: not run)" if absent else ""))
    published = _link(reports / PUBLISHED_REPORT / "report.md", docs, PUBLISHED_REPORT)
    return f"Read from the report of the published numbers, {published}, and the study reports of {'; '.join(parts)}."


def _pseudolabel_note(docs: Path) -> str:
    study = (f"the study of teacher strength x pseudolabels, {_link(docs / PSEUDOLABEL_STUDY, docs, PSEUDOLABEL_STUDY)}, "
             f"measures how the sign of this comparison follows the quality of the teacher's pseudolabels"
             if (docs / PSEUDOLABEL_STUDY).is_file()
             else f"the study of teacher strength x pseudolabels (docs/{PSEUDOLABEL_STUDY}) has not been run")
    return (f"[^pseudolabels]: Strong + weak vs weak reverses on the built-in corpus: the student given the teacher's "
            f"weak pseudolabels alone scores above the one given strong and weak ones. The report's pseudolabel "
            f"table scores the teacher's strong pseudolabels against the corpus's true events of the unlabeled clips; "
            f"{study}.")


RULE = f"""## The rule

- Direction: the sign of t, a against b (`>`: a scored higher). The paper's is the sign of its published t.
- The paper's finding: its own Table 4 decision at alpha = {ALPHA_TEXT} (`paper sig. at {ALPHA_TEXT}`), as it
  made it, with no multiplicity correction.
- A run is significant when its Holm-corrected p is below {ALPHA_TEXT}, Holm over the comparisons of its own
  report (its family: that study's comparisons), as the report's `p_holm` column holds it.
- Converged: every run of both variants was judged converged by the report's convergence table (undetermined
  and not converged runs count against); the cell counts converged runs of a, then of b.
- Reproduces, where the paper found a difference (`Y`): the run has the same direction and is significant.
  Where the paper found none (`N`): the run is not significant either (`yes (both n.s.)`, weak evidence with a
  few seeds). A profile whose study report is absent says `not run`."""

REASONS = f"""## The reasons

Where a row does not reproduce, the reason says what failed:

- `{OPPOSITE}`: the paper found a difference and the run goes the other way (significant or not).
- `{NOT_SIGNIFICANT}`: the paper found a difference, the run goes the same way, its Holm p is at or above
  {ALPHA_TEXT}.
- `{SIGNIFICANT}`: the paper found no difference and the run finds one.
- `{NOT_TESTABLE}`: the report has no t (fewer than 2 runs in an arm).

Where some run of a or b had not converged when training ended, the reason reads `{BUDGET} (...)` around what
failed: such runs do not measure what the paper's runs did, so the training budget is the first explanation,
before the statistics."""


def render(reports: Path, docs: Path) -> str:
    """docs/reproduction.md from the report folders under `reports` (links relative to the folder `docs`)."""
    published = read_published(reports / PUBLISHED_REPORT / PUBLISHED_TABLE)
    read = [profile_rows(reports, p) for p in PROFILES]
    table = _table(published, [rows for rows, _ in read])
    note = [_pseudolabel_note(docs)] if any("[^pseudolabels]" in line for line in table[2:]) else []
    intro = ("# What the demo shows, against the paper\n\n"
             f"The paper's {len(published)} Table 4 comparisons (validation F1, 10 runs a configuration) beside the same "
             "comparisons on the built-in synthetic corpus at the quick and quick-long profiles, each with whether it "
             "reproduces the paper's finding. Every number is read from the committed report tables "
             "(`table4_summary.csv`, `table4_val_f1.csv`, `convergence.csv`) and none is recomputed here.")
    regenerate = ("## Regenerate\n\nFrom the repository's root (`tests/test_reproduction.py` fails while this page "
                  f"differs from what it writes):\n\n```bash\n{REGENERATE}\n```")
    body = [intro, _sources(reports, docs, [names for _, names in read]), "\n".join(table), *note, RULE, REASONS,
            regenerate]
    return "\n\n".join(body) + "\n"


def write_reproduction(reports: Path, out: Path | None) -> str:
    """Render the page; write it to `out` (atomically) when given. Returns the page."""
    text = render(Path(reports), Path(out).parent if out is not None else Path("docs"))
    if out is not None:
        with atomic_file(Path(out)) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return text
