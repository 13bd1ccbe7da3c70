#!/usr/bin/env python3
"""Derives the vendor's response types from the Watcher admin API reference.

Our own OpenAPI document once agreed with our responses while both disagreed with the
vendor's generated clients (a float where the vendor types an integer percent), so the judge
of the facade's response shapes is the reference markdown, not our document. This reads the
field trees of the reference's collection envelopes and schemas (sections 6 and 7) and the
success response of each seed operation (section 4), plus the newer operations' table and
compact schemas (section 10; an operation's response is the schema its purpose names), and
writes, per schema, each member's
JSON type(s), whether it is required, and its nested members or the schema it links to.

    scripts/reference-types.py [REFERENCE.md] > tests/fixtures/reference-types.json
    scripts/reference-types.py --members [REFERENCE.md] > src/api/reference-members.json

With `--members` it writes only the member names of the same trees (per schema: member ->
null, a linked schema's name, or its nested members; arrays are transparent) and each
operation's response schema: the facade's own copy, which it uses to refuse a request-body
member that appears nowhere in the reference (a typo) at any depth. Both files come from
this one script; tests/api_compat/typos.rs checks the copy against the fixture.

tests/api_compat/types.rs compares the served OpenAPI document with this file and checks live
responses against it; a test there fails when this file is stale against the reference.
Python 3 standard library only.
"""

import json
import re
import sys

DEFAULT = "../shared/reference/watcher-admin-api.md"

MEMBER = re.compile(r"^(?P<indent>\s*)- `(?P<name>[^`]+)`: (?P<rest>.*)$")
ANCHOR = re.compile(r'^<a id="(?P<id>s-[a-z0-9_-]+)"></a>\s*$')
HEADING = re.compile(r"^#{3,4} (?P<name>[A-Za-z0-9]+)\s*$")
OPERATION = re.compile(r"^### 4\.\d+ `(?P<id>[a-z_]+)` — (?P<method>[A-Z]+) `(?P<path>[^`]+)`")
NEWER_OP = re.compile(r"^\| `(?P<id>[a-z_]+)` \| (?P<method>[A-Z]+) \| `(?P<path>[^`]+)` \| (?P<purpose>.*) \|\s*$")
COMPACT = re.compile(r"^\* \*\*(?P<name>[A-Za-z0-9]+)\*\* — (?P<members>.*)$")
# Section 7.9: "SDK names `Agent` / `WatcherAgentConfig`".
SDK_ALIASES = {"WatcherAgentConfig": "Agent"}
LINK = re.compile(r"\(#(s-[a-z0-9_-]+)\)")
SCALARS = ("integer", "number", "string", "boolean", "object", "array", "any")


def scalar(word):
    """The JSON type of one type word of the reference (`map<...>` is an object)."""
    word = word.strip()
    if word.startswith("map<"):
        return "object"
    head = word.split()[0] if word else "any"
    return head if head in SCALARS else "any"


def parse_type(text):
    """`integer (utc_ms)`, `array of object → [X](#s-x)`, `integer or string (port…)`, …"""
    ref = LINK.search(text)
    plain = text.split("→")[0]
    plain = re.sub(r"\(.*", "", plain)  # formats and notes in parentheses
    plain = plain.split(" enum")[0].strip()
    if plain.startswith("map<"):
        # Stripped from the types file; the member names need it: any key, members per value.
        node = {"type": ["object"], "map": True}
        if ref:
            node["ref"] = ref.group(1)
        return node
    if plain.startswith("array of "):
        inner = plain[len("array of "):]
        item = {"type": sorted({scalar(w) for w in inner.split(" or ")})}
        if ref:
            item["ref"] = ref.group(1)
        return {"type": ["array"], "items": item}
    node = {"type": sorted({scalar(w) for w in plain.split(" or ")})}
    if ref:
        node["ref"] = ref.group(1)
    return node


def member(rest):
    """Splits a member line's text after the name into its type node and flags."""
    head = rest.split(" — ")[0]
    parts = [p.strip() for p in head.split(" · ")]
    node = parse_type(parts[0])
    flags = parts[1:]
    node["required"] = any("**required**" in f for f in flags)
    if any(f in ("RO", "RO*") for f in flags):
        node["read_only"] = True
    return node


def parse(text):
    schemas = {}  # anchor id -> {"name", "members"}
    operations = {}
    anchor = None
    current = None  # members dict of the schema being read
    stack = []  # (indent, node) of open parents
    op = None
    in_responses = False
    for line in text.splitlines():
        m = ANCHOR.match(line)
        if m:
            anchor = m.group("id")
            continue
        m = OPERATION.match(line)
        if m:
            op = {"method": m.group("method"), "path": m.group("path"), "response": None}
            operations[m.group("id")] = op
            in_responses = False
            current = None
            continue
        if line.startswith("#"):
            h = HEADING.match(line)
            if h and anchor:
                current = {}
                schemas[anchor] = {"name": h.group("name"), "members": current}
                stack = []
            else:
                current = None
            anchor = None
            if not line.startswith("### 4."):
                op = None
            continue
        if op is not None:
            if line.startswith("**Responses**"):
                in_responses = True
            elif line.startswith("**") and not line.startswith("**Responses**"):
                in_responses = False
            elif in_responses and op["response"] is None and re.match(r"^\* (`2\d\d`|Success )", line):
                link = LINK.search(line)
                op["response"] = link.group(1) if link else None
            continue
        if current is None:
            continue
        m = MEMBER.match(line)
        if not m:
            continue
        indent = len(m.group("indent"))
        node = member(m.group("rest"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stack:
            parent = stack[-1][1]
            target = parent["items"] if "array" in parent["type"] and "items" in parent else parent
            target.setdefault("members", {})[m.group("name")] = node
        else:
            current[m.group("name")] = node
        stack.append((indent, node))
    newer_ops, newer_schemas = parse_newer(text)
    # Links name anchors; the file names schemas.
    names = {a: s["name"] for a, s in schemas.items()}

    def rename(node):
        if "ref" in node:
            node["ref"] = names.get(node["ref"], node["ref"])
        for child in node.get("members", {}).values():
            rename(child)
        if "items" in node:
            rename(node["items"])

    for s in schemas.values():
        for child in s["members"].values():
            rename(child)
    all_schemas = {s["name"]: s["members"] for s in schemas.values()}
    for name, members in newer_schemas.items():
        for child in members.values():
            rename(child)
        all_schemas.setdefault(name, members)
    ops = {
        k: {
            "method": v["method"],
            "path": v["path"],
            "response": names.get(v["response"]) if v["response"] else None,
        }
        for k, v in operations.items()
    }
    for k, v in newer_ops.items():
        named = v.pop("named")
        v["response"] = next((n for n in named if n in all_schemas), None)
        ops.setdefault(k, v)
    return {
        "source": "watcher-admin-api.md sections 4, 6, 7, 10 (scripts/reference-types.py)",
        "operations": ops,
        "schemas": all_schemas,
    }


def parse_newer(text):
    """Section 10: the operations table and the compact schema list."""
    body = text.split("## 10. ", 1)[1] if "## 10. " in text else ""
    ops, schemas = {}, {}
    for line in body.splitlines():
        m = NEWER_OP.match(line)
        if m:
            purpose = m.group("purpose")
            named = re.findall(r"→ `([A-Za-z]+)`", purpose)
            named += re.findall(r"\(`([A-Z][A-Za-z]+)`", purpose)
            named += [SDK_ALIASES.get(n, n) for n in re.findall(r"SDK type ([A-Za-z]+)", purpose)]
            ops[m.group("id")] = {"method": m.group("method"), "path": m.group("path"), "named": named}
            continue
        m = COMPACT.match(line)
        if not m:
            continue
        members = {}
        for part in m.group("members").split("; "):
            name = re.match(r"\s*`([^`]+)`\s*(.*)$", part)
            if not name:
                continue
            rest = name.group(2)
            required = "(required)" in rest
            node = parse_type(rest.replace("(required)", "").strip())
            node["required"] = required
            members[name.group(1)] = node
        schemas[m.group("name")] = members
    return ops, schemas


def names_only(node):
    """A type node reduced to what a member check needs: nested members, a linked schema's
    name, or null (nothing known below it); a map's values under the key `*`."""
    if "items" in node:
        return names_only(node["items"])
    if node.get("map"):
        inner = {k: v for k, v in node.items() if k != "map"}
        value = names_only(inner)
        return {"*": value} if value is not None else None
    if "members" in node:
        return {k: names_only(v) for k, v in node["members"].items()}
    return node.get("ref")


def strip_maps(tree):
    """Drops the map marker, which only the member names use."""
    if isinstance(tree, dict):
        if tree.get("map") is True:
            del tree["map"]
        for v in tree.values():
            strip_maps(v)


def members(out):
    return {
        "source": out["source"] + " --members",
        "operations": {k: v["response"] for k, v in out["operations"].items() if v["response"]},
        "schemas": {
            name: {k: names_only(v) for k, v in ms.items()} for name, ms in out["schemas"].items()
        },
    }


def main():
    args = sys.argv[1:]
    only_members = "--members" in args
    args = [a for a in args if a != "--members"]
    path = args[0] if args else DEFAULT
    with open(path, encoding="utf-8") as f:
        out = parse(f.read())
    if only_members:
        out = members(out)
    else:
        strip_maps(out["schemas"])
    json.dump(out, sys.stdout, indent=1, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
