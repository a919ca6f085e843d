#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU and no package registry (the workplace's device tool):
# run from the repo root with these git-ignored folders beside the tree: .deno-carry/ holding
# `npm pack @deno/linux-x64-glibc@2.9.6`, .gl/ holding the Debian libvulkan1/libegl1/libglvnd0
# debs, and build/ from `deno task build`. Env: TESTS (test files), BENCH_ARGS (bench flags).
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-}
mkdir -p /tmp/deno && tar -xzf .deno-carry/deno-linux-x64-glibc-*.tgz -C /tmp/deno
export PATH=/tmp/deno/package:$PATH
chmod +x /tmp/deno/package/deno
deno --version | head -1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
# No registry on the box: run without package.json (the GPU paths import no npm package).
rm -f package.json
echo '{"compilerOptions":{"lib":["deno.ns","deno.window","dom","deno.unstable"]}}' > /tmp/device.json
export DENO_DIR=/tmp/denodir
RUN="deno run -A --no-check --no-lock --config /tmp/device.json"
TEST="deno test -A --no-check --no-lock --config /tmp/device.json"
cat > /tmp/probe.ts <<'TS'
const a = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
console.log(JSON.stringify(a?.info));
TS
$RUN /tmp/probe.ts
if ! $RUN /tmp/probe.ts | grep -qi nvidia; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  $RUN /tmp/probe.ts
fi
echo "=== webgpu tests"
$TEST ${TESTS:-test/rng_webgpu_test.ts test/parity_webgpu_*_test.ts} 2>&1 | tee ${OUT:-/tmp}/webgpu_tests.txt | grep -E "ok|FAILED|passed|error" | tail -60
echo "=== bench"
$RUN test/bench.ts ${BENCH_ARGS:-} 2>&1 | tee ${OUT:-/tmp}/bench.txt
