#!/usr/bin/env bash
# Packs a Release build of this checkout for a machine with an NVIDIA GPU but
# without our packages (no apt there): the build tree without objects, the
# shared libraries it loads (ocl-icd's libOpenCL, CLBlast, fmt, Boost, Open MPI,
# ...), CLBlast's tuners, and a setup script. On the GPU machine, from the
# checkout's root (the same path as here, or /work/main is linked to it):
#   . BUNDLE/setup.sh        # build -> BUNDLE/build, LD_LIBRARY_PATH, an ICD file for NVIDIA
#   cd build && ctest -LE oclgrind
#   tools/gpu_bundle.sh BUILD BUNDLE
set -euo pipefail
build=$(cd "${1:?usage: tools/gpu_bundle.sh BUILD BUNDLE}" && pwd)
out=${2:?usage: tools/gpu_bundle.sh BUILD BUNDLE}
[ ! -e "$out" ] || { echo "gpu_bundle: $out exists; give a new directory" >&2; exit 2; }
mkdir -p "$out/lib" "$out/bin"
out=$(cd "$out" && pwd)
tar -C "$build" --exclude='*.o' --exclude='*.a' --exclude=./venv --exclude=./pocl-cache --exclude=./kernel-cache \
    --exclude=./Testing -cf - . | tar -C "$out" -xf - --transform 's,^\.,build,'
find "$out/build" -type f -executable -exec sh -c 'file "$1" | grep -q ELF && strip --strip-unneeded "$1"' _ {} \;
for t in /usr/bin/clblast_tuner_xgemm /usr/bin/clblast_tuner_xgemm_direct; do [ -x "$t" ] && cp "$t" "$out/bin/"; done
find "$out/build" "$out/bin" -type f -executable -exec ldd {} \; 2>/dev/null | awk '/=> \//{print $3}' | sort -u |
  grep -v -E '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s)\.so' | while read -r l; do cp -L "$l" "$out/lib/"; done
cat > "$out/setup.sh" <<'SETUP'
# Sourced from the checkout's root on the GPU machine.
B=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
R=$PWD
if [ "$R" != /work/main ] && grep -q /work/main "$B/build/CMakeCache.txt"; then
  mkdir -p /work; rm -rf /work/main; ln -s "$R" /work/main  # the build's absolute paths
fi
rm -rf build; ln -s "$B/build" build
mkdir -p "$B/build/venv/bin"; ln -sf "$(command -v python3)" "$B/build/venv/bin/python"
export LD_LIBRARY_PATH=$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} PATH=$B/bin:$PATH
ICD=$(ls /usr/local/nvidia/lib64/libnvidia-opencl.so.1 /usr/lib/x86_64-linux-gnu/libnvidia-opencl.so.1 2>/dev/null | head -1)
[ -n "$ICD" ] || ICD=$(find / -xdev -name 'libnvidia-opencl.so*' 2>/dev/null | head -1)
mkdir -p /tmp/ttt-icd; echo "$ICD" > /tmp/ttt-icd/nvidia.icd; export OCL_ICD_VENDORS=/tmp/ttt-icd
echo "ttt-cl bundle: NVIDIA OpenCL ICD ${ICD:-not found}"
SETUP
du -sh "$out"
