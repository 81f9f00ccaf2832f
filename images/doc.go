// Package images owns the image half of occase (PROTOCOL.md section 5): the
// signed upload names the db role hands out with `filenames`, and the img
// role's HTTP upload, validation, metadata stripping, storage and serving.
//
// The db role only needs a [Signer]; the img role needs a [Signer], a
// [Store] and a [Server]. Which role runs is decided by package roles, never
// here.
//
// A name is "<digest>/<name>": name is 9 characters from [A-Za-z0-9+-],
// digest the lowercase hex of keyed BLAKE2b-128 over name. The signature is
// what makes an upload legitimate; there is no other authentication, so a
// name can be uploaded once only and nothing is ever overwritten. The first
// three characters are the hour the name was issued in, so the img node,
// which keeps no state, refuses names older than Config.NameTTL.
//
// The img node's bounds (docs/security.md, "Image uploads"): slots per
// node, per client address and per name, a bounded wait for one, a
// minimum body rate, and a body buffer that grows with the bytes received.
package images
