#!/usr/bin/env python3
"""The module dependency picture of the crate, and a check that it has no cycle.

Reads every .rs file under src/, maps it to its module path (src/cache/drain.rs -> cache::drain),
collects the crate modules each one names (`use crate::...`, `crate::x::y` in code, `super::`),
and prints the graph between capabilities (the top-level modules) as Graphviz DOT or as text.
Exits 1 when the capability graph, or the graph between the files of one capability, has a cycle.

    scripts/module_graph.py            # text listing + cycle check
    scripts/module_graph.py --dot      # Graphviz DOT on stdout
    scripts/module_graph.py --markdown # docs/architecture.md: the folders and a mermaid picture
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"


def module_of(path: pathlib.Path) -> tuple:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return tuple(parts)


def strip_comments_and_strings(text: str) -> str:
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def expand_use_tree(prefix: list, tree: str, out: list):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (only the paths matter, not the names)."""
    tree = tree.strip()
    if not tree:
        return
    if "{" in tree and tree.endswith("}"):
        brace = tree.index("{")
        head = tree[:brace].rstrip(":").strip()
        inner = tree[brace + 1:-1]
        base = prefix + [p for p in head.split("::") if p]
        items, depth, start = [], 0, 0
        for i, ch in enumerate(inner):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                items.append(inner[start:i])
                start = i + 1
        items.append(inner[start:])
        for item in items:
            expand_use_tree(base, item, out)
        return
    tree = re.sub(r"\s+as\s+\w+$", "", tree)
    out.append(prefix + [p for p in tree.split("::") if p])


def resolve(current: tuple, path: list) -> tuple:
    """A path starting with crate/super/self, seen from module `current` -> the absolute module
    path (maybe ending in an item). A mod.rs is its folder's module, so `super` is the same step
    from a mod.rs as from a file."""
    if path[0] == "crate":
        return tuple(path[1:])
    base, rest = list(current), path
    while rest and rest[0] in ("super", "self"):
        if rest[0] == "super":
            base = base[:-1]
        rest = rest[1:]
    return tuple(base + rest)


def collect():
    modules = {}
    for path in sorted(SRC.rglob("*.rs")):
        modules[module_of(path)] = path
    edges = {}
    for mod, path in modules.items():
        text = strip_comments_and_strings(path.read_text())
        targets = []
        for m in re.finditer(r"\buse\s+((?:crate|super|self)\b[^;]*);", text):
            out = []
            expand_use_tree([], m.group(1), out)
            targets.extend(out)
        for m in re.finditer(r"\b((?:crate|super)(?:::\w+)+)", text):
            targets.append(m.group(1).split("::"))
        deps = set()
        for t in targets:
            absolute = resolve(mod, t)
            # the longest known module that prefixes the path
            for n in range(len(absolute), 0, -1):
                if absolute[:n] in modules and absolute[:n] != mod:
                    deps.add(absolute[:n])
                    break
        edges[mod] = deps
    return modules, edges


def find_cycle(nodes, edges):
    colour = {n: 0 for n in nodes}
    stack = []

    def visit(n):
        colour[n] = 1
        stack.append(n)
        for d in sorted(edges.get(n, ())):
            if d not in colour:
                continue
            if colour[d] == 1:
                return stack[stack.index(d):] + [d]
            if colour[d] == 0:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        colour[n] = 2
        return None

    for n in sorted(nodes):
        if colour[n] == 0:
            found = visit(n)
            if found:
                return found
    return None


def capability(mod):
    return mod[0] if mod else "lib"


def first_doc_line(path: pathlib.Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("//!"):
            break
        text = line[3:].strip()
        if not text:
            break
        lines.append(text)
    return " ".join(lines)


def print_edges(caps, cap_edges, line):
    for a in caps:
        for b in sorted(cap_edges.get(a, ())):
            print(line.format(a=a, b=b))


def print_markdown(modules, caps, cap_edges):
    print("# Architecture: the modules of src/ and what uses what")
    print()
    print("Made by `scripts/module_graph.py --markdown > docs/architecture.md`; `make test` fails")
    print("when the graph has a cycle (between capabilities, or between the files of one folder).")
    print("An arrow `a --> b` means that code in `a` uses `b`. `lib.rs` only declares the modules and")
    print("calls their `init` from `_PG_init`.")
    print()
    print("```mermaid")
    print("graph LR")
    print_edges(caps, cap_edges, "  {a} --> {b}")
    print("```")
    print()
    print("| module | what it owns |")
    print("|---|---|")
    for mod in sorted(m for m in modules if m):
        if len(mod) > 2:
            continue
        name = "::".join(mod)
        print(f"| `{name}` | {first_doc_line(modules[mod])} |")


def main():
    modules, edges = collect()
    cap_edges = {}
    for mod, deps in edges.items():
        if not mod:
            continue  # lib.rs only declares modules and calls their init
        for d in deps:
            a, b = capability(mod), capability(d)
            if a != b:
                cap_edges.setdefault(a, set()).add(b)
    caps = sorted({capability(m) for m in modules if m})
    if "--markdown" in sys.argv:
        print_markdown(modules, caps, cap_edges)
    elif "--dot" in sys.argv:
        print("// made by scripts/module_graph.py --dot; an edge a -> b: a uses b")
        print("digraph pg_runbook {\n  rankdir=LR;\n  node [shape=box, fontname=\"sans\"];")
        print_edges(caps, cap_edges, '  "{a}" -> "{b}";')
        print("}")
    else:
        for a in caps:
            print(f"{a}: {', '.join(sorted(cap_edges.get(a, ()))) or '-'}")
    failures = []
    cycle = find_cycle(caps, cap_edges)
    if cycle:
        failures.append("capabilities: " + " -> ".join(cycle))
    for cap in caps:
        inner = [m for m in modules if m and m[0] == cap]
        inner_edges = {m: {d for d in edges[m] if d in inner and not (len(d) < len(m) and m[:len(d)] == d)} for m in inner}
        cycle = find_cycle(inner, inner_edges)
        if cycle:
            failures.append(f"inside {cap}: " + " -> ".join("::".join(c) for c in cycle))
    for f in failures:
        print("CYCLE " + f, file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
