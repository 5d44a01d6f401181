#!/usr/bin/env python3
"""Every `unsafe` in src/ says why it is sound: a check.

A line whose code (not a comment, not a string) contains the word `unsafe` -- an unsafe block,
`unsafe fn`, `unsafe impl`, `unsafe extern`, `#[unsafe(no_mangle)]` -- passes when `SAFETY:` is
  - in a comment on that same line, or
  - in the comment block directly above that line, or
  - in the comment block directly above the first line of the statement the line belongs to
    (an `unsafe` inside a multi-line statement: the comment above the statement's first line).
A comment block is the run of comment lines right above a line (no blank line in between); the
attribute lines of an item (`#[pg_guard]`, `#[unsafe(no_mangle)]`) are looked through, so one comment
above the attributes covers them and the item. For an `unsafe fn` or `unsafe trait`, a `# Safety`
section in its doc comment (rustdoc's convention for what callers must ensure) also counts.

    scripts/check_unsafe.py               # lists every offender as file:line, exits 1 if any
    scripts/check_unsafe.py --summary     # counts per folder instead of the list (same exit status)
    scripts/check_unsafe.py src/lint      # only these files or folders
    scripts/check_unsafe.py --self-test   # the rules above on small examples
"""
import pathlib
import re
import signal
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
UNSAFE = re.compile(r"\bunsafe\b")
SAFETY = "SAFETY:"
SAFETY_DOC = re.compile(r"^\s*//[/!]\s*#+\s*Safety\b")


def split_lines(text: str):
    """Per source line, (code, comment): the code with comments removed and the contents of string
    and character literals replaced by `x`, and the text of the comments on that line."""
    code, comment = [], []
    out = [[], []]  # code chars, comment chars of the current line
    i, n = 0, len(text)
    block_depth = 0  # nesting of /* */
    in_line_comment = False
    string_end = None  # the closing delimiter of the string we are in (`"` or `"##`)

    def newline():
        code.append("".join(out[0]))
        comment.append("".join(out[1]))
        out[0].clear()
        out[1].clear()

    while i < n:
        c = text[i]
        if c == "\n":
            in_line_comment = False
            newline()
            i += 1
            continue
        if in_line_comment:
            out[1].append(c)
            i += 1
            continue
        if block_depth:
            if text.startswith("*/", i):
                block_depth -= 1
                i += 2
            elif text.startswith("/*", i):
                block_depth += 1
                i += 2
            else:
                out[1].append(c)
                i += 1
            continue
        if string_end is not None:
            if string_end == '"' and c == "\\" and i + 1 < n and text[i + 1] != "\n":
                out[0].append("xx")
                i += 2
            elif text.startswith(string_end, i):
                out[0].append(string_end)
                i += len(string_end)
                string_end = None
            else:
                out[0].append("x")
                i += 1
            continue
        if text.startswith("//", i):
            in_line_comment = True
            out[1].append("//")
            i += 2
            continue
        if text.startswith("/*", i):
            block_depth = 1
            i += 2
            continue
        raw = re.match(r'b?r(#*)"', text[i:])
        if raw and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            out[0].append(raw.group(0))
            string_end = '"' + raw.group(1)
            i += raw.end()
            continue
        if c == '"':
            out[0].append(c)
            string_end = '"'
            i += 1
            continue
        if c == "'":
            # A character literal ('a', '\n', '\u{1F}') or a lifetime ('a, 'static).
            lit = re.match(r"'(\\(u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'", text[i:])
            if lit:
                out[0].append("'x'")
                i += lit.end()
                continue
        out[0].append(c)
        i += 1
    newline()
    return code, comment


def attribute_lines(code):
    """The indexes of lines that belong to an attribute (`#[...]`, possibly over several lines)."""
    attrs = set()
    depth = 0
    for k, line in enumerate(code):
        s = line.strip()
        if depth == 0 and not (s.startswith("#[") or s.startswith("#![")):
            continue
        attrs.add(k)
        for ch in s:
            if ch == "[":
                depth += 1
            elif ch == "]":
                depth -= 1
        depth = max(depth, 0)
    return attrs


def comment_block_above(k, code, comment, attrs):
    """The comment text of the block directly above line k (attributes looked through)."""
    texts = []
    j = k - 1
    while j >= 0:
        if j in attrs:
            texts.append(comment[j])
        elif not code[j].strip() and comment[j].strip():
            texts.append(comment[j])
        else:
            break
        j -= 1
    return texts


def opener_line(k, code):
    """The line of the bracket that the first character of line k closes (`} else if`, `}).map(`)."""
    depth = 1
    for j in range(k - 1, -1, -1):
        for ch in reversed(code[j]):
            if ch in ")]}":
                depth += 1
            elif ch in "([{":
                depth -= 1
                if depth == 0:
                    return j
    return k


def statement_start(k, code, comment, attrs):
    """The first line of the statement line k belongs to: walk up while the previous code line does
    not end a statement (`;`), open or close a block (`{`, `}`), or is an attribute. A line that
    starts by closing a bracket (`} else if`, `}).map(`) continues the statement that opened it."""
    while True:
        if code[k].lstrip()[:1] in (")", "]", "}"):
            opener = opener_line(k, code)
            if opener != k:
                k = opener
                continue
        j = k - 1
        while j >= 0 and not code[j].strip() and j not in attrs:
            j -= 1  # comment or blank lines inside the statement
        if j < 0 or j in attrs:
            return k
        if code[j].rstrip().endswith((";", "{", "}")):
            return k
        k = j


def documented(k, code, comment, attrs):
    if SAFETY in comment[k]:
        return True
    is_item = re.search(r"\bunsafe\s+(fn|trait)\b|\bunsafe\s+extern\b[^{]*\bfn\b", code[k])
    starts = {k, statement_start(k, code, comment, attrs)}
    for start in starts:
        block = comment_block_above(start, code, comment, attrs)
        if any(SAFETY in t for t in block):
            return True
        if is_item and any(SAFETY_DOC.match(t) for t in block):
            return True
    return False


def check_text(text: str):
    """(number of lines with unsafe, [(line number, line) of the undocumented ones])."""
    code, comment = split_lines(text)
    attrs = attribute_lines(code)
    raw_lines = text.split("\n")
    total, bad = 0, []
    for k, line in enumerate(code):
        if not UNSAFE.search(line):
            continue
        total += 1
        if not documented(k, code, comment, attrs):
            bad.append((k + 1, raw_lines[k].strip()))
    return total, bad


def check(path: pathlib.Path):
    return check_text(path.read_text())


# (source, line numbers that must be reported)
EXAMPLES = [
    ("// SAFETY: p is valid.\nlet x = unsafe { *p };\n", []),
    ("let x = unsafe { *p }; // SAFETY: p is valid.\n", []),
    ("let x = unsafe { *p };\n", [1]),
    ("// SAFETY: p is valid.\n\nlet x = unsafe { *p };\n", [3]),  # a blank line ends the block
    ("// why, but not the word\nlet x = unsafe { *p };\n", [2]),
    # a multi-line statement: the comment above its first line
    ("// SAFETY: p is valid.\nlet x = foo(\n    a,\n    unsafe { *p },\n);\n", []),
    ("let x = foo(\n    a,\n    // SAFETY: p is valid.\n    unsafe { *p },\n);\n", []),
    ("let x = foo(\n    a,\n    unsafe { *p },\n);\n", [3]),
    # the comment of the previous statement does not count
    ("// SAFETY: p is valid.\nlet y = 1;\nlet x = unsafe { *p };\n", [3]),
    # inside the block is too late
    ("let x = unsafe {\n    // SAFETY: p is valid.\n    *p\n};\n", [1]),
    # `} else if` belongs to the `if`
    ("// SAFETY: p is valid.\nif unsafe { *p } {\n    a();\n} else if unsafe { *p } {\n}\n", []),
    # attributes are looked through; one comment covers the attribute and the item
    ("// SAFETY: the name is unique.\n#[pg_guard]\n#[unsafe(no_mangle)]\n"
     "pub unsafe extern \"C-unwind\" fn f() {}\n", []),
    ("#[unsafe(no_mangle)]\nextern \"C\" fn f() {}\n", [1]),
    ("/// Reads p.\n///\n/// # Safety\n/// p must be valid.\nunsafe fn f(p: *const u8) {}\n", []),
    ("/// # Safety\n/// p must be valid.\nlet x = unsafe { *p };\n", [3]),  # only for items
    ("unsafe impl Send for T {}\n", [1]),
    ("// SAFETY: T holds no pointer.\nunsafe impl Send for T {}\n", []),
    ("// SAFETY: a C library.\nunsafe extern \"C\" {\n    fn f();\n}\n", []),
    # the word in strings, comments and longer names is not code
    ('let s = "unsafe";\n// unsafe\n/* unsafe */\n#[pg_extern(parallel_unsafe)]\n', []),
    ('let s = r#"a "quoted" unsafe"#;\nlet c = \'"\';\nlet x = unsafe { *p };\n', [3]),
    ("fn f<'a>(x: &'a u8) { let y = unsafe { *p }; }\n", [1]),
]


def self_test():
    failed = 0
    for source, expected in EXAMPLES:
        got = [line for line, _ in check_text(source)[1]]
        if got != expected:
            failed += 1
            print(f"expected {expected}, got {got} for:\n{source}")
    print(f"{len(EXAMPLES) - failed} of {len(EXAMPLES)} examples right", file=sys.stderr)
    return 1 if failed else 0


def folder_of(rel: pathlib.Path) -> str:
    parts = rel.parts
    return "/".join(parts[:2]) + "/" if len(parts) > 2 else str(rel)


def main(argv):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if "--self-test" in argv:
        return self_test()
    summary = "--summary" in argv
    targets = [a for a in argv if not a.startswith("--")] or ["src"]
    files = []
    for t in targets:
        p = (pathlib.Path.cwd() / t).resolve()
        files.extend(sorted(p.rglob("*.rs")) if p.is_dir() else [p])
    per_folder = {}
    offenders = 0
    for f in files:
        rel = f.relative_to(ROOT) if f.is_relative_to(ROOT) else f
        total, bad = check(f)
        offenders += len(bad)
        if total:
            t, b = per_folder.get(folder_of(rel), (0, 0))
            per_folder[folder_of(rel)] = (t + total, b + len(bad))
        if not summary:
            for line_no, line in bad:
                print(f"{rel}:{line_no}: unsafe without a SAFETY: comment: {line}")
    if summary:
        print(f"{'folder or file':<28} {'unsafe':>7} {'no SAFETY:':>11}")
        for folder in sorted(per_folder):
            t, b = per_folder[folder]
            print(f"{folder:<28} {t:>7} {b:>11}")
        all_t = sum(t for t, _ in per_folder.values())
        print(f"{'total':<28} {all_t:>7} {offenders:>11}")
    elif offenders:
        print(f"{offenders} unsafe without a SAFETY: comment", file=sys.stderr)
    return 1 if offenders else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
