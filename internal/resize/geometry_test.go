package resize

import (
	"errors"
	"testing"
)

func TestMakePlan(t *testing.T) {
	for _, tt := range []struct {
		name             string
		sw, sh           int
		o                Options
		animated         bool
		resizeW, resizeH int
		boxW, boxH       int
		post             postMode
	}{
		{"cover 4K to square", 3840, 2400, Options{Width: 1080, Height: 1080}, false, 1728, 1080, 1080, 1080, postExtract},
		{"cover exact aspect needs no cut", 3840, 2400, Options{Width: 1920, Height: 1200}, false, 1920, 1200, 1920, 1200, postNone},
		{"cover smart", 3840, 2400, Options{Width: 1080, Height: 1080, Gravity: GravitySmart}, false, 1728, 1080, 1080, 1080, postSmart},
		{"cover smart animated falls back to a cut", 400, 200, Options{Width: 100, Height: 100, Gravity: GravitySmart}, true, 200, 100, 100, 100, postExtract},
		{"cover enlarges", 100, 50, Options{Width: 400, Height: 400}, false, 800, 400, 400, 400, postExtract},
		{"contain pads", 3840, 2400, Options{Width: 1080, Height: 1080, Fit: FitContain}, false, 1080, 675, 1080, 1080, postEmbed},
		{"fill", 3840, 2400, Options{Width: 100, Height: 300, Fit: FitFill}, false, 100, 300, 100, 300, postNone},
		{"inside", 3840, 2400, Options{Width: 1000, Height: 1000, Fit: FitInside}, false, 1000, 625, 1000, 625, postNone},
		{"inside never enlarges", 300, 200, Options{Width: 1000, Height: 1000, Fit: FitInside}, false, 300, 200, 300, 200, postNone},
		{"width only", 3840, 2400, Options{Width: 800}, false, 800, 500, 800, 500, postNone},
		{"height only", 3840, 2400, Options{Height: 600}, false, 960, 600, 960, 600, postNone},
		{"neither keeps size", 640, 480, Options{}, false, 640, 480, 640, 480, postNone},
		{"one pixel minimum", 10000, 10, Options{Width: 100}, false, 100, 1, 100, 1, postNone},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := tt.o.normalize(Info{Format: FormatJPEG})
			if err != nil {
				t.Fatal(err)
			}
			p, err := makePlan(tt.sw, tt.sh, o, tt.animated)
			if err != nil {
				t.Fatal(err)
			}
			if p.resizeW != tt.resizeW || p.resizeH != tt.resizeH || p.boxW != tt.boxW || p.boxH != tt.boxH || p.post != tt.post {
				t.Fatalf("plan %+v; want resize %dx%d box %dx%d post %d", p, tt.resizeW, tt.resizeH, tt.boxW, tt.boxH, tt.post)
			}
		})
	}
}

func TestMakePlanRefusesDerivedSizesBeyondTheMaximum(t *testing.T) {
	_, err := makePlan(10, 10000, Options{Height: 16000, Fit: FitCover, Gravity: GravityCentre}, false)
	if err != nil {
		t.Fatalf("16000 high from 10x10000 is fine: %v", err)
	}
	_, err = makePlan(10000, 10, Options{Height: 100, Fit: FitCover, Gravity: GravityCentre}, false)
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("deriving width 100000: err = %v, want ErrInvalidOptions", err)
	}
}

func TestOffsetPlacesByGravity(t *testing.T) {
	for _, tt := range []struct {
		outer, inner int
		w            float64
		want         int
	}{{100, 40, 0, 0}, {100, 40, 0.5, 30}, {100, 40, 1, 60}, {40, 100, 0.5, -30}} {
		if got := offset(tt.outer, tt.inner, tt.w); got != tt.want {
			t.Errorf("offset(%d, %d, %v) = %d, want %d", tt.outer, tt.inner, tt.w, got, tt.want)
		}
	}
}
