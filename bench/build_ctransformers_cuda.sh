#!/usr/bin/env bash
# Build ctransformers' CUDA library against CUDA 13 from PyPI wheels alone (no CUDA install,
# no GPU needed to build), for a GPU host that has CUDA 13 but not the CUDA 12 runtime the
# prebuilt `ctransformers[cuda]` library needs (bench/gpu_check.py ran on an H200 with it).
#
#   bench/build_ctransformers_cuda.sh [ARCH] [OUT]     e.g. ARCH=90 (Hopper), 89, 80
#
# Writes OUT (default build/ctransformers-cuda/libctransformers.so). Put it in place of
# ctransformers/lib/cuda/libctransformers.so and run the worker with LD_LIBRARY_PATH naming the
# folder of the host's libcudart.so.13 and libcublas.so.13 (PyTorch's nvidia/cu13/lib has both).
set -euo pipefail
arch=${1:-90}
out=${2:-build/ctransformers-cuda/libctransformers.so}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
plat=(--only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps "${plat[@]}" -d "$work/whl" \
  "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-crt==13.0.*" \
  "nvidia-nvvm==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-cublas==13.0.*"
# The sdist from PyPI's simple index (pip would try to build it to read its metadata).
python3 - "$work" <<'PY'
import re, sys, urllib.request
index = urllib.request.urlopen("https://pypi.org/simple/ctransformers/").read().decode()
url = re.search(r'href="([^"]*/ctransformers-0\.2\.27\.tar\.gz)[^"]*"', index)[1]
urllib.request.urlretrieve(url, f"{sys.argv[1]}/ctransformers-0.2.27.tar.gz")
PY
for wheel in "$work"/whl/*.whl; do python3 -m zipfile -e "$wheel" "$work/site"; done
cuda="$work/site/nvidia/cu13"
chmod +x "$cuda"/bin/* "$cuda"/nvvm/bin/*
ln -sfn lib "$cuda/lib64"
for lib in cudart cublas cublasLt; do ln -sf "lib$lib.so.13" "$cuda/lib/lib$lib.so"; done
tar -xzf "$work"/ctransformers-0.2.27.tar.gz -C "$work"
cmake -S "$work/ctransformers-0.2.27" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCT_CUBLAS=ON -DCT_INSTRUCTIONS=avx2 -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DCUDAToolkit_ROOT="$cuda" -DCMAKE_CUDA_COMPILER="$cuda/bin/nvcc"
PATH="$cuda/bin:$PATH" ninja -C "$work/build"
mkdir -p "$(dirname "$out")"
cp "$work/build/lib/libctransformers.so" "$out"
echo "built $out (CUDA 13, sm_$arch)"
