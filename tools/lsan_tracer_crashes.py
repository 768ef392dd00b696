#!/usr/bin/env python3
"""Which failed ctest tests failed only because LeakSanitizer's own tracer crashed.

LSan stops the world at process exit with a tracer thread; that thread now and then
dies of a segfault of its own ("Tracer caught signal 11 ... LeakSanitizer has
encountered a fatal error"), a known intermittent fault of the sanitizer runtime
(google/sanitizers#1353), not a leak and not a fault of the program under test.

Usage: lsan_tracer_crashes.py JUNIT.xml  (ctest --output-junit)
Prints the failed tests' names, one a line, and exits 0 when every failed test shows
that signature, so a caller may run exactly those again once; exits 1 when some
failure is anything else (or nothing failed): then nothing should be rerun.
"""
import sys
import xml.etree.ElementTree as ET

SIGNATURE = ("Tracer caught signal", "LeakSanitizer has encountered a fatal error")


def main(argv):
    if len(argv) != 2:
        print("usage: lsan_tracer_crashes.py JUNIT.xml", file=sys.stderr)
        return 2
    try:
        root = ET.parse(argv[1]).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"lsan_tracer_crashes: cannot read {argv[1]}: {e}", file=sys.stderr)
        return 2
    failed, tracer = [], []
    for case in root.iter("testcase"):
        if case.get("status") != "fail" and case.find("failure") is None:
            continue
        failed.append(case.get("name"))
        out = "".join((e.text or "") + (e.get("message") or "") for e in case.iter())
        if all(s in out for s in SIGNATURE):
            tracer.append(case.get("name"))
    if not failed or len(tracer) != len(failed):
        return 1
    print("\n".join(tracer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
