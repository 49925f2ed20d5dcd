package bench

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// OutageTable formats outage results as a Markdown table.
func OutageTable(rs []OutageResult) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	fmt.Fprintln(w, "| client\t| requests\t| server hits\t| hits/request\t| TCP conns\t| elapsed\t|")
	fmt.Fprintln(w, "|---\t|---:\t|---:\t|---:\t|---:\t|---:\t|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s\t| %d\t| %d\t| %.3f\t| %d\t| %s\t|\n",
			r.Client, r.Requests, r.Hits, r.HitsPerRequest(), r.Conns, r.Elapsed.Round(time.Millisecond))
	}
	w.Flush()
	return b.String()
}

// LimitsTable formats rate-limit results as a Markdown table.
func LimitsTable(rs []LimitsResult) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	fmt.Fprintln(w, "| client\t| goodput (2xx/s)\t| calls ok\t| calls failed\t| server hits\t| 429s served\t| 429 share\t|")
	fmt.Fprintln(w, "|---\t|---:\t|---:\t|---:\t|---:\t|---:\t|---:\t|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s\t| %.1f\t| %d\t| %d\t| %d\t| %d\t| %.1f %%\t|\n",
			r.Client, r.Goodput(), r.CallsOK, r.CallsError, r.Hits, r.Served429, 100*r.Share429())
	}
	w.Flush()
	return b.String()
}
