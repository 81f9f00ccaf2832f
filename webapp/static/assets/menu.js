// The location and product trees from GET /api/menu, their codes (paths of
// 0-based child indexes) and the 64-bit channel hash of PROTOCOL.md §4.

const shifts = { 1: [0n], 2: [32n, 0n], 3: [42n, 21n, 0n], 4: [48n, 32n, 16n, 0n] };

// hashCode packs a code cut to depth d; a shorter code hashes to 0.
export function hashCode(code, depth) {
  const sh = shifts[depth];
  if (!sh || code.length < depth) return 0n;
  let h = 0n;
  for (let i = 0; i < depth; i++) h |= BigInt(code[i]) << sh[i];
  return h;
}

export function nodeAt(tree, code) {
  let n = tree;
  for (const i of code) {
    if (!n || !n.children || !n.children[i]) return null;
    n = n.children[i];
  }
  return n;
}

// names returns the node names along a code, top level first.
export function names(tree, code) {
  const out = [];
  let n = tree;
  for (const i of code || []) {
    n = n && n.children && n.children[i];
    if (!n) break;
    out.push(n.name);
  }
  return out;
}

// channelHashes lists the hashes of every node at the tree's depth under
// code (the code itself when it is that deep): what a subscription to a
// whole region or brand means.
export function channelHashes(tree, code) {
  const d = tree.depth || 3;
  if (!code || code.length === 0) return [];
  const out = [];
  const walk = (node, c) => {
    if (c.length >= d) { out.push(hashCode(c, d)); return; }
    const kids = (node && node.children) || [];
    if (kids.length === 0) { out.push(hashCode(c, d)); return; } // shorter leaf: hashes to 0
    kids.forEach((k, i) => walk(k, [...c, i]));
  };
  walk(nodeAt(tree, code), code.slice(0, d));
  return [...new Set(out)];
}

// A small menu used only when the server has no /api/menu, so that the app
// still renders; the server may reject posts whose codes it does not know.
export const fallbackMenu = {
  locations: { depth: 3, children: [
    { name: "Germany", children: [
      { name: "Bavaria", children: [{ name: "Munich" }, { name: "Nuremberg" }] },
      { name: "Berlin", children: [{ name: "Berlin" }] }] }] },
  products: { depth: 3, children: [
    { name: "Cars", children: [
      { name: "BMW", children: [{ name: "3 Series" }, { name: "X5" }] },
      { name: "Volkswagen", children: [{ name: "Golf" }, { name: "Polo" }] }] }] },
};
