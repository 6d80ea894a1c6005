package release

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Weight is a share of an app's traffic in basis points: 0 is none, 10000
// all of it, 1 is 0.01%. It is parsed once at the edge (the grammar, the
// spec, the API's JSON) and carried as is by every port, so no layer
// compares floats or rounds on its own.
type Weight int32

const (
	// Full is all of the traffic (100%).
	Full Weight = 10000
	// percent is one percentage point in basis points.
	percent = 100
)

// ParseWeight reads a percentage as people write it: "1%", "1", "0.1%",
// "12.5": at most two decimals, so every weight is exact. It does not check
// the range; see CheckWeights.
func ParseWeight(s string) (Weight, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "%")
	whole, frac, dot := strings.Cut(t, ".")
	if whole == "" || len(whole) > 3 || !digits(whole) || (dot && (frac == "" || len(frac) > 2 || !digits(frac))) {
		return 0, fmt.Errorf("weight %q: want a percentage with at most two decimals, e.g. 1%%, 0.5%% or 12.25", s)
	}
	w, _ := strconv.Atoi(whole)
	bp := w * percent
	if frac != "" {
		f, _ := strconv.Atoi(frac)
		if len(frac) == 1 {
			f *= 10
		}
		bp += f
	}
	return Weight(bp), nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// WeightFromPercent converts a percentage that must be exact in basis
// points (at most two decimals) and within 0..100.
func WeightFromPercent(p float64) (Weight, error) {
	bp := p * percent
	r := Weight(bp + 0.5)
	if bp < 0 {
		r = Weight(bp - 0.5)
	}
	if p != p || p < 0 || p > 100 || abs(bp-float64(r)) > 1e-6 {
		return 0, fmt.Errorf("weight %s%%: want a percentage from 0 to 100 with at most two decimals", strconv.FormatFloat(p, 'f', -1, 64))
	}
	return r, nil
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// Percent is the weight as a percentage (1% = 1.0).
func (w Weight) Percent() float64 { return float64(w) / percent }

// String prints the weight as a percentage: "1%", "0.5%", "12.25%".
func (w Weight) String() string { return w.Number() + "%" }

// Number is the percentage without the sign: "1", "0.5", "12.25".
func (w Weight) Number() string {
	sign := ""
	if w < 0 {
		sign, w = "-", -w
	}
	s := strconv.Itoa(int(w / percent))
	if f := int(w % percent); f != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%02d", f), "0")
	}
	return sign + s
}

// Valid reports whether w is a share of traffic (0..100%).
func (w Weight) Valid() bool { return w >= 0 && w <= Full }

// Of is the weight's share of n (rounded up): the instances a canary at w
// needs out of n stable ones.
func (w Weight) Of(n int) int {
	return (n*int(w) + int(Full) - 1) / int(Full)
}

// MarshalJSON writes the weight as a percentage number (1% is 1, 0.1% is
// 0.1): the API's wire format since the start.
func (w Weight) MarshalJSON() ([]byte, error) { return []byte(w.Number()), nil }

// UnmarshalJSON reads a percentage number; more than two decimals or a
// value outside 0..100 is an error, not a silent rounding.
func (w *Weight) UnmarshalJSON(b []byte) error {
	var p float64
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("weight: want a percentage number: %w", err)
	}
	v, err := WeightFromPercent(p)
	if err != nil {
		return err
	}
	*w = v
	return nil
}

// CheckWeights checks canary steps: each above 0 and at most 100%, rising.
// what names them in the error ("--steps", "spec steps of resizer").
func CheckWeights(ws []Weight, what string) error {
	var prev Weight
	for _, w := range ws {
		if w <= 0 || w > Full {
			return fmt.Errorf("%s: weight %s must be above 0 and at most 100%%", what, w)
		}
		if w <= prev {
			return fmt.Errorf("%s: weights must increase (%s after %s)", what, w, prev)
		}
		prev = w
	}
	return nil
}

// Value stores a weight as its percentage (the store's REAL columns have
// held percentages since the first schema).
func (w Weight) Value() (driver.Value, error) { return w.Percent(), nil }

// Scan reads a stored percentage back.
func (w *Weight) Scan(src any) error {
	var p float64
	switch v := src.(type) {
	case float64:
		p = v
	case int64:
		p = float64(v)
	case nil:
		p = 0
	default:
		return fmt.Errorf("weight: cannot read %T", src)
	}
	v, err := WeightFromPercent(p)
	if err != nil {
		return err
	}
	*w = v
	return nil
}
