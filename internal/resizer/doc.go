// Package resizer is the image-resizing HTTP service: request parsing, presets,
// admission and the worker pool, source fetching with SSRF checks, URL signing,
// caching headers, metrics and logs.
//
// It does not touch pixels: decoding, resizing and encoding belong to package
// resize (libvips), reached through the small Pipeline port defined here. It
// must never read an unbounded body, fetch a URL without the address policy,
// or start image work outside the worker pool.
package resizer
