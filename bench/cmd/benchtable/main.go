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
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

var procSuffix = regexp.MustCompile(`-\d+$`)

func main() {
	r := parse(os.Stdin)
	printPlain(r)
	printCustom(r)
}

type key struct{ name, unit string }

// results is what the benchmark output said: every sample of every metric,
// the benchmarks in the order they came and the units each one reported.
type results struct {
	samples map[key][]float64
	names   []string
	units   map[string][]string
}

// parse reads `go test -bench` output, ignoring every line that is not a
// benchmark's result.
func parse(in io.Reader) results {
	r := results{samples: map[key][]float64{}, units: map[string][]string{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := procSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
		if !slices.Contains(r.names, name) {
			r.names = append(r.names, name)
		}
		r.add(name, f[2:])
	}
	return r
}

// add records the value–unit pairs of one result line of benchmark name.
func (r *results) add(name string, pairs []string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		v, err := strconv.ParseFloat(pairs[i], 64)
		if err != nil {
			continue
		}
		u := pairs[i+1]
		k := key{name, u}
		if len(r.samples[k]) == 0 {
			r.units[name] = append(r.units[name], u)
		}
		r.samples[k] = append(r.samples[k], v)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// group splits a sub-benchmark's name into its group and its client.
func group(n string) (string, string) {
	i := strings.LastIndex(n, "/")
	if i < 0 {
		return n, ""
	}
	return n[:i], n[i+1:]
}

// custom is the units of benchmark n other than those of -benchmem.
func (r results) custom(n string) []string {
	var custom []string
	for _, u := range r.units[n] {
		if u != "ns/op" && u != "B/op" && u != "allocs/op" && u != "MB/s" {
			custom = append(custom, u)
		}
	}
	return custom
}

// printPlain prints the benchmarks without custom metrics: ns/op, B/op,
// allocs/op and ratios to bare.
func printPlain(r results) {
	fmt.Println("| benchmark | client | ns/op | × bare | Δ ns vs bare | B/op | × bare | allocs/op | Δ allocs | runs | ns/op min–max |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, n := range r.names {
		ns, ok := r.samples[key{n, "ns/op"}]
		if !ok || len(r.samples[key{n, "allocs/op"}]) == 0 || len(r.custom(n)) > 0 {
			continue
		}
		fmt.Println(r.plainRow(n, ns))
	}
}

// plainRow is the row of benchmark n, whose ns/op samples are ns.
func (r results) plainRow(n string, ns []float64) string {
	g, client := group(n)
	bare := g + "/bare"
	row := fmt.Sprintf("| %s | %s | %.0f", g, client, median(ns))
	if b, ok := r.samples[key{bare, "ns/op"}]; ok {
		row += fmt.Sprintf(" | %.2f | %+.0f", median(ns)/median(b), median(ns)-median(b))
	} else {
		row += " | | "
	}
	bo := median(r.samples[key{n, "B/op"}])
	row += fmt.Sprintf(" | %.0f", bo)
	if b, ok := r.samples[key{bare, "B/op"}]; ok {
		row += fmt.Sprintf(" | %.2f", bo/median(b))
	} else {
		row += " | "
	}
	al := median(r.samples[key{n, "allocs/op"}])
	row += fmt.Sprintf(" | %.0f", al)
	if b, ok := r.samples[key{bare, "allocs/op"}]; ok {
		row += fmt.Sprintf(" | %+.0f", al-median(b))
	} else {
		row += " | "
	}
	return row + fmt.Sprintf(" | %d | %.0f–%.0f |", len(ns), slices.Min(ns), slices.Max(ns))
}

// printCustom prints the benchmarks with custom metrics (the interleaved
// ones), a row for each metric.
func printCustom(r results) {
	first := true
	for _, n := range r.names {
		custom := r.custom(n)
		if len(custom) == 0 {
			continue
		}
		sort.Strings(custom)
		if first {
			fmt.Println("\n| benchmark | metric | median | min–max | runs |")
			fmt.Println("|---|---|---:|---:|---:|")
			first = false
		}
		for _, u := range custom {
			xs := r.samples[key{n, u}]
			prec := 0
			if median(xs) < 10 {
				prec = 3
			}
			fmt.Printf("| %s | %s | %.*f | %.*f–%.*f | %d |\n", n, u, prec, median(xs), prec, slices.Min(xs), prec, slices.Max(xs), len(xs))
		}
	}
}
