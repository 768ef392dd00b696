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
env = dict(os.environ, TTT_APPS_DIR=apps)
sys.exit(subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", here], env=env).returncode)
