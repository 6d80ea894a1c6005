package resize

/*
#include "bridge.h"
*/
import "C"

import (
	"bytes"
	"fmt"
	"runtime"
	"unsafe"
)

// sniff names the format from magic bytes; anything else is refused before
// libvips sees it.
func sniff(b []byte) (Format, bool) {
	switch {
	case len(b) >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF:
		return FormatJPEG, true
	case len(b) >= 8 && bytes.Equal(b[:8], []byte("\x89PNG\r\n\x1a\n")):
		return FormatPNG, true
	case len(b) >= 6 && (bytes.Equal(b[:6], []byte("GIF87a")) || bytes.Equal(b[:6], []byte("GIF89a"))):
		return FormatGIF, true
	case len(b) >= 12 && bytes.Equal(b[:4], []byte("RIFF")) && bytes.Equal(b[8:12], []byte("WEBP")):
		return FormatWebP, true
	case len(b) >= 12 && bytes.Equal(b[4:8], []byte("ftyp")):
		switch string(b[8:12]) {
		case "avif", "avis":
			return FormatAVIF, true
		case "heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs", "mif1", "msf1":
			return FormatHEIF, true
		}
	}
	return "", false
}

// header is what libvips reports before decoding any pixels.
type header struct {
	Info
	rawWidth, rawHeight int // as stored, before orientation
	orientation         int
	pageHeight          int
}

// Probe reads only the header: it sniffs the format, asks libvips for the
// dimensions and refuses what the limits forbid before any pixel is decoded.
func Probe(src []byte, lim Limits) (Info, error) {
	h, err := probe(src, lim)
	return h.Info, err
}

func probe(src []byte, lim Limits) (header, error) {
	if err := lim.Validate(); err != nil {
		return header{}, fmt.Errorf("%w: limits: %w", ErrInvalidOptions, err)
	}
	if len(src) == 0 {
		return header{}, fmt.Errorf("%w: empty input", ErrCorrupt)
	}
	if int64(len(src)) > lim.MaxInputBytes {
		return header{}, fmt.Errorf("%w: %d bytes > limit %d", ErrTooLarge, len(src), lim.MaxInputBytes)
	}
	f, ok := sniff(src)
	if !ok {
		return header{}, fmt.Errorf("%w: not JPEG, PNG, WebP, GIF, AVIF or HEIF", ErrUnsupported)
	}
	h, err := readHeader(src)
	if err != nil {
		return header{}, err
	}
	if h.Format != f {
		// e.g. PNG magic followed by something libvips reads as another format.
		if !(f == FormatHEIF && h.Format == FormatAVIF) && !(f == FormatAVIF && h.Format == FormatHEIF) {
			return header{}, fmt.Errorf("%w: magic says %s, libvips reads %s", ErrCorrupt, f, h.Format)
		}
		h.Format = f
	}
	if h.Width <= 0 || h.Height <= 0 {
		return header{}, fmt.Errorf("%w: %dx%d", ErrCorrupt, h.Width, h.Height)
	}
	if px := int64(h.Width) * int64(h.Height); px > lim.MaxInputPixels {
		return header{}, fmt.Errorf("%w: %dx%d = %d pixels > limit %d", ErrTooLarge, h.Width, h.Height, px, lim.MaxInputPixels)
	}
	return h, nil
}

// readHeader asks libvips for the header. It is the only place bytes reach a
// libvips loader without decoding, so tests call it directly to prove the
// loader block list holds even when sniffing is bypassed.
func readHeader(src []byte) (header, error) {
	if len(src) == 0 {
		return header{}, fmt.Errorf("%w: empty input", ErrCorrupt)
	}
	var ch C.rs_header
	var pin runtime.Pinner
	pin.Pin(&src[0])
	rc := C.rs_header_read(unsafe.Pointer(&src[0]), C.size_t(len(src)), &ch)
	pin.Unpin()
	if rc != 0 {
		return header{}, fmt.Errorf("%w: read header: %w", ErrCorrupt, vipsError())
	}
	h := header{
		rawWidth:    int(ch.width),
		rawHeight:   int(ch.height),
		orientation: int(ch.orientation),
		pageHeight:  int(ch.page_height),
	}
	loader := ""
	if ch.loader != nil {
		loader = C.GoString(ch.loader)
	}
	switch {
	case bytes.HasPrefix([]byte(loader), []byte("jpegload")):
		h.Format = FormatJPEG
	case bytes.HasPrefix([]byte(loader), []byte("pngload")):
		h.Format = FormatPNG
	case bytes.HasPrefix([]byte(loader), []byte("webpload")):
		h.Format = FormatWebP
	case bytes.HasPrefix([]byte(loader), []byte("gifload")):
		h.Format = FormatGIF
	case bytes.HasPrefix([]byte(loader), []byte("heifload")):
		h.Format = FormatHEIF
	default:
		return header{}, fmt.Errorf("%w: loader %q", ErrUnsupported, loader)
	}
	h.Pages = int(ch.pages)
	if h.Pages < 1 {
		h.Pages = 1
	}
	// The header of a multi-frame load reports one frame unless n is set,
	// so Width/Height are per frame already.
	h.Width, h.Height = h.rawWidth, h.rawHeight
	if h.orientation >= 5 && h.orientation <= 8 {
		h.Width, h.Height = h.Height, h.Width
	}
	h.HasAlpha = ch.has_alpha != 0
	return h, nil
}
