#!/usr/bin/env python3
"""README's commands, extracted so that CI and the tests run them exactly as written.

``python3 .ci/readme_commands.py NAME`` prints the command of the code block README marks with
``<!-- ci: NAME -->`` (install-and-run, test, optional-extras). :func:`bench_commands` lists every
``bench ...`` command README shows (code blocks and inline code), for tests/test_readme_commands.py.
Standard library only: CI runs it before anything is installed.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = re.compile(r"^<!-- ci: ([a-z-]+) -->$")


def _code_blocks(text: str) -> list[tuple[str | None, list[str]]]:
    """Indented code blocks as (marker name or None, commands): continuation lines joined,
    ``# comments`` dropped."""
    out: list[tuple[str | None, list[str]]] = []
    lines = text.splitlines()
    i, marker = 0, None
    while i < len(lines):
        m = MARKER.match(lines[i].strip())
        if m:
            marker = m.group(1)
            i += 1
            continue
        if lines[i].startswith("    ") and lines[i].strip() and (i == 0 or not lines[i - 1].strip() or marker):
            block = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                block.append(lines[i][4:])
                i += 1
            cmds, cur = [], ""
            for line in block:
                line = _strip_comment(line).rstrip()
                if line.endswith("\\"):
                    cur += line[:-1].strip() + " "
                    continue
                cur += line.strip()
                if cur:
                    cmds.append(cur)
                cur = ""
            out.append((marker, cmds))
            marker = None
            continue
        if lines[i].strip():
            marker = None  # a marker names the code block right after it (blank lines aside)
        i += 1
    return out


def _strip_comment(line: str) -> str:
    """``cmd   # comment`` -> ``cmd`` (a # inside quotes stays)."""
    quote = None
    for j, ch in enumerate(line):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote == ch else ch
        elif ch == "#" and quote is None and (j == 0 or line[j - 1].isspace()):
            return line[:j]
    return line


def marked(name: str, text: str | None = None) -> str:
    """The command README marks ``<!-- ci: name -->`` (its block must hold one command)."""
    text = README.read_text(encoding="utf-8") if text is None else text
    found = [cmds for m, cmds in _code_blocks(text) if m == name]
    if len(found) != 1 or len(found[0]) != 1:
        raise SystemExit(f"README.md: expected one command under <!-- ci: {name} -->, found {found}")
    return found[0][0]


def split_commands(line: str) -> list[str]:
    """``a && b ; c`` -> [a, b, c] (outside quotes)."""
    parts, cur, quote = [], "", None
    i = 0
    while i < len(line):
        ch = line[i]
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote == ch else ch
        if quote is None and (line.startswith("&&", i) or ch == ";"):
            parts.append(cur.strip())
            cur = ""
            i += 2 if ch == "&" else 1
            continue
        cur += ch
        i += 1
    parts.append(cur.strip())
    return [p for p in parts if p]


def bench_commands(text: str | None = None) -> list[str]:
    """Every ``bench ...`` command README shows, in order, once each."""
    text = README.read_text(encoding="utf-8") if text is None else text
    found = []
    for _, cmds in _code_blocks(text):
        for line in cmds:
            found += [c for c in split_commands(line) if c.split()[0] == "bench"]
    found += re.findall(r"`(bench [^`]+)`", text)
    return list(dict.fromkeys(found))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: readme_commands.py NAME  (install-and-run, test, optional-extras)")
    print(marked(sys.argv[1]))
