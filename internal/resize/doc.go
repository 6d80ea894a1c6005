// Package resize is resizer's image pipeline on libvips: sniff and limit the
// input from its header, decode with shrink-on-load, resize and crop, convert
// to sRGB, strip metadata and encode.
//
// It decodes only JPEG, PNG, WebP, GIF and HEIF/AVIF; every other libvips
// loader is blocked inside libvips at Startup, so hostile bytes that get past
// the magic-byte sniffing still cannot reach SVG, PDF, ImageMagick and the
// like. It does no I/O and knows nothing of HTTP: the caller owns the worker
// pool, which is why libvips runs with one thread and no operation cache.
package resize
