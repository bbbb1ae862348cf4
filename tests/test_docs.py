"""Every command in README.md and docs/*.md runs, and every relative link resolves (docs/README.md, "Conventions").

- A ```bash block right after a line `<!-- runnable -->` is run with bash (`-e -o pipefail`), in document
  order (README.md, then docs/*.md by name), in one temporary folder shared by all blocks: a reader typing
  them one after the other. The folder holds a link to the repository's ablations/, so the default `runs/` and
  `reports/` land in it; `$HARNESS_CACHE` is a temporary cache. Before running, `--profile quick` and
  `--profile quick-long` become `--profile tiny` and run folders `runs/<study>-quick[-long]` become
  `runs/<study>-tiny`: the tiny profile takes seconds and exercises every stage.
- Every `python -m harness ...` line of every ```bash block, runnable or not (DESED, a cluster, a GPU), is
  parsed by the real argument parser (`harness.cli.build_parser`): its subcommand exists and it accepts
  every flag. Other commands that name a file of the repository (`python benchmarks/x.py`,
  `python -m benchmarks.x`, `bash .ci/x.sh`, `pytest tests/x.py`) must name one that exists.
- Every ```toml block is valid TOML; one with variants (`[[variant]]` or `[grid]`) is a valid ablation file.
- Every relative link and image resolves to a file of the repository, and an anchor to a heading of it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = "<!-- runnable -->"
FENCE = re.compile(r"^(```+|~~~+)\s*([\w-]*)")
BLOCK_TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    runnable: bool

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def _blocks(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2), i
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        previous = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        blocks.append(Block(doc, start + 1, lang, "\n".join(body) + "\n", previous == MARKER))
        i += 1
    return blocks


ALL_BLOCKS = [b for doc in DOCS for b in _blocks(doc)]
RUNNABLE = [b for b in ALL_BLOCKS if b.runnable]
BASH = [b for b in ALL_BLOCKS if b.lang in ("bash", "sh", "shell")]
TOML = [b for b in ALL_BLOCKS if b.lang == "toml"]


def _ids(blocks: list[Block]) -> list[str]:
    return [b.where for b in blocks]


def test_docs_exist_and_markers_precede_bash_blocks():
    assert (ROOT / "docs" / "README.md").is_file(), "docs/README.md is the guides' index"
    assert RUNNABLE, "no runnable block found: the marker is `<!-- runnable -->` on the line before ```bash"
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            if line.strip() == MARKER:
                following = next((x for x in lines[n + 1:] if x.strip()), "")
                assert following.startswith("```bash"), (
                    f"{doc.relative_to(ROOT)}:{n + 1}: {MARKER} must be followed by a ```bash block")


# ---------------------------------------------------------------- commands

def _commands(text: str) -> list[list[str]]:
    """The shell words of each command of a block: continuation lines joined, comments dropped, a heredoc's
    body skipped, split at `;`, `&&`, `||`, `|` and a trailing `&`."""
    joined = re.sub(r"\\\n", " ", text)
    commands, heredoc = [], None
    for line in joined.splitlines():
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        m = re.search(r"<<-?\s*'?\"?(\w+)'?\"?", line)
        if m:
            heredoc = m.group(1)
            line = line[: m.start()]
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for w in words:
            if w in (";", "&&", "||", "|", "&"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(w.rstrip(";&") if w.endswith((";", "&")) and len(w) > 1 else w)
        if current:
            commands.append(current)
    return commands


def _strip_env(words: list[str]) -> list[str]:
    """`VAR=value python ...` -> `python ...`; `timeout 60 python ...` -> `python ...`."""
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words = words[1:]
    if words[:1] == ["timeout"] and len(words) > 2:
        words = words[2:]
    return words


HARNESS_LINES = [(b, words) for b in BASH for words in map(_strip_env, _commands(b.text))
                 if words[:3] == ["python", "-m", "harness"]]


@pytest.mark.parametrize("block, words", HARNESS_LINES, ids=[f"{b.where}:{' '.join(w[3:5])}" for b, w in HARNESS_LINES])
def test_every_harness_command_parses(block: Block, words: list[str]):
    from harness.cli import build_parser

    parser = build_parser()
    try:
        parser.parse_args(words[3:])
    except SystemExit as e:  # argparse exits 2 on an unknown subcommand or flag, 0 on --help
        assert e.code == 0, f"{block.where}: `{shlex.join(words)}` is refused by the argument parser"


def _repo_paths(words: list[str]) -> list[str]:
    """Files of the repository a command names (scripts, modules, test files)."""
    if not words:
        return []
    if words[0] in ("python", "python3"):
        if words[1:2] == ["-m"] and len(words) > 2:
            module = words[2]
            if module == "pytest":
                return [w.split("::")[0] for w in words[3:] if w.startswith("tests/")]
            if module.split(".")[0] in ("benchmarks", "tests"):
                return [module.replace(".", "/") + ".py"]
            return []
        return [w for w in words[1:2] if w.endswith(".py")]
    if words[0] == "bash":
        return [w for w in words[1:2] if w.endswith(".sh") or "/" in w]
    return []


OTHER_LINES = [(b, words) for b in BASH for words in map(_strip_env, _commands(b.text)) if _repo_paths(words)]


@pytest.mark.parametrize("block, words", OTHER_LINES, ids=[f"{b.where}:{w[0]}" for b, w in OTHER_LINES])
def test_commands_name_existing_files(block: Block, words: list[str]):
    for path in _repo_paths(words):
        assert (ROOT / path).exists(), f"{block.where}: `{shlex.join(words)}` names {path}, which does not exist"


@pytest.mark.parametrize("block", TOML, ids=_ids(TOML))
def test_toml_blocks_are_valid(block: Block):
    data = tomllib.loads(block.text)
    if "variant" in data or "grid" in data:
        from harness.study.spec import parse_study

        parse_study(data, Path(f"{block.where}.toml"))


# ---------------------------------------------------------------- runnable blocks

def _for_tiny(text: str) -> str:
    text = re.sub(r"--profile(\s+|=)quick(-long)?\b", r"--profile\1tiny", text)
    return re.sub(r"\b(runs|reports)/([\w.+]+(?:-[\w.+]+)*?)-quick(-long)?\b", r"\1/\2-tiny", text)


@pytest.fixture(scope="module")
def reader(tmp_path_factory) -> dict[str, object]:
    """One folder and one cache for every runnable block, as one reader's session."""
    home = tmp_path_factory.mktemp("reader")
    (home / "ablations").symlink_to(ROOT / "ablations", target_is_directory=True)
    env = dict(os.environ, HARNESS_CACHE=str(home / ".cache"), PYTHONUNBUFFERED="1")
    env.pop("HARNESS_DESED_ROOT", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` is this one
    return {"home": home, "env": env}


def _ensure_study(reader: dict[str, object], script: str) -> None:
    """A block that reads runs/table2-tiny finds it even when run alone (pytest -k): the tour's run first."""
    home = reader["home"]
    assert isinstance(home, Path)
    if "runs/table2-tiny" in script and "harness run ablations/table2.toml" not in script \
            and not (home / "runs" / "table2-tiny" / "results.csv").is_file():
        subprocess.run([sys.executable, "-m", "harness", "-q", "run", "ablations/table2.toml", "--profile", "tiny",
                        "--no-report"], cwd=home, env=reader["env"], check=True, timeout=BLOCK_TIMEOUT_S,
                       capture_output=True)


@pytest.mark.parametrize("block", RUNNABLE, ids=_ids(RUNNABLE))
def test_runnable_block_runs(block: Block, reader: dict[str, object]):
    script = _for_tiny(block.text)
    _ensure_study(reader, script)
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=reader["home"], env=reader["env"],
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    assert done.returncode == 0, (
        f"{block.where}: the block exited {done.returncode}\n--- block (as run)\n{script}\n"
        f"--- stdout (end)\n{done.stdout[-3000:]}\n--- stderr (end)\n{done.stderr[-3000:]}")


# ---------------------------------------------------------------- links

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(doc: Path) -> str:
    """The text outside fenced blocks and inline code."""
    out, inside = [], None
    for line in doc.read_text(encoding="utf-8").splitlines():
        m = FENCE.match(line)
        if m and (inside is None or line.startswith(inside)):
            inside = None if inside else m.group(1)
            continue
        if inside is None:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in _prose(doc).splitlines():
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = _slug(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


LINKS = [(doc, target) for doc in DOCS for target in LINK.findall(_prose(doc))
         if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


@pytest.mark.parametrize("doc, target", LINKS, ids=[f"{d.relative_to(ROOT)}->{t}" for d, t in LINKS])
def test_relative_links_resolve(doc: Path, target: str):
    path, _, anchor = target.partition("#")
    file = (doc.parent / path).resolve() if path else doc
    assert file.exists(), f"{doc.relative_to(ROOT)}: link {target} -> {file} does not exist"
    assert ROOT in file.parents or file == ROOT, f"{doc.relative_to(ROOT)}: link {target} leaves the repository"
    if anchor and file.suffix == ".md":
        assert anchor in _anchors(file), (f"{doc.relative_to(ROOT)}: link {target}: no heading #{anchor} in "
                                          f"{file.relative_to(ROOT)} (headings: {sorted(_anchors(file))})")
