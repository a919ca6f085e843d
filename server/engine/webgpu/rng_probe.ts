/**
 * Runs kernels-wgsl/rng_probe.wgsl: Philox words and their transforms computed on the GPU for
 * given keys, so tests can compare the WGSL generator with server/rng/philox.ts.
 */
import { checked, getGpu, unlessLost } from "./device.ts";
import { assemble, computePipeline } from "./wgsl.ts";

export interface ProbeRequest {
  seed: number;
  replica: number;
  step: number;
  stream: number;
  block: number;
  /** Range of uniformIndex. */
  n: number;
}

/** Four values per request, in request order. */
export interface ProbeResult {
  words: Uint32Array;
  uniforms: Float32Array;
  normals: Float32Array;
  indices: Uint32Array;
  signs: Float32Array;
}

const STRIDE = 20; // u32 per request, as PROBE_STRIDE in the WGSL

export async function runRngProbe(requests: ProbeRequest[]): Promise<ProbeResult> {
  const gpu = await getGpu();
  const { device } = gpu;
  const code = await assemble("", ["philox.wgsl", "rng_probe.wgsl"]);
  const pipeline = await computePipeline(gpu, "rng_probe", code, "probe", "auto");
  const input = new Uint32Array(requests.length * 8);
  requests.forEach((q, i) => {
    input.set([q.seed, q.replica, q.step, q.stream, q.block, q.n, 0, 0], i * 8);
  });
  const outBytes = requests.length * STRIDE * 4;
  const buffers: GPUBuffer[] = [];
  try {
    const readback = await checked(gpu, "rng probe", () => {
      const inBuf = device.createBuffer({
        size: input.byteLength,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      });
      const outBuf = device.createBuffer({
        size: outBytes,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
      });
      const readBuf = device.createBuffer({
        size: outBytes,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      buffers.push(inBuf, outBuf, readBuf);
      device.queue.writeBuffer(inBuf, 0, input);
      const bindGroup = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: inBuf } }, {
          binding: 1,
          resource: { buffer: outBuf },
        }],
      });
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(Math.ceil(requests.length / 64));
      pass.end();
      encoder.copyBufferToBuffer(outBuf, 0, readBuf, 0, outBytes);
      device.queue.submit([encoder.finish()]);
      return readBuf;
    });
    await unlessLost(gpu, readback.mapAsync(GPUMapMode.READ));
    const out = new Uint32Array(readback.getMappedRange().slice(0));
    readback.unmap();
    const pick = (field: number) => {
      const values = new Uint32Array(requests.length * 4);
      for (let q = 0; q < requests.length; q++) {
        for (let k = 0; k < 4; k++) values[q * 4 + k] = out[q * STRIDE + field * 4 + k];
      }
      return values;
    };
    return {
      words: pick(0),
      uniforms: new Float32Array(pick(1).buffer),
      normals: new Float32Array(pick(2).buffer),
      indices: pick(3),
      signs: new Float32Array(pick(4).buffer),
    };
  } finally {
    for (const b of buffers) b.destroy();
  }
}
