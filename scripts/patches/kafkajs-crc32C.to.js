// Slice-by-8 (pgcdc's patch): T8[k * 256 + b] is the CRC of byte b followed by k zero bytes, so
// eight bytes are folded per step; the bytes left over go through T as before.
let T8 = null
const slices = () => {
  const t = new Int32Array(256 * 8)
  t.set(T)
  for (let b = 0; b < 256; b++) {
    let c = T[b]
    for (let k = 1; k < 8; k++) {
      c = T[c & 0xff] ^ (c >>> 8)
      t[k * 256 + b] = c
    }
  }
  return t
}

const crc32C = buffer => {
  const t = T8 || (T8 = slices())
  const n = buffer.length
  let crc = 0 ^ -1
  let i = 0
  for (; i + 8 <= n; i += 8) {
    const a =
      crc ^ (buffer[i] | (buffer[i + 1] << 8) | (buffer[i + 2] << 16) | (buffer[i + 3] << 24))
    const b = buffer[i + 4] | (buffer[i + 5] << 8) | (buffer[i + 6] << 16) | (buffer[i + 7] << 24)
    crc =
      t[1792 + (a & 0xff)] ^
      t[1536 + ((a >>> 8) & 0xff)] ^
      t[1280 + ((a >>> 16) & 0xff)] ^
      t[1024 + (a >>> 24)] ^
      t[768 + (b & 0xff)] ^
      t[512 + ((b >>> 8) & 0xff)] ^
      t[256 + ((b >>> 16) & 0xff)] ^
      t[b >>> 24]
  }
  for (; i < n; i++) {
    crc = T[(crc ^ buffer[i]) & 0xff] ^ (crc >>> 8)
  }

  return (crc ^ -1) >>> 0
}
