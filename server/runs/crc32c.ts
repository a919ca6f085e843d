/**
 * CRC32C (Castagnoli), the checksum of each run-log record (as in Kafka's and TensorBoard's
 * record files). Slice-by-8 tables: the log is checked on every read, so this is a hot loop.
 */
const POLY = 0x82f63b78;
const T = new Uint32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  for (let s = 1; s < 8; s++) {
    T[s * 256 + n] = (T[(s - 1) * 256 + n] >>> 8) ^ T[T[(s - 1) * 256 + n] & 0xff];
  }
}

export function crc32c(bytes: Uint8Array, seed = 0): number {
  let c = ~seed >>> 0;
  let i = 0;
  const n = bytes.length;
  for (; i + 8 <= n; i += 8) {
    c ^= bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    c = T[7 * 256 + (c & 0xff)] ^ T[6 * 256 + ((c >>> 8) & 0xff)] ^
      T[5 * 256 + ((c >>> 16) & 0xff)] ^ T[4 * 256 + (c >>> 24)] ^
      T[3 * 256 + bytes[i + 4]] ^ T[2 * 256 + bytes[i + 5]] ^ T[256 + bytes[i + 6]] ^
      T[bytes[i + 7]];
  }
  for (; i < n; i++) c = T[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** TFRecord's masking: a CRC stored next to the data it covers should not checksum itself. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}
