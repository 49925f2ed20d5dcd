package spotflowhttp

import (
	"net/http"
	"strings"
	"time"
)

// maxRetryAfterSeconds keeps absurd delta-seconds and far dates from
// overflowing a time.Duration or a time; anything this long is over every cap
// anyway.
const maxRetryAfterSeconds = 1 << 30

// parseRetryAfter parses a Retry-After value in either form RFC 9110
// allows, delta-seconds ("120") or an HTTP-date, into a wait from now, at
// most maxRetryAfterSeconds. A date in the past is a wait of 0. It reports
// false for a missing or malformed value.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	const most = maxRetryAfterSeconds * time.Second
	if v[0] >= '0' && v[0] <= '9' {
		var n int64
		for i := 0; i < len(v); i++ {
			c := v[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			if n < maxRetryAfterSeconds {
				n = n*10 + int64(c-'0')
			}
		}
		return time.Duration(min(n, maxRetryAfterSeconds)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), most), true
}
