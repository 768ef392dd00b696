"""ctest's python_module: runs the pytest suite with the interpreter of a venv
that has tttcl installed (tools/setup.sh test installs it into build/venv).
Exits 77 (skipped) with the reason when the venv or the module is missing.
    run_pytest.py VENV APPS_DIR"""
import os
import subprocess
import sys

venv, apps = sys.argv[1], sys.argv[2]
py = os.path.join(venv, "bin", "python")
if not os.path.exists(py):
    print(f"python_module: skipped: no venv at {venv} (tools/setup.sh test creates it and installs tttcl)")
    sys.exit(77)
probe = subprocess.run([py, "-c", "import tttcl, pytest, numpy"], capture_output=True, text=True)
if probe.returncode != 0:
    print(f"python_module: skipped: tttcl, pytest or numpy is not installed in {venv} "
          f"(`{py} -m pip install . pytest numpy` from the repository root):\n{probe.stderr.strip()[-400:]}")
    sys.exit(77)
here = os.path.dirname(os.path.abspath(__file__))
# An install older than this tree would test old code under new tests: its
# Python files must be this tree's (the compiled part is rebuilt with them).
src = os.path.join(os.path.dirname(os.path.dirname(here)), "python", "tttcl")
where = subprocess.run([py, "-c", "import os, tttcl; print(os.path.dirname(tttcl.__file__))"], capture_output=True,
                       text=True).stdout.strip()
stale = sorted(f for f in os.listdir(src) if f.endswith(".py") and (
    not os.path.exists(os.path.join(where, f)) or open(os.path.join(src, f), "rb").read() != open(
        os.path.join(where, f), "rb").read()))
if stale:
    print(f"python_module: the tttcl installed in {venv} ({where}) is not this tree's: {', '.join(stale)} differ; "
          f"reinstall it (`{py} -m pip install .` from the repository root, or tools/setup.sh test)")
    sys.exit(1)
env = dict(os.environ, TTT_APPS_DIR=apps)
sys.exit(subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", here], env=env).returncode)
