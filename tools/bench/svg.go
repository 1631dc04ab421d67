package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79"}

// cdfSVG draws one empirical CDF per series, latency on a log scale.
func cdfSVG(series map[string][]time.Duration) string {
	const w, h, left, right, top, bottom = 900, 480, 70, 300, 30, 50
	names := make([]string, 0, len(series))
	lo, hi := math.Inf(1), 0.0
	for name, d := range series {
		if len(d) == 0 {
			continue
		}
		names = append(names, name)
		lo = math.Min(lo, ms64(d[0]))
		hi = math.Max(hi, ms64(d[len(d)-1]))
	}
	sort.Strings(names)
	lo, hi = math.Pow(10, math.Floor(math.Log10(math.Max(lo, 0.01)))), math.Pow(10, math.Ceil(math.Log10(math.Max(hi, 0.1))))
	x := func(v float64) float64 {
		return left + (math.Log10(math.Max(v, lo))-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*(w-left-right)
	}
	y := func(p float64) float64 { return top + (1-p)*(h-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="18" font-size="14">Latency CDF per operation (log scale)</text>`+"\n", left)
	for d := lo; d <= hi*1.0001; d *= 10 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle">%g ms</text>`+"\n", x(d), top, x(d), h-bottom, x(d), h-bottom+16, d)
	}
	for _, p := range []float64{0, 0.5, 0.9, 0.99, 1} {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", left, y(p), w-right, y(p), left-6, y(p)+4, p)
	}
	for i, name := range names {
		d := series[name]
		var pts []string
		for j, v := range d {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(ms64(v)), y(float64(j+1)/float64(len(d)))))
		}
		color := palette[i%len(palette)]
		dash := ""
		if strings.Contains(name, "reference") {
			dash = ` stroke-dasharray="5,3"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5"%s points="%s"/>`+"\n", color, dash, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/><text x="%d" y="%d">%s</text>`+"\n",
			w-right+10, top+10+i*18, w-right+30, top+10+i*18, color, dash, w-right+35, top+14+i*18, name)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">latency</text></svg>`+"\n", (w-right+left)/2, h-10)
	return b.String()
}

// histSVG draws histograms of failover times after SIGKILL and of handoffs after release.
func histSVG(kill, handoff []time.Duration) string {
	const w, h, left, right, top, bottom = 900, 420, 60, 30, 40, 50
	max := 0.0
	for _, d := range append(append([]time.Duration{}, kill...), handoff...) {
		max = math.Max(max, d.Seconds())
	}
	max = math.Ceil(max*2) / 2
	if max == 0 {
		max = 1
	}
	const bins = 40
	width := max / bins
	count := func(ds []time.Duration) []int {
		c := make([]int, bins)
		for _, d := range ds {
			i := int(d.Seconds() / width)
			if i >= bins {
				i = bins - 1
			}
			c[i]++
		}
		return c
	}
	kc, hc := count(kill), count(handoff)
	top1 := 1
	for i := range bins {
		top1 = int(math.Max(float64(top1), float64(max2(kc[i], hc[i]))))
	}
	x := func(s float64) float64 { return left + s/max*(w-left-right) }
	y := func(n int) float64 { return top + (1-float64(n)/float64(top1))*(h-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="20" font-size="14">Time until a --wait standby holds the lease (lease 3 s, retry 250 ms)</text>`+"\n", left)
	for s := 0.0; s <= max+1e-9; s += 0.5 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/><text x="%.1f" y="%d" text-anchor="middle">%.1f s</text>`+"\n", x(s), top, x(s), h-bottom, x(s), h-bottom+16, s)
	}
	for n := 0; n <= top1; n++ {
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%d</text>`+"\n", left-6, y(n)+4, n)
	}
	for i := range bins {
		bw := x(width) - x(0)
		if kc[i] > 0 {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#d62728" opacity="0.8"/>`+"\n", x(float64(i)*width), y(kc[i]), bw-1, y(0)-y(kc[i]))
		}
		if hc[i] > 0 {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1f77b4" opacity="0.8"/>`+"\n", x(float64(i)*width), y(hc[i]), bw-1, y(0)-y(hc[i]))
		}
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="#d62728"/><text x="%d" y="%d">after SIGKILL of the holder (%d)</text>`+"\n", w-right-300, top, w-right-284, top+10, len(kill))
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="#1f77b4"/><text x="%d" y="%d">after the holder released (%d)</text>`+"\n", w-right-300, top+18, w-right-284, top+28, len(handoff))
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">seconds</text></svg>`+"\n", (w+left)/2, h-10)
	return b.String()
}

func max2(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func ms64(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
