package resize

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"
)

const svgDoc = `<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="red"/></svg>`

// minimalPDF is a one-page PDF with a correct xref table.
func minimalPDF() []byte {
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 20 20] >>",
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	offs := make([]int, len(objs))
	for i, o := range objs {
		offs[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return b.Bytes()
}

// minimalTIFF is a 2×2 8-bit grey uncompressed TIFF: a format libvips marks
// trusted, so only the base-class block refuses it.
func minimalTIFF() []byte {
	le := binary.LittleEndian
	var b bytes.Buffer
	b.WriteString("II*\x00")
	binary.Write(&b, le, uint32(8))
	entries := [][3]uint32{
		{256, 3, 2}, {257, 3, 2}, {258, 3, 8}, {259, 3, 1}, {262, 3, 1},
		{273, 4, 8 + 2 + 9*12 + 4}, {277, 3, 1}, {278, 3, 2}, {279, 4, 4},
	}
	binary.Write(&b, le, uint16(len(entries)))
	for _, e := range entries {
		binary.Write(&b, le, uint16(e[0]))
		binary.Write(&b, le, uint16(e[1]))
		binary.Write(&b, le, uint32(1))
		binary.Write(&b, le, e[2])
	}
	binary.Write(&b, le, uint32(0))
	b.Write([]byte{0, 80, 160, 255})
	return b.Bytes()
}

func TestUntrustedLoadersAreBlockedInsideLibvips(t *testing.T) {
	for _, tt := range []struct {
		name, class string
		data        []byte
	}{
		{"svg", "VipsForeignLoadSvg", []byte(svgDoc)},
		{"pdf", "VipsForeignLoadPdf", minimalPDF()},
		{"tiff", "VipsForeignLoadTiff", minimalTIFF()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Through the front door, sniffing refuses it.
			if _, err := Process(context.Background(), tt.data, Options{Width: 5}, DefaultLimits()); !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Process: err = %v, want ErrUnsupported", err)
			}
			// Straight into libvips, the block list refuses it.
			if h, err := readHeader(tt.data); err == nil {
				t.Fatalf("libvips read the %s header (%+v): loader not blocked", tt.name, h)
			}
			// Control: the same bytes load once the class is unblocked, so
			// it is the block list, not bad test data, that refused them.
			setLoaderBlocked(tt.class, false)
			_, err := readHeader(tt.data)
			setLoaderBlocked(tt.class, true)
			if err == nil || !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unblocked control: err = %v, want the loader to read it (then ErrUnsupported from our format check)", err)
			}
		})
	}
}

func TestHostileInputsGetClearErrors(t *testing.T) {
	jpg := encJPEG(t, bands(256, 256, red, green, blue))
	png := encPNG(t, bands(256, 256, red, green, blue))
	garbage := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, bytes.Repeat([]byte{0x13, 0x37}, 500)...)
	for _, tt := range []struct {
		name string
		data []byte
		want error
	}{
		{"zero bytes", nil, ErrCorrupt},
		{"text", []byte("hello, world"), ErrUnsupported},
		{"png header claiming 100000x100000", pngHeaderOnly(100000, 100000), ErrTooLarge},
		{"truncated jpeg", jpg[:len(jpg)/2], ErrCorrupt},
		{"truncated png", png[:len(png)/2], ErrCorrupt},
		{"jpeg magic then garbage", garbage, ErrCorrupt},
		{"png magic only", []byte("\x89PNG\r\n\x1a\n"), ErrCorrupt},
		{"gif magic only", []byte("GIF89a"), ErrCorrupt},
		{"webp magic only", []byte("RIFF\x00\x00\x00\x00WEBPVP8 "), ErrCorrupt},
		{"avif brand only", []byte("\x00\x00\x00\x18ftypavif\x00\x00\x00\x00"), ErrCorrupt},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := Process(context.Background(), tt.data, Options{Width: 100, Height: 100, Format: FormatJPEG}, DefaultLimits())
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
	// Still healthy afterwards.
	if _, err := Process(context.Background(), jpg, Options{Width: 10, Format: FormatJPEG}, DefaultLimits()); err != nil {
		t.Fatalf("after hostile inputs: %v", err)
	}
}

func TestDecompressionBombIsRefusedFromTheHeader(t *testing.T) {
	bomb := pngHeaderOnly(100000, 100000)
	start := time.Now()
	_, err := Probe(bomb, DefaultLimits())
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("refusing the bomb took %v; the header alone should do", d)
	}
	lim := DefaultLimits()
	lim.MaxInputBytes = 10
	if _, err := Probe(encPNG(t, bands(8, 8, red)), lim); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over MaxInputBytes: err = %v, want ErrTooLarge", err)
	}
}
