#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# The tree keeps the shape docs/ARCHITECTURE.md describes (issue 13):
#  - no C source file over 900 lines; no function of the cloudlet program
#    (synth/cli/) over 80 lines;
#  - the program and the public headers name no libvirt header or type
#    (the program calls the VM layer's API);
#  - no command calls another: cl_cmd_* is called nowhere (main.c's table
#    names them without calling them) and the libraries never name one;
#  - no fuzz target includes a .c file (they link the libraries);
#  - every source file (C, shell, Python, CMake, the mount helper) carries
#    an SPDX-License-Identifier: GPL-2.0-only line in its first lines;
#  - every file path and every function() that docs/ARCHITECTURE.md names
#    in backquotes exists;
#  - every script that README.md or docs/*.md give as a command (in a code
#    block, a path where a command starts; in backquotes, a path followed
#    by arguments or after VAR=value words, or any tests/bench/ script) is
#    executable in git (mode 100755), so that the command works as written
#    in a clean clone.
# Each rule is also checked against a planted violation, so that a check
# that cannot fail is itself a failure.
set -u
SRC=${CL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CHECK=$(mktemp /tmp/cl-layout.XXXXXX.py)
trap 'rm -rf "$CHECK" "${PLANT:-}"' EXIT

cat >"$CHECK" <<'EOF'
import os, re, subprocess, sys

root = sys.argv[1]
errors = []

def sources(exts, names=()):
    out = subprocess.run(["git", "-C", root, "ls-files"], capture_output=True, text=True)
    files = out.stdout.split() if out.returncode == 0 else []
    if not files:  # not a git checkout: walk the tree
        for d, _, fs in os.walk(root):
            if "/." in d or "/build" in d:
                continue
            files += [os.path.relpath(os.path.join(d, f), root) for f in fs]
    return sorted(f for f in files if f.endswith(exts) or os.path.basename(f) in names)

def read(f):
    with open(os.path.join(root, f), errors="replace") as fh:
        return fh.read().split("\n")

# Function bodies: clang-format puts a definition's braces in column 0.
def functions(lines):
    start = None
    for i, l in enumerate(lines):
        if l == "{":
            start = i
        elif l == "}" and start is not None:
            head = " ".join(lines[max(0, start - 3):start])
            m = re.findall(r"(\w+)\s*\(", head)
            yield (m[0] if m else "?"), start + 1, i - start - 1
            start = None

for f in sources((".c", ".h")):
    lines = read(f)
    if len(lines) - 1 > 900:
        errors.append("%s: %d lines (at most 900)" % (f, len(lines) - 1))
    if f.startswith("synth/cli/"):
        for name, at, n in functions(lines):
            if n > 80:
                errors.append("%s:%d: %s() is %d lines (at most 80 in the program)"
                              % (f, at, name, n))
    if f.startswith(("synth/cli/", "include/")):
        for i, l in enumerate(lines):
            code = re.sub(r"/\*.*?\*/|//.*", "", l)
            if re.match(r"\s*\*", l):
                continue
            if re.match(r'\s*#\s*include\s*[<"]libvirt/', code) or \
               re.search(r"\bvir[A-Z]\w*\b", code):
                errors.append("%s:%d: libvirt in the program or a public header" % (f, i + 1))
    if f.startswith("synth/"):
        for i, l in enumerate(lines):
            if re.search(r"\bcl_cmd_\w+\(", l) and not re.match(r"int cl_cmd_\w+\(", l):
                errors.append("%s:%d: a command is called: %s" % (f, i + 1, l.strip()))
            if not f.startswith("synth/cli/") and "cl_cmd_" in l:
                errors.append("%s:%d: a library names a command" % (f, i + 1))
    if f.startswith("tests/fuzz/"):
        for i, l in enumerate(lines):
            if re.match(r'\s*#\s*include\s*[<"][^>"]*\.c[>"]', l):
                errors.append("%s:%d: a fuzz target includes a .c file" % (f, i + 1))

for f in sources((".c", ".h", ".sh", ".py", ".txt", ".cloudletfs", ".ci/run"),
                 ("CMakeLists.txt", "run")):
    if f.endswith(".txt") and not f.endswith("CMakeLists.txt"):
        continue
    if not any("SPDX-License-Identifier: GPL-2.0-only" in l for l in read(f)[:3]):
        errors.append("%s: no SPDX-License-Identifier: GPL-2.0-only line" % f)

arch = os.path.join(root, "docs/ARCHITECTURE.md")
if not os.path.exists(arch):
    errors.append("docs/ARCHITECTURE.md is missing")
else:
    text = open(arch).read()
    tree = "\n".join("\n".join(read(f)) for f in sources((".c", ".h")))
    names = {os.path.basename(f) for f in sources(("",))}
    tops = {f.split("/")[0] for f in sources(("",)) if "/" in f}
    for tok in re.findall(r"`([^`\n]+)`", text):
        # A path in the tree (its first folder is one of the tree's), or a
        # file named alone (found by its name anywhere in the tree).
        if re.fullmatch(r"[\w.-]+/[\w./-]*", tok) and tok.split("/")[0] in tops:
            if not os.path.exists(os.path.join(root, tok)):
                errors.append("docs/ARCHITECTURE.md names %s, which does not exist" % tok)
        elif re.fullmatch(r"[\w-]+\.(c|h|sh|py|md)", tok):
            if tok not in names:
                errors.append("docs/ARCHITECTURE.md names %s, which does not exist" % tok)
        elif re.fullmatch(r"\w+\(\)", tok):
            name = tok[:-2]
            if not re.search(r"^\w[^;=]*\b%s\(" % re.escape(name), tree, re.M) and \
               not re.search(r"#define %s\(" % re.escape(name), tree):
                errors.append("docs/ARCHITECTURE.md names %s, which is defined nowhere" % tok)

docs = [os.path.join(root, "README.md")]
if os.path.isdir(os.path.join(root, "docs")):
    docs += sorted(os.path.join(root, "docs", d) for d in os.listdir(os.path.join(root, "docs"))
                   if d.endswith(".md"))
out = subprocess.run(["git", "-C", root, "ls-files", "-s"], capture_output=True, text=True)
modes = {l.split("\t")[1]: l.split()[0] for l in out.stdout.splitlines()} \
    if out.returncode == 0 else {}
CMD = r"(?:^|\$\(|&&|;|\|)\s*(?:\w+=\S*\s+)*(?:\./)?((?:\.ci|tests)/[\w./-]+)"

def commands(text):
    """The script paths a document gives as commands."""
    fence = False
    for line in text.split("\n"):
        if line.startswith("```"):
            fence = not fence
        elif fence:
            yield from re.findall(CMD, line)
        else:
            for tok in re.findall(r"`([^`\n]+)`", line):
                m = re.match(r"(?:\w+=\S*\s+)*(?:\./)?((?:\.ci|tests)/[\w./-]+)( \S)?", tok)
                if m and (m.group(2) or "=" in tok.split()[0] or
                          m.group(1).startswith("tests/bench/")):
                    yield m.group(1)

for doc in docs:
    if not os.path.exists(doc):
        continue
    for rel in sorted(set(commands(open(doc).read()))):
        p = os.path.join(root, rel)
        if not os.path.isfile(p):
            continue
        with open(p, "rb") as fh:
            script = fh.read(2) == b"#!"
        mode_ok = modes.get(rel) == "100755" if modes else os.access(p, os.X_OK)
        if script and not mode_ok:
            errors.append("%s gives %s as a command, which is not executable"
                          % (os.path.relpath(doc, root), rel))

for e in errors:
    print("layout: " + e)
sys.exit(1 if errors else 0)
EOF

python3 "$CHECK" "$SRC" || exit 1

# The rules must be able to fail: plant one violation of each in a copy.
PLANT=$(mktemp -d /tmp/cl-layout-plant.XXXXXX)
mkdir -p "$PLANT/synth/cli" "$PLANT/tests/fuzz" "$PLANT/docs"
{
	echo '/* SPDX-License-Identifier: GPL-2.0-only */'
	echo '#include <libvirt/libvirt.h>'
	echo 'int f(void)'
	echo '{'
	echo '	virDomainPtr d = 0;'
	echo '	cl_cmd_base(0, 0);'
	for i in $(seq 79); do echo "	g($i);"; done
	echo '}'
	for i in $(seq 820); do echo "/* $i */"; done
} >"$PLANT/synth/cli/big.c"
printf '#include "x.c"\n' >"$PLANT/tests/fuzz/f.c"
mkdir -p "$PLANT/synth/vm"
printf '/* SPDX-License-Identifier: GPL-2.0-only */\nint g(void) { return h(cl_cmd_mount); }\n' >"$PLANT/synth/vm/v.c"
printf 'See `synth/none.c`, `gone.c` and `no_such_function()`.\n' >"$PLANT/docs/ARCHITECTURE.md"
mkdir -p "$PLANT/tests/bench"
for s in tests/bench/b.sh tests/c.sh tests/d.sh tests/e.sh; do
	printf '#!/bin/bash\n# SPDX-License-Identifier: GPL-2.0-only\n' >"$PLANT/$s"
	chmod 644 "$PLANT/$s"
done
printf 'Run `tests/bench/b.sh -r 3 build`, `X=1 tests/c.sh`; see `tests/e.sh`.\n```sh\ncd x && tests/d.sh\n```\n' \
	>"$PLANT/README.md"
out=$(python3 "$CHECK" "$PLANT")
fail=0
for want in "big.c: 9" "f() is 81 lines" "big.c:2: libvirt in the program" \
	"big.c:5: libvirt in the program" "a command is called: cl_cmd_base" \
	"v.c:2: a library names a command" \
	"fuzz target includes a .c" "f.c: no SPDX" "synth/none.c, which does not" \
	"gone.c, which does not" \
	"no_such_function(), which is defined nowhere" \
	"README.md gives tests/bench/b.sh as a command, which is not executable" \
	"README.md gives tests/c.sh as a command" "README.md gives tests/d.sh as a command"; do
	grep -qF "$want" <<<"$out" || { echo "layout: the check misses a planted violation: $want"; fail=1; }
done
# A path only mentioned (no arguments, not a bench script) is no command.
grep -qF "tests/e.sh" <<<"$out" && { echo "layout: a mentioned script was taken as a command"; fail=1; }
[ $fail = 0 ] && echo "layout: ok"
exit $fail
