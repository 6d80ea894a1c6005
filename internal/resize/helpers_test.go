package resize

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if err := Startup(Config{}); err != nil {
		panic(err)
	}
	code := m.Run()
	Shutdown()
	os.Exit(code)
}

// bands paints vertical stripes of the given colours across a w×h image.
func bands(w, h int, cols ...color.RGBA) *image.RGBA {
	im := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			im.SetRGBA(x, y, cols[x*len(cols)/w])
		}
	}
	return im
}

var (
	red   = color.RGBA{255, 0, 0, 255}
	green = color.RGBA{0, 255, 0, 255}
	blue  = color.RGBA{0, 0, 255, 255}
	clear = color.RGBA{0, 0, 0, 0}
)

func encJPEG(t testing.TB, im image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, im, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encPNG(t testing.TB, im image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, im); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// animatedGIF makes n frames of w×h, each a different solid colour.
func animatedGIF(t testing.TB, w, h, n int) []byte {
	t.Helper()
	pal := color.Palette{red, green, blue, color.RGBA{255, 255, 255, 255}}
	g := &gif.GIF{}
	for i := 0; i < n; i++ {
		fr := image.NewPaletted(image.Rect(0, 0, w, h), pal)
		for k := range fr.Pix {
			fr.Pix[k] = uint8(i % len(pal))
		}
		g.Image = append(g.Image, fr)
		g.Delay = append(g.Delay, 10)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// withEXIF inserts an APP1 Exif segment after SOI: IFD0 holds Orientation
// and, if gps, a GPS IFD with a latitude reference.
func withEXIF(t testing.TB, jpg []byte, orientation uint16, gps bool) []byte {
	t.Helper()
	le := binary.LittleEndian
	var tiff bytes.Buffer
	tiff.WriteString("II*\x00")
	binary.Write(&tiff, le, uint32(8))
	n := uint16(1)
	if gps {
		n = 2
	}
	binary.Write(&tiff, le, n)
	// 0x0112 Orientation SHORT 1
	binary.Write(&tiff, le, []uint16{0x0112, 3})
	binary.Write(&tiff, le, uint32(1))
	binary.Write(&tiff, le, []uint16{orientation, 0})
	gpsOff := uint32(8 + 2 + 12*uint32(n) + 4)
	if gps {
		// 0x8825 GPSInfo LONG 1 -> offset of the GPS IFD
		binary.Write(&tiff, le, []uint16{0x8825, 4})
		binary.Write(&tiff, le, uint32(1))
		binary.Write(&tiff, le, gpsOff)
	}
	binary.Write(&tiff, le, uint32(0)) // no next IFD
	if gps {
		binary.Write(&tiff, le, uint16(2))
		// 0x0000 GPSVersionID BYTE 4 = 2.2.0.0
		binary.Write(&tiff, le, []uint16{0x0000, 1})
		binary.Write(&tiff, le, uint32(4))
		tiff.Write([]byte{2, 2, 0, 0})
		// 0x0001 GPSLatitudeRef ASCII 2 = "N\0"
		binary.Write(&tiff, le, []uint16{0x0001, 2})
		binary.Write(&tiff, le, uint32(2))
		tiff.Write([]byte{'N', 0, 0, 0})
		binary.Write(&tiff, le, uint32(0))
	}
	payload := append([]byte("Exif\x00\x00"), tiff.Bytes()...)
	seg := []byte{0xFF, 0xE1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	out = append(out, payload...)
	return append(out, jpg[2:]...)
}

// exifOrientation reads the Orientation value in IFD0, 0 when absent.
func exifOrientation(jpg []byte) int {
	i := bytes.Index(jpg, []byte("Exif\x00\x00"))
	if i < 0 || len(jpg) < i+6+8 {
		return 0
	}
	t := jpg[i+6:]
	var bo binary.ByteOrder = binary.LittleEndian
	if t[0] == 'M' {
		bo = binary.BigEndian
	}
	off := int(bo.Uint32(t[4:]))
	if off+2 > len(t) {
		return 0
	}
	for k := 0; k < int(bo.Uint16(t[off:])); k++ {
		e := off + 2 + 12*k
		if e+12 > len(t) {
			return 0
		}
		if bo.Uint16(t[e:]) == 0x0112 {
			return int(bo.Uint16(t[e+8:]))
		}
	}
	return 0
}

// exifTags lists the tag numbers of IFD0 and the GPS IFD in a JPEG's Exif
// segment, or nil when there is none.
func exifTags(jpg []byte) map[uint16]bool {
	i := bytes.Index(jpg, []byte("Exif\x00\x00"))
	if i < 0 {
		return nil
	}
	t := jpg[i+6:]
	if len(t) < 8 {
		return nil
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if t[0] == 'M' {
		bo = binary.BigEndian
	}
	tags := map[uint16]bool{}
	var walk func(off uint32, depth int)
	walk = func(off uint32, depth int) {
		if depth > 2 || int(off)+2 > len(t) {
			return
		}
		n := int(bo.Uint16(t[off:]))
		for k := 0; k < n; k++ {
			e := int(off) + 2 + 12*k
			if e+12 > len(t) {
				return
			}
			tag := bo.Uint16(t[e:])
			tags[tag] = true
			if tag == 0x8825 {
				walk(bo.Uint32(t[e+8:]), depth+1)
			}
		}
	}
	walk(bo.Uint32(t[4:]), 0)
	return tags
}

// pngHeaderOnly makes a PNG whose IHDR claims w×h, followed by a tiny IDAT:
// a decompression bomb's header.
func pngHeaderOnly(w, h uint32) []byte {
	chunk := func(typ string, data []byte) []byte {
		var b bytes.Buffer
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
		return b.Bytes()
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	out := []byte("\x89PNG\r\n\x1a\n")
	out = append(out, chunk("IHDR", ihdr)...)
	out = append(out, chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})...)
	return append(out, chunk("IEND", nil)...)
}

// meanRGB averages a decoded image's colour over a rectangle.
func meanRGB(im image.Image, r image.Rectangle) (float64, float64, float64) {
	var sr, sg, sb, n float64
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := im.At(x, y).RGBA()
			sr, sg, sb, n = sr+float64(cr>>8), sg+float64(cg>>8), sb+float64(cb>>8), n+1
		}
	}
	return sr / n, sg / n, sb / n
}

// dominant names the colour channel that clearly dominates a region.
func dominant(im image.Image, r image.Rectangle) string {
	cr, cg, cb := meanRGB(im, r)
	switch {
	case cr > 150 && cg < 100 && cb < 100:
		return "red"
	case cg > 150 && cr < 100 && cb < 100:
		return "green"
	case cb > 150 && cr < 100 && cg < 100:
		return "blue"
	case cr > 200 && cg > 200 && cb > 200:
		return "white"
	}
	return "mixed"
}

func decodeAny(t testing.TB, b []byte) image.Image {
	t.Helper()
	im, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode output: %v", err)
	}
	return im
}
