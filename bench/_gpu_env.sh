# Sourced by the bench/gpu_*.sh scripts (run from the repository root on a CUDA machine): the GPU image
# lacks some of segkit's packages, so their wheels travel in .whl/ and are installed into /tmp/site
# (no index, no dependencies); PYTHONPATH then holds /tmp/site, the repository and $GPU_EXTRA_PATH if set.
export PYTHONUNBUFFERED=1
_segkit_path=$PWD${GPU_EXTRA_PATH:+:$GPU_EXTRA_PATH}
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$_segkit_path
else
  export PYTHONPATH=$_segkit_path
fi
unset _segkit_path
