#!/usr/bin/env python3
"""tools/lsan_tracer_crashes.py decides which sanitizer-stage failures CI may run again:
only tests whose sole fault is LSan's tracer crash, and only when every failure is one."""
import os
import subprocess
import sys
import tempfile

TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "lsan_tracer_crashes.py")
TRACER = ("Tracer caught signal 11: addr=0xda0 pc=0x7f10efee80f0 sp=0x7f10db8d4d10\n"
          "==21651==LeakSanitizer has encountered a fatal error.\n")


def case(name, status, out):
    failure = '<failure message=""/>' if status == "fail" else ""
    out = out.replace("&", "&amp;").replace("<", "&lt;")
    return f'<testcase name="{name}" classname="{name}" time="1" status="{status}">{failure}<system-out>{out}</system-out></testcase>'


def run(*cases):
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="x" tests="%d">' % len(cases))
        f.write("".join(cases) + "</testsuite>")
    try:
        p = subprocess.run([sys.executable, TOOL, f.name], capture_output=True, text=True)
        return p.returncode, p.stdout.split()
    finally:
        os.unlink(f.name)


checks = [
    ("only tracer crashes: rerun exactly those",
     run(case("cli.golden", "fail", "FAIL  golden bf16\n" + TRACER), case("ok.one", "run", "fine"),
         case("test_x.Y", "fail", TRACER)),
     (0, ["cli.golden", "test_x.Y"])),
    ("a real failure beside a tracer crash: rerun nothing",
     run(case("cli.golden", "fail", TRACER), case("test_x.Y", "fail", "Expected equality of these values")),
     (1, [])),
    ("half the signature (an ordinary segfault in the test) is not the tracer",
     run(case("test_x.Y", "fail", "Tracer caught signal 11\n")), (1, [])),
    ("a leak report is a real failure",
     run(case("test_x.Y", "fail", "==1==ERROR: LeakSanitizer: detected memory leaks\n")), (1, [])),
    ("nothing failed: nothing to rerun", run(case("ok.one", "run", TRACER)), (1, [])),
]
bad = 0
for what, got, want in checks:
    ok = got == want
    bad += not ok
    print(("ok    " if ok else "FAIL  ") + what + ("" if ok else f": got {got}, want {want}"))
p = subprocess.run([sys.executable, TOOL, "/nonexistent/junit.xml"], capture_output=True, text=True)
ok = p.returncode == 2 and "/nonexistent/junit.xml" in p.stderr
bad += not ok
print(("ok    " if ok else "FAIL  ") + "an unreadable file is exit 2 naming the file")
sys.exit(1 if bad else 0)
