#!/usr/bin/env python3
"""Check that the docs hold together and cover the binary.

    python3 scripts/check_docs.py [--tilgang target/debug/tilgang] [--skip-subcommands]

1. Links: every relative link in README.md, ARCHITECTURE.md and docs/**/*.md
   (inline `[text](target)`, images, and `[ref]: target` definitions; not in
   code) resolves to a file or directory in the repository, and every
   `#anchor`, in the same file or another Markdown file, matches a heading
   there by GitHub's slug rules (or an explicit `<a name>`/`id`). An anchor
   into a non-Markdown file may only be a line (`#L10`, `#L10-L20`).
2. Flags (with --tilgang): every long flag `<tilgang> serve --help` lists is
   mentioned as `--flag` somewhere in README.md or docs/.
3. Subcommands (with --tilgang, unless --skip-subcommands): every subcommand
   `<tilgang> --help` lists is mentioned as `tilgang <name>` there too. No
   subcommand is excused.

Prints one line per problem and a closing `docs: N passed, M failed`; exits 1
when anything failed (or the binary cannot be run), 0 otherwise. Standard
library only.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
HTML_ANCHOR = re.compile(r"""<a\s[^>]*?(?:name|id)\s*=\s*["']([^"']+)["']""", re.I)
INLINE_LINK = re.compile(
    r"""!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^\s)]+)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)"""
)
REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>\n]*>|\S+)", re.M)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
LINE_ANCHOR = re.compile(r"^L\d+(-L\d+)?$")
BLANK_LINE_AHEAD = re.compile(r"[ \t]*(\n|$)")
# clap's help: an option line starts with 2 to 6 spaces, then `-x, ` or nothing,
# then the long flag; its description lines are indented further.
OPTION_LINE = re.compile(r"^ {2,6}(?:-[A-Za-z0-9], )?--([A-Za-z0-9][A-Za-z0-9-]*)")
COMMAND_LINE = re.compile(r"^ {2}([a-z][a-z0-9-]*)(?:\s|$)")


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, ok: bool, problem: str) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed.append(problem)

    def fail(self, problem: str) -> None:
        self.failed.append(problem)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def blank_fences(text: str) -> str:
    """The text with fenced code blocks blanked (line numbers kept)."""
    out = []
    fence: str | None = None
    for line in text.split("\n"):
        m = FENCE.match(line)
        if fence is None:
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence = m.group(1)
                out.append("")
                continue
            out.append(line)
        else:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not m.group(2).strip():
                fence = None
            out.append("")
    return "\n".join(out)


def blank_code_spans(text: str) -> str:
    """The text with inline code spans replaced by spaces (newlines kept). A
    span opens with a run of n backticks and closes with the next run of
    exactly n, within one paragraph; an unmatched run is literal."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        if text[i] != "`":
            i += 1
            continue
        j = i
        while j < n and text[j] == "`":
            j += 1
        run = j - i
        k = j
        close = -1
        while k < n:
            if text[k] == "`":
                m = k
                while m < n and text[m] == "`":
                    m += 1
                if m - k == run:
                    close = k
                    break
                k = m
                continue
            if text[k] == "\n" and BLANK_LINE_AHEAD.match(text, k + 1):
                break  # a blank line ends the paragraph, and the search
            k += 1
        if close < 0:
            i = j
            continue
        for p in range(i, close + run):
            if out[p] != "\n":
                out[p] = " "
        i = close + run
    return "".join(out)


def heading_text(raw: str) -> str:
    """What GitHub renders for a heading's inline Markdown, as plain text."""
    t = raw
    t = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", t)  # links and images: their text
    t = re.sub(r"<[^>]+>", "", t)  # inline HTML
    t = re.sub(r"(`+)(.+?)\1", lambda m: m.group(2).strip(), t)  # code spans: their content
    return t


def slug(text: str) -> str:
    """GitHub's heading id: lower case, punctuation and symbols dropped
    (letters, digits, `_`, `-` and spaces stay), each space a `-`."""
    s = text.strip().lower()
    s = "".join(c for c in s if c.isalnum() or c in "_- " or unicode_mark(c))
    return s.replace(" ", "-")


def unicode_mark(c: str) -> bool:
    import unicodedata

    return unicodedata.category(c).startswith("M")


def anchors_of(path: Path, cache: dict[Path, set[str]]) -> set[str]:
    if path in cache:
        return cache[path]
    text = blank_fences(path.read_text(encoding="utf-8"))
    lines = text.split("\n")
    seen: dict[str, int] = {}
    found: set[str] = set()

    def add(raw: str) -> None:
        base = slug(heading_text(raw))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")

    for i, line in enumerate(lines):
        m = ATX.match(line)
        if m:
            add(m.group(2) or "")
            continue
        s = SETEXT.match(line)
        if s and i > 0 and lines[i - 1].strip() and not ATX.match(lines[i - 1]) \
                and not lines[i - 1].lstrip().startswith(("|", "-", "*", "+", ">")) \
                and not SETEXT.match(lines[i - 1]):
            add(lines[i - 1].strip())
    for m in HTML_ANCHOR.finditer(text):
        found.add(m.group(1))
    cache[path] = found
    return found


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "ARCHITECTURE.md"]
    files += sorted((ROOT / "docs").rglob("*.md"))
    return [f for f in files if f.is_file()]


def check_links(report: Report) -> None:
    cache: dict[Path, set[str]] = {}
    for doc in doc_files():
        raw = doc.read_text(encoding="utf-8")
        text = blank_code_spans(blank_fences(raw))
        targets: list[tuple[int, str]] = []
        for m in INLINE_LINK.finditer(text):
            targets.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
        for m in REF_DEF.finditer(text):
            targets.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
        for line, target in targets:
            target = target.strip("<>")
            if not target or SCHEME.match(target) or target.startswith("//"):
                continue
            where = f"{rel(doc)}:{line}"
            path_part, _, anchor = target.partition("#")
            path_part = urllib.parse.unquote(path_part)
            anchor = urllib.parse.unquote(anchor)
            if path_part.startswith("/"):
                dest = (ROOT / path_part.lstrip("/")).resolve()
            elif path_part:
                dest = (doc.parent / path_part).resolve()
            else:
                dest = doc.resolve()
            if dest != ROOT and ROOT not in dest.parents:
                report.fail(f"{where}: link `{target}` leaves the repository")
                continue
            if not dest.exists():
                report.fail(f"{where}: link `{target}`: no such file `{rel(dest)}`")
                continue
            if not anchor:
                report.check(True, "")
                continue
            if dest.is_file() and dest.suffix.lower() in (".md", ".markdown"):
                known = anchors_of(dest, cache)
                if anchor in known:
                    report.check(True, "")
                else:
                    near = [a for a in sorted(known) if anchor.split("-")[0] in a][:3]
                    hint = f" (headings there include: {', '.join('#' + a for a in near)})" if near else ""
                    report.fail(f"{where}: link `{target}`: no heading `#{anchor}` in `{rel(dest)}`{hint}")
            else:
                report.check(bool(LINE_ANCHOR.match(anchor)) and dest.is_file(),
                             f"{where}: link `{target}`: `#{anchor}` is not a line anchor (`#L10`) of a file")


def docs_corpus() -> str:
    parts = [(ROOT / "README.md").read_text(encoding="utf-8")] if (ROOT / "README.md").is_file() else []
    parts += [f.read_text(encoding="utf-8") for f in sorted((ROOT / "docs").rglob("*.md"))]
    return "\n".join(parts)


def run_help(binary: str, args: list[str], report: Report) -> str | None:
    try:
        out = subprocess.run([binary, *args, "--help"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    except (OSError, subprocess.TimeoutExpired) as e:
        report.fail(f"cannot run `{binary} {' '.join(args + ['--help'])}`: {e}")
        return None
    if out.returncode != 0:
        report.fail(f"`{binary} {' '.join(args + ['--help'])}` exited {out.returncode}: {out.stderr.strip()[:200]}")
        return None
    return out.stdout


def check_flags(binary: str, corpus: str, report: Report) -> None:
    help_text = run_help(binary, ["serve"], report)
    if help_text is None:
        return
    flags = sorted({m.group(1) for line in help_text.splitlines() if (m := OPTION_LINE.match(line))})
    if not flags:
        report.fail(f"`{binary} serve --help` lists no long flags (is its format still clap's?)")
        return
    for flag in flags:
        pattern = re.compile(rf"(?<![A-Za-z0-9-])--{re.escape(flag)}(?![A-Za-z0-9-])")
        report.check(bool(pattern.search(corpus)),
                     f"`tilgang serve --{flag}` is not mentioned (as `--{flag}`) in README.md or docs/")


def check_subcommands(binary: str, corpus: str, report: Report) -> None:
    help_text = run_help(binary, [], report)
    if help_text is None:
        return
    names: list[str] = []
    in_commands = False
    for line in help_text.splitlines():
        if re.match(r"^(Commands|Subcommands):\s*$", line):
            in_commands = True
            continue
        if in_commands:
            m = COMMAND_LINE.match(line)
            if m:
                names.append(m.group(1))
            elif line.strip() == "" or not line.startswith(" "):
                if names:
                    break
    names = [n for n in names if n != "help"]
    if not names:
        report.fail(f"`{binary} --help` lists no subcommands (is its format still clap's?)")
        return
    for name in names:
        pattern = re.compile(rf"\btilgang {re.escape(name)}(?![A-Za-z0-9-])")
        report.check(bool(pattern.search(corpus)),
                     f"subcommand `{name}` is not mentioned (as `tilgang {name}`) in README.md or docs/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tilgang", metavar="BIN",
                        help="the tilgang binary whose flags and subcommands the docs must cover")
    parser.add_argument("--skip-subcommands", action="store_true",
                        help="with --tilgang, check only the serve flags")
    args = parser.parse_args()

    report = Report()
    check_links(report)
    if args.tilgang:
        corpus = docs_corpus()
        check_flags(args.tilgang, corpus, report)
        if not args.skip_subcommands:
            check_subcommands(args.tilgang, corpus, report)
    else:
        print("docs: no --tilgang given: links checked; serve flags and subcommands not checked")

    for problem in report.failed:
        print(problem)
    print(f"docs: {report.passed} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
