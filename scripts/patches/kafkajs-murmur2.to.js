module.exports = key => {
  const data = Buffer.isBuffer(key) ? key : Buffer.from(String(key))
  const length = data.length
  // The Java client's int arithmetic: Math.imul is its 32-bit multiplication (pgcdc's patch).
  const m = 0x5bd1e995
  let h = 0x9747b28c ^ length
  const length4 = Math.floor(length / 4)

  for (let i = 0; i < length4; i++) {
    const i4 = i * 4
    let k = data[i4 + 0] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24)
    k = Math.imul(k, m)
    k ^= k >>> 24
    k = Math.imul(k, m)
    h = Math.imul(h, m)
    h ^= k
  }

  // Handle the last few bytes of the input array
  switch (length % 4) {
    case 3:
      h ^= data[(length & ~3) + 2] << 16
    case 2:
      h ^= data[(length & ~3) + 1] << 8
    case 1:
      h ^= data[length & ~3]
      h = Math.imul(h, m)
  }

  h ^= h >>> 13
  h = Math.imul(h, m)
  h ^= h >>> 15

  return h | 0
}
