// bridge.h: thin non-variadic wrappers around libvips for cgo (cgo cannot
// call C variadic functions). Every function returns 0 on success, -1 on
// error with the message in vips' error buffer.
#ifndef RESIZE_BRIDGE_H
#define RESIZE_BRIDGE_H

#include <stdlib.h>
#include <vips/vips.h>

typedef struct {
	int width, height, bands, pages, page_height, orientation;
	int has_alpha, interpretation, format;
	const char *loader;
} rs_header;

int rs_startup(int concurrency, int cache_max_ops, size_t cache_max_mem, int arenas, int mmap_threshold);
int rs_block_loaders(void);
char *rs_error(void);
void rs_free(void *p);
void rs_unref(VipsImage *im);

int rs_header_read(const void *buf, size_t len, rs_header *h);
int rs_load(const void *buf, size_t len, const char *options, VipsImage **out);
int rs_autorot(VipsImage *in, VipsImage **out);
int rs_strip(VipsImage *in, VipsImage **out);
int rs_resize(VipsImage *in, VipsImage **out, double hscale, double vscale);
int rs_smartcrop(VipsImage *in, VipsImage **out, int width, int height);
int rs_exact(VipsImage *in, VipsImage **out, int width, int height);
int rs_halve(VipsImage *in, VipsImage **out);
int rs_shrink(VipsImage *in, VipsImage **out, int factor);
int rs_thumbnail_buffer(const void *buf, size_t len, VipsImage **out,
	int width, int height, int crop, int size, const char *load_options);
int rs_extract_area(VipsImage *in, VipsImage **out, int left, int top, int width, int height);
int rs_embed(VipsImage *in, VipsImage **out, int x, int y, int width, int height,
	double r, double g, double b, int transparent);
int rs_flatten(VipsImage *in, VipsImage **out, double r, double g, double b);
int rs_to_srgb(VipsImage *in, VipsImage **out, int icc);
int rs_copy_memory(VipsImage *in, VipsImage **out);
int rs_arrayjoin(VipsImage **in, int n, VipsImage **out);
int rs_set_page_height(VipsImage *in, VipsImage **out, int page_height);
int rs_has_icc(VipsImage *in, const void **data, size_t *len);
int rs_save(VipsImage *in, int format, int quality, int strip, int effort,
	void **buf, size_t *len);

// formats understood by rs_save, same order as the Go side.
enum { RS_JPEG = 1, RS_PNG, RS_WEBP, RS_AVIF, RS_GIF };

#endif
