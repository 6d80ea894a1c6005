package resizer

import (
	"bytes"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/shipteam/ship/internal/resize"
)

// accepted is what an Accept header says about the modern formats. Only
// explicit image/avif and image/webp count: browsers list them when they
// decode them, while */* is sent by clients that may not.
type accepted struct{ avif, webp bool }

func parseAccept(h string) accepted {
	var a accepted
	for _, part := range strings.Split(h, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if q, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
				continue
			}
		}
		switch mt {
		case "image/avif":
			a.avif = true
		case "image/webp":
			a.webp = true
		}
	}
	return a
}

// key is the part of the Accept header that can change a format=auto
// response; it goes into the ETag.
func (a accepted) key() string {
	return "avif=" + strconv.FormatBool(a.avif) + ",webp=" + strconv.FormatBool(a.webp)
}

// chooseFormat picks the output format. For format=auto: AVIF, then WebP
// when the client accepts them; otherwise PNG for a source with alpha and
// JPEG for the rest. A kept animation goes to WebP when accepted, else GIF,
// because AVIF and JPEG/PNG output would lose it.
func chooseFormat(requested string, a accepted, info resize.Info, keepAnimation bool) resize.Format {
	if requested != formatAuto {
		return resize.Format(requested)
	}
	if keepAnimation && info.Pages > 1 {
		if a.webp {
			return "webp"
		}
		return "gif"
	}
	switch {
	case a.avif:
		return "avif"
	case a.webp:
		return "webp"
	case info.HasAlpha:
		return "png"
	default:
		return "jpeg"
	}
}

func contentType(f resize.Format) string {
	switch f {
	case "jpeg":
		return "image/jpeg"
	case "png":
		return "image/png"
	case "webp":
		return "image/webp"
	case "avif":
		return "image/avif"
	case "gif":
		return "image/gif"
	}
	return "application/octet-stream"
}

func extension(f resize.Format) string {
	if f == "jpeg" {
		return "jpg"
	}
	return string(f)
}

// checkContentType refuses request bodies declared as something that cannot
// be an image (forms, JSON, text). The bytes decide the format: a declared
// image type that does not match them is tolerated, as browsers and tools
// often get it wrong.
func checkContentType(h string) *apiError {
	if h == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(h)
	if err != nil {
		return newError(http.StatusUnsupportedMediaType, codeUnsupportedType, "Content-Type %q cannot be parsed", truncate(h, 64))
	}
	if strings.HasPrefix(mt, "image/") || mt == "application/octet-stream" {
		return nil
	}
	return newError(http.StatusUnsupportedMediaType, codeUnsupportedType,
		"Content-Type %s is not an image; send the image bytes with image/* or application/octet-stream", mt)
}

// sniff refuses what is clearly not an accepted image before it reaches a
// decoder, with a message that names it. The pipeline checks again (it
// blocks libvips' untrusted loaders); this only gives clearer errors early.
func sniff(b []byte) *apiError {
	switch {
	case len(b) == 0:
		return newError(http.StatusBadRequest, codeEmptyBody, "the image is empty")
	case bytes.HasPrefix(b, []byte{0xff, 0xd8, 0xff}),
		bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")),
		bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")),
		len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP",
		len(b) >= 12 && string(b[4:8]) == "ftyp":
		return nil
	}
	name := "this format"
	head := bytes.ToLower(bytes.TrimSpace(b[:min(len(b), 512)]))
	switch {
	case bytes.HasPrefix(b, []byte("%PDF")):
		name = "PDF"
	case bytes.Contains(head, []byte("<svg")) || bytes.HasPrefix(head, []byte("<?xml")):
		name = "SVG/XML"
	case bytes.HasPrefix(b, []byte("II*\x00")) || bytes.HasPrefix(b, []byte("MM\x00*")):
		name = "TIFF"
	case bytes.HasPrefix(b, []byte("BM")):
		name = "BMP"
	}
	return newError(http.StatusUnsupportedMediaType, codeUnsupportedFormat,
		"%s is not accepted; send JPEG, PNG, WebP, GIF or AVIF/HEIC", name)
}
