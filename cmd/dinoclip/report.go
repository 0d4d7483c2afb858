package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dinoclip/dinoclip/retrieval"
)

// tableKs are the recall cut-offs in the table, as CLIP_benchmark reports
// them.
var tableKs = []int{1, 5, 10}

// writeRecallTable prints evaluation reports as a table: one row per set
// and direction, recall@1/5/10 of CLIP's own image embeddings and of the
// projected DINOv2 features (in percent), and the projection's R@5 as a
// percentage of CLIP's:
//
//	                        ------- CLIP -------  ---- projection ----
//	set        direction       R@1    R@5   R@10     R@1    R@5   R@10  % of CLIP
//	mscoco-5k  text->image   33.10  58.40  69.00   27.40  48.41  59.98      82.90
//	           image->text   52.40  76.70  84.60   40.66  59.50  70.11      77.57
//	recall@k in %; % of CLIP = projection R@5 / CLIP R@5
func writeRecallTable(w io.Writer, reports []retrieval.Report) error {
	nameW := len("set")
	for _, r := range reports {
		nameW = max(nameW, len(shown(r.Name)))
	}
	const dirW = len("text->image")
	block := func(a, b, c string) string { return fmt.Sprintf("%6s %6s %6s", a, b, c) }
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-*s  %-*s  %s  %s\n", nameW, "", dirW, "", groupHeader("CLIP", 20), groupHeader("projection", 20))
	fmt.Fprintf(&sb, "%-*s  %-*s  %s  %s  %9s\n", nameW, "set", dirW, "direction",
		block("R@1", "R@5", "R@10"), block("R@1", "R@5", "R@10"), "% of CLIP")
	for _, r := range reports {
		for i, dir := range []string{"text->image", "image->text"} {
			name := shown(r.Name)
			if i > 0 {
				name = ""
			}
			pick := func(rk retrieval.RecallAtK) float64 {
				if i == 0 {
					return rk.TextToImagePercent
				}
				return rk.ImageToTextPercent
			}
			cells := func(res retrieval.Result) string {
				var v [3]string
				for j, k := range tableKs {
					v[j] = "-"
					if rk, ok := res.At(k); ok {
						v[j] = fmt.Sprintf("%.2f", pick(rk))
					}
				}
				return block(v[0], v[1], v[2])
			}
			pct := r.PercentOfCLIP.TextToImagePercent
			if i > 0 {
				pct = r.PercentOfCLIP.ImageToTextPercent
			}
			// (A report without its percentage, one recorded empty, shows
			// none, as its recalls do.)
			pctText := "-"
			if r.PercentOfCLIP.K > 0 {
				pctText = fmt.Sprintf("%.2f", pct)
			}
			fmt.Fprintf(&sb, "%-*s  %-*s  %s  %s  %9s\n", nameW, name, dirW, dir, cells(r.CLIP), cells(r.Projected), pctText)
		}
	}
	fmt.Fprintf(&sb, "recall@k in %%; %% of CLIP = projection R@%d / CLIP R@%d\n", r5K(reports), r5K(reports))
	_, err := io.WriteString(w, sb.String())
	return err
}

// groupHeader centres title in a rule of width characters:
// "------- CLIP -------".
func groupHeader(title string, width int) string {
	title = " " + title + " "
	left := max(0, (width-len(title))/2)
	right := max(0, width-len(title)-left)
	return strings.Repeat("-", left) + title + strings.Repeat("-", right)
}

// r5K is the cut-off the "% of CLIP" column compares (5 unless the reports
// say otherwise).
func r5K(reports []retrieval.Report) int {
	for _, r := range reports {
		if r.PercentOfCLIP.K > 0 {
			return r.PercentOfCLIP.K
		}
	}
	return 5
}

// warnRecordedAsOther warns on w that record, a JSON document, names path,
// which is not UTF-8 text, by another: JSON holds text, and the bytes that
// are not become U+FFFD, so the record names no file. (A command whose
// record a later run reads back, a run's or an index's, refuses such a
// path instead.)
func warnRecordedAsOther(w io.Writer, record, path string) {
	if !utf8.ValidString(path) {
		fmt.Fprintf(w, "dinoclip: warning: %s: the path is not UTF-8 text, and %s records it as text, U+FFFD in place of the bytes that are not: the record names no file\n", shown(path), record)
	}
}

// shown is a name or path read from a file (an evaluation set's name, a
// path a record holds) as dinoclip prints it: as written when that is
// plain printable text, else quoted with Go's escapes, so that what a file
// says cannot move the cursor, recolour the terminal or forge a row.
func shown(name string) string {
	if q := strconv.Quote(name); name != "" && q[1:len(q)-1] == name {
		return name
	}
	return strconv.Quote(name)
}
