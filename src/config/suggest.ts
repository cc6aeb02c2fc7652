// "Did you mean" suggestions for misspelt setting names.

/** Edit distance counting an adjacent transposition as one edit (optimal string alignment). */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** `ssl_root_cert`, `ssl-root-cert`, `SSLROOTCERT` and `sslRootCert` all normalise to `sslrootcert`. */
function loose(key: string): string {
  return key.toLowerCase().replace(/[_\-\s]/g, '');
}

/** The closest candidate to `key`, or undefined when nothing is plausibly what was meant. */
export function closest(key: string, candidates: Iterable<string>): string | undefined {
  const k = loose(key);
  let best: string | undefined;
  let bestScore = Infinity;
  for (const c of candidates) {
    const score = loose(c) === k ? 0 : editDistance(k, loose(c));
    if (score < bestScore) {
      best = c;
      bestScore = score;
    }
  }
  if (best === undefined) return undefined;
  const limit = Math.max(1, Math.min(3, Math.floor(key.length / 3)));
  return bestScore <= limit ? best : undefined;
}
