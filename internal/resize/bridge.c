#include "bridge.h"
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

// Drop libvips/glib warnings: they go to stderr from any thread and would
// flood the service log with per-image noise; errors come back through
// the error buffer instead.
static void rs_quiet(const gchar *domain, GLogLevelFlags level,
	const gchar *msg, gpointer user) {}

int rs_startup(int concurrency, int cache_max_ops, size_t cache_max_mem, int arenas, int mmap_threshold) {
#ifdef __GLIBC__
	// glibc gives each thread that mallocs its own arena (up to 8 per
	// core); libvips' pixel buffers then fragment across them and the
	// process keeps far more RSS than it uses. Set before libvips starts
	// its threads.
	if (arenas > 0)
		mallopt(M_ARENA_MAX, arenas);
	// Whole decoded images and libjpeg's coefficient buffers for progressive
	// JPEGs (tens of MB) go straight to mmap and back to the kernel when
	// freed, instead of staying in an arena as RSS.
	if (mmap_threshold > 0)
		mallopt(M_MMAP_THRESHOLD, mmap_threshold);
#endif
	if (VIPS_INIT("resize"))
		return -1;
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, rs_quiet, NULL);
	vips_concurrency_set(concurrency);
	vips_cache_set_max(cache_max_ops);
	vips_cache_set_max_mem(cache_max_mem);
	vips_cache_set_max_files(0);
	return rs_block_loaders();
}

// Block every loader, then re-allow the five formats we serve. Blocking the
// VipsForeignLoad base class covers trusted-but-unwanted loaders too
// (matrix, tiff, ppm), which the "untrusted" flag alone would leave open.
int rs_block_loaders(void) {
	static const char *allowed[] = {
		"VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadWebp",
		"VipsForeignLoadNsgif", "VipsForeignLoadHeif", NULL,
	};
	vips_block_untrusted_set(TRUE);
	vips_operation_block_set("VipsForeignLoad", TRUE);
	for (int i = 0; allowed[i]; i++)
		vips_operation_block_set(allowed[i], FALSE);
	return 0;
}

char *rs_error(void) { return vips_error_buffer_copy(); }
void rs_free(void *p) { g_free(p); }
void rs_unref(VipsImage *im) { if (im) g_object_unref(im); }

int rs_header_read(const void *buf, size_t len, rs_header *h) {
	// Only the header is read here: libvips loads pixels lazily.
	VipsImage *im = vips_image_new_from_buffer(buf, len, "",
		"access", VIPS_ACCESS_SEQUENTIAL, NULL);
	if (!im)
		return -1;
	h->width = vips_image_get_width(im);
	h->height = vips_image_get_height(im);
	h->bands = vips_image_get_bands(im);
	h->pages = vips_image_get_n_pages(im);
	h->page_height = vips_image_get_page_height(im);
	h->orientation = vips_image_get_orientation(im);
	h->has_alpha = vips_image_hasalpha(im);
	h->interpretation = vips_image_get_interpretation(im);
	h->format = vips_image_get_format(im);
	const char *loader = NULL;
	h->loader = NULL;
	if (!vips_image_get_string(im, VIPS_META_LOADER, &loader) && loader)
		h->loader = g_intern_string(loader);
	g_object_unref(im);
	return 0;
}

int rs_thumbnail_buffer(const void *buf, size_t len, VipsImage **out,
	int width, int height, int crop, int size, const char *load_options) {
	return vips_thumbnail_buffer((void *) buf, len, out, width,
		"height", height, "crop", crop, "size", size,
		"option_string", load_options, NULL);
}

int rs_extract_area(VipsImage *in, VipsImage **out, int left, int top, int width, int height) {
	return vips_extract_area(in, out, left, top, width, height, NULL);
}

int rs_embed(VipsImage *in, VipsImage **out, int x, int y, int width, int height,
	double r, double g, double b, int transparent) {
	double bg[4] = {r, g, b, transparent ? 0 : 255};
	int n = in->Bands;
	if (n > 4)
		n = 4;
	if (n <= 2) { // grey (+alpha): use the grey of the colour
		bg[0] = 0.2126 * r + 0.7152 * g + 0.0722 * b;
		bg[1] = transparent ? 0 : 255;
	}
	VipsArrayDouble *a = vips_array_double_new(bg, n);
	int ret = vips_embed(in, out, x, y, width, height,
		"extend", VIPS_EXTEND_BACKGROUND, "background", a, NULL);
	vips_area_unref(VIPS_AREA(a));
	return ret;
}

int rs_flatten(VipsImage *in, VipsImage **out, double r, double g, double b) {
	double bg[3] = {r, g, b};
	int n = in->Bands <= 2 ? 1 : 3;
	if (n == 1)
		bg[0] = 0.2126 * r + 0.7152 * g + 0.0722 * b;
	VipsArrayDouble *a = vips_array_double_new(bg, n);
	int ret = vips_flatten(in, out, "background", a, NULL);
	vips_area_unref(VIPS_AREA(a));
	return ret;
}

// rs_to_srgb converts to 8-bit sRGB (or 8-bit grey for grey images). With
// icc set it first transforms from the embedded profile, so photos tagged
// with Display P3 or Adobe RGB keep their colours once metadata is stripped.
int rs_to_srgb(VipsImage *in, VipsImage **out, int icc) {
	VipsInterpretation want = VIPS_INTERPRETATION_sRGB;
	VipsInterpretation have = vips_image_guess_interpretation(in);
	if (have == VIPS_INTERPRETATION_B_W || have == VIPS_INTERPRETATION_GREY16)
		want = VIPS_INTERPRETATION_B_W;
	if (icc || have == VIPS_INTERPRETATION_CMYK) {
		VipsImage *t = NULL;
		if (vips_icc_transform(in, &t, "srgb", "embedded", TRUE,
			"input_profile", have == VIPS_INTERPRETATION_CMYK ? "cmyk" : "srgb",
			"intent", VIPS_INTENT_PERCEPTUAL, "depth", 8, NULL))
			return -1;
		*out = t;
		return 0;
	}
	if (have == want && in->BandFmt == VIPS_FORMAT_UCHAR) {
		g_object_ref(in);
		*out = in;
		return 0;
	}
	return vips_colourspace(in, out, want, NULL);
}

int rs_copy_memory(VipsImage *in, VipsImage **out) {
	VipsImage *t = vips_image_copy_memory(in);
	if (!t)
		return -1;
	*out = t;
	return 0;
}

int rs_arrayjoin(VipsImage **in, int n, VipsImage **out) {
	return vips_arrayjoin(in, out, n, "across", 1, NULL);
}

int rs_set_page_height(VipsImage *in, VipsImage **out, int page_height) {
	if (vips_copy(in, out, NULL))
		return -1;
	vips_image_set_int(*out, VIPS_META_PAGE_HEIGHT, page_height);
	return 0;
}

int rs_has_icc(VipsImage *in, const void **data, size_t *len) {
	if (vips_image_get_typeof(in, VIPS_META_ICC_NAME) == 0)
		return 0;
	if (vips_image_get_blob(in, VIPS_META_ICC_NAME, data, len))
		return 0;
	return 1;
}

int rs_save(VipsImage *in, int format, int quality, int strip, int effort,
	void **buf, size_t *len) {
	switch (format) {
	case RS_JPEG:
		return vips_jpegsave_buffer(in, buf, len, "Q", quality, "strip", strip, NULL);
	case RS_PNG:
		return vips_pngsave_buffer(in, buf, len, "strip", strip,
			"compression", 6, NULL);
	case RS_WEBP:
		return vips_webpsave_buffer(in, buf, len, "Q", quality, "strip", strip,
			"effort", effort, NULL);
	case RS_AVIF:
		return vips_heifsave_buffer(in, buf, len, "Q", quality, "strip", strip,
			"compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "effort", effort, NULL);
	case RS_GIF:
		return vips_gifsave_buffer(in, buf, len, "strip", strip, NULL);
	}
	vips_error("resize", "unknown output format %d", format);
	return -1;
}

int rs_load(const void *buf, size_t len, const char *options, VipsImage **out) {
	VipsImage *im = vips_image_new_from_buffer(buf, len, options,
		"access", VIPS_ACCESS_SEQUENTIAL, NULL);
	if (!im)
		return -1;
	*out = im;
	return 0;
}

int rs_autorot(VipsImage *in, VipsImage **out) {
	return vips_autorot(in, out, NULL);
}

static int rs_is_private(const char *name) {
	static const char *prefixes[] = {
		"exif-", "xmp-data", "iptc-data", "icc-profile-data",
		"png-comment-", "gif-comment", "orientation", "heif-", NULL,
	};
	for (int i = 0; prefixes[i]; i++)
		if (g_str_has_prefix(name, prefixes[i]))
			return 1;
	return 0;
}

static void *rs_collect(VipsImage *im, const char *name, GValue *value, void *a) {
	GSList **names = (GSList **) a;
	if (rs_is_private(name))
		*names = g_slist_prepend(*names, g_strdup(name));
	return NULL;
}

// rs_strip removes EXIF (GPS), XMP, IPTC, ICC and comments from a copy of
// in. Savers' own "strip" flag is not enough: webpsave in libvips 8.14
// still writes EXIF with it set.
int rs_strip(VipsImage *in, VipsImage **out) {
	if (vips_copy(in, out, NULL))
		return -1;
	GSList *names = NULL;
	vips_image_map(*out, rs_collect, &names);
	for (GSList *p = names; p; p = p->next)
		vips_image_remove(*out, (const char *) p->data);
	g_slist_free_full(names, g_free);
	return 0;
}

// rs_resize scales by hscale×vscale with libvips' default lanczos3 kernel.
// Alpha is premultiplied around the resize so transparent pixels do not
// bleed dark fringes into opaque ones.
int rs_resize(VipsImage *in, VipsImage **out, double hscale, double vscale) {
	if (!vips_image_hasalpha(in))
		return vips_resize(in, out, hscale, "vscale", vscale, NULL);
	double max_alpha = in->BandFmt == VIPS_FORMAT_USHORT ? 65535 : 255;
	VipsImage *t[3] = {NULL, NULL, NULL};
	int ret = -1;
	if (!vips_premultiply(in, &t[0], "max_alpha", max_alpha, NULL) &&
		!vips_resize(t[0], &t[1], hscale, "vscale", vscale, NULL) &&
		!vips_unpremultiply(t[1], &t[2], "max_alpha", max_alpha, NULL) &&
		!vips_cast(t[2], out, in->BandFmt, NULL))
		ret = 0;
	for (int i = 0; i < 3; i++)
		if (t[i])
			g_object_unref(t[i]);
	return ret;
}

// rs_smartcrop cuts width×height around the most interesting region
// (libvips' attention strategy), which needs the whole image in memory.
int rs_smartcrop(VipsImage *in, VipsImage **out, int width, int height) {
	VipsImage *m = vips_image_copy_memory(in);
	if (!m)
		return -1;
	int ret = vips_smartcrop(m, out, width, height,
		"interesting", VIPS_INTERESTING_ATTENTION, NULL);
	g_object_unref(m);
	return ret;
}

// rs_exact crops or edge-extends in to exactly width×height, absorbing the
// one-pixel rounding differences of vips_resize.
int rs_exact(VipsImage *in, VipsImage **out, int width, int height) {
	if (in->Xsize >= width && in->Ysize >= height)
		return vips_extract_area(in, out, 0, 0, width, height, NULL);
	VipsImage *t = NULL;
	if (vips_embed(in, &t, 0, 0, VIPS_MAX(width, in->Xsize), VIPS_MAX(height, in->Ysize),
		"extend", VIPS_EXTEND_COPY, NULL))
		return -1;
	int ret = vips_extract_area(t, out, 0, 0, width, height, NULL);
	g_object_unref(t);
	return ret;
}

// rs_halve box-shrinks in by two on both axes into memory: one level of
// the Variants pyramid.
int rs_halve(VipsImage *in, VipsImage **out) {
	VipsImage *t = NULL;
	if (vips_shrink(in, &t, 2.0, 2.0, NULL))
		return -1;
	VipsImage *m = vips_image_copy_memory(t);
	g_object_unref(t);
	if (!m)
		return -1;
	*out = m;
	return 0;
}

// rs_shrink box-shrinks by an integer factor: the shrink-on-load that PNG,
// GIF and HEIF decoders cannot do themselves, applied as rows arrive.
int rs_shrink(VipsImage *in, VipsImage **out, int factor) {
	return vips_shrink(in, out, (double) factor, (double) factor, NULL);
}
