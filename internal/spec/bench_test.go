package spec

import (
	"os"
	"testing"
)

// BenchmarkParseResizerSpec measures loading the example spec (decode,
// defaults, validation, template checks); ship does it once at start.
func BenchmarkParseResizerSpec(b *testing.B) {
	data, err := os.ReadFile("../../examples/apps/resizer.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse("resizer.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunFor measures rendering one instance's command line; the
// embedded runtime does it per instance start.
func BenchmarkRunFor(b *testing.B) {
	apps, err := LoadFile("../../examples/apps/resizer.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, _, _, err := apps[0].RunFor("v2", 40000, "", 1); err != nil {
			b.Fatal(err)
		}
	}
}
