#!/usr/bin/env python3
"""Runs pgspot over the extension's install script and fails on any finding not justified in
tests/security/pgspot-exceptions.txt.

pgspot cannot parse SQL-standard function bodies (BEGIN ATOMIC ... END): it stops at the first
one. They are linted all the same: each is handed to pgspot as the string body it is equivalent
to (AS $lint$ ... $lint$), so its statements are checked like any other function's.

usage: pgspot_lint.py INSTALL_SCRIPT EXCEPTIONS_FILE
"""
import re
import subprocess
import sys
import tempfile


def as_string_bodies(script: str) -> str:
    """BEGIN ATOMIC <statements> END; -> AS $lint$ <statements> $lint$;"""
    return re.sub(r"^BEGIN ATOMIC\n(.*?)^END;", r"AS $lint$\n\1$lint$;", script,
                  flags=re.MULTILINE | re.DOTALL)


def findings(script: str) -> list:
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as f:
        f.write(as_string_bodies(script).replace("@extschema@", "extschema"))
        f.flush()
        out = subprocess.run([sys.executable, "-m", "pgspot", "--ignore-lang", "c", f.name],
                             capture_output=True, text=True)
    text = out.stdout + out.stderr
    if "Errors:" not in text or re.search(r"^\s*(list index|Traceback|Error parsing)", text, re.M):
        sys.exit("pgspot did not lint the whole script:\n" + text)
    # "PS001: Unqualified operator: '>' in keep > ... at line 40" -> without the line number,
    # which moves whenever the script changes.
    return [re.sub(r" at line \d+$", "", line) for line in text.splitlines()
            if re.match(r"^PS\d{3}:", line)]


def justified(path: str) -> set:
    entries = set()
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("PS"):
            entries.add(line)
    return entries


def main():
    script, exceptions = sys.argv[1], sys.argv[2]
    found = findings(open(script).read())
    allowed = justified(exceptions)
    new = sorted(set(f for f in found if f not in allowed))
    stale = sorted(allowed - set(found))
    print(f"pgspot: {len(found)} findings, {len(found) - sum(f in new for f in found)} justified in {exceptions}")
    for f in stale:
        print(f"  (no longer found, remove from the list: {f})")
    if new:
        print("findings with no justification:")
        for f in new:
            print("  " + f)
        sys.exit(1)


if __name__ == "__main__":
    main()
