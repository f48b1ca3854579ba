#!/usr/bin/env bash
# Run on the GPU machine. Call 1 carries .carry/mlx1 (first half of the wheel), call 2
# carries .carry/mlx2 and .carry/debs; the halves wait in /root/ft-gpu between calls.
# Once both are there, the wheel is joined, checked and installed into the machine's
# python (next to the nvidia-* packages libmlx.so finds through its rpath).
set -euo pipefail
STAGE=/root/ft-gpu
mkdir -p "$STAGE"
for d in .carry/mlx1 .carry/mlx2; do [[ -d $d ]] && cp "$d"/* "$STAGE"/; done
if [[ -d .carry/debs ]]; then
  for f in .carry/debs/*.deb; do dpkg -x "$f" "$STAGE/prefix"; done
fi
SITE=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# MLX compiles some kernels at run time against the headers of the nvidia-* wheels,
# which lack the toolkit's crt/ folder; lend it the one in /usr/local/cuda.
CU_INCLUDE="$SITE/nvidia/cu13/include"
if [[ -d "$CU_INCLUDE" && ! -e "$CU_INCLUDE/crt" && -d /usr/local/cuda/include/crt ]]; then
  ln -s /usr/local/cuda/include/crt "$CU_INCLUDE/crt"
fi
if [[ -f "$SITE/mlx/lib/libmlx.so" ]]; then echo "install: mlx-cuda already installed"; exit 0; fi
if [[ ! -f "$STAGE/part.01" ]]; then echo "install: first half staged; send the second"; exit 0; fi
WHEEL=$(cut -d' ' -f3- "$STAGE/wheel.sha256" | tr -d ' *')
cat "$STAGE/part.00" "$STAGE/part.01" > "$STAGE/$WHEEL"
(cd "$STAGE" && sha256sum -c wheel.sha256)
python3 -m pip install -q --no-index --no-deps "$STAGE/$WHEEL"
echo "install: mlx-cuda installed in $SITE"
