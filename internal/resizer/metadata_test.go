package resizer

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// withEXIF inserts an Exif APP1 segment after the SOI marker of a JPEG:
// IFD0 holds Orientation and a pointer to a GPS IFD with a latitude ref.
func withEXIF(jpg []byte, orientation uint16) []byte {
	le := binary.LittleEndian
	var tiff bytes.Buffer
	tiff.WriteString("II*\x00")
	binary.Write(&tiff, le, uint32(8))
	binary.Write(&tiff, le, uint16(2))                     // IFD0 entries
	binary.Write(&tiff, le, []uint16{0x0112, 3})           // Orientation SHORT
	binary.Write(&tiff, le, uint32(1))                     //   count
	binary.Write(&tiff, le, []uint16{orientation, 0})      //   value
	binary.Write(&tiff, le, []uint16{0x8825, 4})           // GPSInfo LONG
	binary.Write(&tiff, le, []uint32{1, 8 + 2 + 2*12 + 4}) //   count, offset of the GPS IFD
	binary.Write(&tiff, le, uint32(0))                     // no IFD1
	binary.Write(&tiff, le, uint16(1))                     // GPS IFD entries
	binary.Write(&tiff, le, []uint16{0x0001, 2})           // GPSLatitudeRef ASCII
	binary.Write(&tiff, le, uint32(2))                     //   count
	tiff.WriteString("N\x00\x00\x00")                      //   value
	binary.Write(&tiff, le, uint32(0))                     // no next IFD
	seg := append([]byte("Exif\x00\x00"), tiff.Bytes()...)
	var out bytes.Buffer
	out.Write(jpg[:2])
	out.Write([]byte{0xff, 0xe1})
	binary.Write(&out, binary.BigEndian, uint16(len(seg)+2))
	out.Write(seg)
	out.Write(jpg[2:])
	return out.Bytes()
}

func TestOrientationAppliedAndMetadataStrippedByDefault(t *testing.T) {
	ts := startServer(t, nil, nil)
	// Stored 200×100; orientation 6 means it is shown rotated, 100×200.
	src := withEXIF(jpegOf(t, 200, 100), 6)
	if _, w, h := decoded(t, src); w != 200 || h != 100 {
		t.Fatalf("test source %dx%d", w, h)
	}
	resp, body := do(t, "POST", ts.url+"/v1/resize?w=50&format=jpeg", src)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if _, w, h := decoded(t, body); w != 50 || h != 100 {
		t.Errorf("output %dx%d, want 50x100 (orientation applied)", w, h)
	}
	if bytes.Contains(body, []byte("Exif\x00\x00")) {
		t.Errorf("Exif (and so GPS) kept without meta=keep")
	}
	resp, body = do(t, "POST", ts.url+"/v1/resize?w=50&format=jpeg&meta=keep", src)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("Exif\x00\x00")) {
		t.Errorf("meta=keep: %d, Exif present %v", resp.StatusCode, bytes.Contains(body, []byte("Exif\x00\x00")))
	}
}
