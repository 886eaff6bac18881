// mulberry32: a small seeded PRNG, good enough to pick faults and tenants reproducibly. Shared
// by the chaos runners (tests/chaos/, tests/workerd/broker-chaos.mjs) and their workers.

/** A function returning numbers in [0, 1), the same sequence for the same `seed`. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
