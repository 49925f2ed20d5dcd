// Command benchtable reads `go test -bench -benchmem` output on stdin and
// prints, as Markdown, the median of every metric of every benchmark over
// its -count runs, and for sub-benchmarks named after a client
// (.../bare, .../spotflowhttp, ...) the ratio of each client's median to
// bare's in the same group, and the difference in ns/op.
//
//	go test -run '^$' -bench . -benchmem -count 5 ./... | tee out.txt
//	go run ./cmd/benchtable < out.txt
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

var procSuffix = regexp.MustCompile(`-\d+$`)

func main() {
	type key struct{ name, unit string }
	samples := map[key][]float64{}
	var names []string
	units := map[string][]string{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := procSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			u := f[i+1]
			k := key{name, u}
			if len(samples[k]) == 0 {
				units[name] = append(units[name], u)
			}
			samples[k] = append(samples[k], v)
		}
	}
	median := func(xs []float64) float64 {
		s := slices.Clone(xs)
		sort.Float64s(s)
		if len(s)%2 == 1 {
			return s[len(s)/2]
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	group := func(n string) (string, string) {
		i := strings.LastIndex(n, "/")
		if i < 0 {
			return n, ""
		}
		return n[:i], n[i+1:]
	}

	hasCustom := func(n string) bool {
		for _, u := range units[n] {
			if u != "ns/op" && u != "B/op" && u != "allocs/op" && u != "MB/s" {
				return true
			}
		}
		return false
	}

	// Plain benchmarks: ns/op, B/op, allocs/op and ratios to bare.
	fmt.Println("| benchmark | client | ns/op | × bare | Δ ns vs bare | B/op | × bare | allocs/op | Δ allocs | runs | ns/op min–max |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, n := range names {
		ns, ok := samples[key{n, "ns/op"}]
		if !ok || len(samples[key{n, "allocs/op"}]) == 0 || hasCustom(n) {
			continue
		}
		g, client := group(n)
		bare := g + "/bare"
		row := fmt.Sprintf("| %s | %s | %.0f", g, client, median(ns))
		if b, ok := samples[key{bare, "ns/op"}]; ok {
			row += fmt.Sprintf(" | %.2f | %+.0f", median(ns)/median(b), median(ns)-median(b))
		} else {
			row += " | | "
		}
		bo := median(samples[key{n, "B/op"}])
		row += fmt.Sprintf(" | %.0f", bo)
		if b, ok := samples[key{bare, "B/op"}]; ok {
			row += fmt.Sprintf(" | %.2f", bo/median(b))
		} else {
			row += " | "
		}
		al := median(samples[key{n, "allocs/op"}])
		row += fmt.Sprintf(" | %.0f", al)
		if b, ok := samples[key{bare, "allocs/op"}]; ok {
			row += fmt.Sprintf(" | %+.0f", al-median(b))
		} else {
			row += " | "
		}
		row += fmt.Sprintf(" | %d | %.0f–%.0f |", len(ns), slices.Min(ns), slices.Max(ns))
		fmt.Println(row)
	}

	// Benchmarks with custom metrics (the interleaved ones).
	first := true
	for _, n := range names {
		if !hasCustom(n) {
			continue
		}
		var custom []string
		for _, u := range units[n] {
			if u != "ns/op" && u != "B/op" && u != "allocs/op" && u != "MB/s" {
				custom = append(custom, u)
			}
		}
		sort.Strings(custom)
		if first {
			fmt.Println("\n| benchmark | metric | median | min–max | runs |")
			fmt.Println("|---|---|---:|---:|---:|")
			first = false
		}
		for _, u := range custom {
			xs := samples[key{n, u}]
			prec := 0
			if median(xs) < 10 {
				prec = 3
			}
			fmt.Printf("| %s | %s | %.*f | %.*f–%.*f | %d |\n", n, u, prec, median(xs), prec, slices.Min(xs), prec, slices.Max(xs), len(xs))
		}
	}
}
