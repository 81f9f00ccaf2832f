// JSON with exact 64-bit integers. The server's ids, hashes and masks are
// unsigned 64-bit; a JS number is exact only up to 2^53, so larger integers
// are read as BigInt and BigInts are written back as bare digits.

const MARK = `__occase_big_${Math.random().toString(36).slice(2)}__:`;
const markRe = new RegExp(`"${MARK}(-?\\d+)"`, "g");

export function parse(text) {
  return JSON.parse(text, function (key, value, ctx) {
    if (typeof value === "number" && !Number.isSafeInteger(value) &&
        ctx && typeof ctx.source === "string" && /^-?\d+$/.test(ctx.source)) {
      return BigInt(ctx.source);
    }
    return value;
  });
}

export function stringify(value) {
  const s = JSON.stringify(value, (k, v) => (typeof v === "bigint" ? MARK + v.toString() : v));
  return s.replace(markRe, "$1");
}
