#!/usr/bin/env bash
# Runs one test binary (or tool) on Mesa's rusticl over llvmpipe, the third
# OpenCL implementation of CI (label rusticl; docs/checking.md): the device is
# chosen by name (TTT_DEVICE=llvmpipe: neither PoCL's nor Oclgrind's devices
# carry it). Exits 77 (ctest's skip) when no rusticl device exists: Debian's
# mesa-opencl-icd is not installed, or rusticl offers no llvmpipe device.
#   tests/rusticl.sh TTT_INFO COMMAND [arguments]
set -uo pipefail
info=$1
shift
export RUSTICL_ENABLE=${RUSTICL_ENABLE:-llvmpipe}
if ! "$info" 2>/dev/null | grep -q "llvmpipe"; then
  echo "no rusticl llvmpipe device (Debian package mesa-opencl-icd, RUSTICL_ENABLE=llvmpipe)"
  exit 77
fi
export TTT_DEVICE=llvmpipe
exec "$@"
