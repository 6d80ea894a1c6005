package traffic

// scale is the weight resolution: release.Weight's basis points, so the
// smallest canary share is 0.01% and every weight is split exactly.
const scale = 10000

// canaryTurn reports whether request number n of an app goes to the canary
// when w of every scale requests should. It is Bresenham's line: the
// canary's running total after n+1 requests is floor((n+1)·w/scale), and
// request n goes to the canary exactly when that total steps up. So 1% is
// requests 99, 199, 299…: every window of k consecutive requests holds
// floor or ceil of k·w/scale canary requests, and one atomic counter is all
// the state — no lock, no drift, no randomness. The pattern repeats every
// scale requests, which also keeps the arithmetic far from overflow.
func canaryTurn(n uint64, w int) bool {
	m := n % scale
	return ((m+1)*uint64(w))/scale != (m*uint64(w))/scale
}

// stickyBucket maps a sticky header value (a user id) to one of scale
// buckets. Bucket b is on the canary while the weight is above b, so a
// user who reached the canary stays there while the weight grows and only
// leaves when it shrinks below their bucket. FNV-1a, inline so that the hot
// path does not allocate.
func stickyBucket[T string | []byte](v T) int {
	h := uint32(2166136261)
	for i := 0; i < len(v); i++ {
		h ^= uint32(v[i])
		h *= 16777619
	}
	// Mix the high bits in: FNV's low bits are weak for short keys.
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	return int(h % scale)
}
