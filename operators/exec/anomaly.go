package exec

import (
	"math"
	"sort"

	"github.com/millstream/millstream/operators/expr"
	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Anomaly detection, evaluated like the other analytic functions: per
// PARTITION BY key, over the last historySize events within LIMIT
// DURATION (WHEN selects the events fed to the model). Both return a
// record {IsAnomaly: bigint 0/1, Score: float}. The models are
// deterministic, so replay and restore reproduce the same scores.
//
// AnomalyDetection_SpikeAndDip: adaptive kernel density estimation. The
// history is smoothed with Gaussian kernels whose bandwidth follows
// Silverman's rule (1.06 * stddev * n^-1/5); the score is the p-value of
// the new value under that density: P(X >= x) for spikes, P(X <= x) for
// dips, twice the smaller for both. The event is an anomaly when the
// p-value is below 1 - confidence/100. Lower scores are more anomalous.
//
// AnomalyDetection_ChangePoint: an exchangeability martingale. Each event's
// strangeness is its distance from the mean of the history; its conformal
// p-value is the share of history events at least as strange (ties count
// half, so the result does not depend on a random draw). A power
// martingale M <- M * eps * p^(eps-1), eps = 0.7, grows while events keep
// being strange, as after a level or trend change, and is floored at 1 so
// that a long quiet stretch does not bury it (the CUSUM form of the test).
// The alarm level is 1/(1 - confidence/100), the level Ville's inequality
// bounds for a true martingale; the floor makes false alarms somewhat more
// likely than that bound over long runs. After an alarm the martingale
// restarts at 1 so the next change can be seen. The score is M.

const (
	martingaleEps = 0.7
	minHistory    = 3 // fewer past events: no verdict (IsAnomaly 0)
)

var anomalyNames = []string{"IsAnomaly", "Score"}

func anomalyRecord(isAnomaly bool, score float64) value.Value {
	flag := int64(0)
	if isAnomaly {
		flag = 1
	}
	return value.RecordValue(&value.Record{Names: anomalyNames, Vals: []value.Value{value.Int(flag), value.FloatValue(score)}})
}

// anomaly scores the current value against the history and then adds it.
func (op *analyticOp) anomaly(ctx *expr.Ctx, h *analyticHist, matches bool, cur value.Value) value.Value {
	if !matches {
		return value.Value{}
	}
	if cur.IsNull() {
		return value.Value{}
	}
	x, ok := cur.AsFloat()
	if !ok || math.IsNaN(x) || math.IsInf(x, 0) {
		return ctx.Fail(&typeError{msg: "anomaly detection needs a number, not " + cur.Kind().String()})
	}
	hist := make([]float64, 0, len(h.entries))
	for _, e := range h.entries {
		f, _ := e.v.AsFloat()
		hist = append(hist, f)
	}
	alpha := 1 - op.confidence/100
	var out value.Value
	if op.fn == pb.Analytic_SPIKE_AND_DIP {
		if len(hist) < minHistory {
			out = anomalyRecord(false, 1)
		} else {
			p := kdePValue(hist, x, op.mode)
			out = anomalyRecord(p < alpha, p)
		}
	} else {
		if h.m == 0 {
			h.m = 1
		}
		if len(hist) >= minHistory {
			p := conformalPValue(hist, x)
			// Floored at 1: a long quiet stretch must not bury the martingale
			// so deep that a later change takes ages to surface (the CUSUM
			// form of the test).
			h.m = math.Max(1, h.m*martingaleEps*math.Pow(p, martingaleEps-1))
		}
		score := h.m
		alarm := alpha > 0 && score >= 1/alpha
		if alarm {
			h.m = 1
		}
		out = anomalyRecord(alarm, score)
	}
	h.entries = append(h.entries, analyticEntry{ts: ctx.TS, v: value.FloatValue(x)})
	if extra := len(h.entries) - op.historySize; extra > 0 {
		h.entries = append(h.entries[:0], h.entries[extra:]...)
	}
	return out
}

type typeError struct{ msg string }

func (e *typeError) Error() string { return "exec: " + e.msg }
func (e *typeError) Unwrap() error { return expr.ErrType }

func meanStd(xs []float64) (mean, std float64) {
	for _, v := range xs {
		mean += v
	}
	mean /= float64(len(xs))
	for _, v := range xs {
		std += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(std / float64(len(xs)))
}

func normCDF(z float64) float64 { return 0.5 * math.Erfc(-z/math.Sqrt2) }

// kdePValue is the tail probability of x under a Gaussian KDE of hist.
func kdePValue(hist []float64, x float64, mode string) float64 {
	mean, std := meanStd(hist)
	bw := 1.06 * std * math.Pow(float64(len(hist)), -0.2)
	if floor := 1e-9 * math.Max(1, math.Abs(mean)); bw < floor {
		bw = floor
	}
	upper, lower := 0.0, 0.0
	for _, v := range hist {
		z := (x - v) / bw
		upper += 1 - normCDF(z)
		lower += normCDF(z)
	}
	n := float64(len(hist))
	upper, lower = upper/n, lower/n
	switch mode {
	case "spikes":
		return upper
	case "dips":
		return lower
	}
	return math.Min(1, 2*math.Min(upper, lower))
}

// conformalPValue: the share of history points at least as far from the
// history mean as x, ties counted half, with x itself counted as a tie.
func conformalPValue(hist []float64, x float64) float64 {
	mean, _ := meanStd(hist)
	a := math.Abs(x - mean)
	strange := make([]float64, len(hist))
	for i, v := range hist {
		strange[i] = math.Abs(v - mean)
	}
	sort.Float64s(strange)
	greater := len(strange) - sort.SearchFloat64s(strange, math.Nextafter(a, math.Inf(1)))
	equal := len(strange) - greater - sort.SearchFloat64s(strange, a)
	return (float64(greater) + 0.5*float64(equal+1)) / float64(len(hist)+1)
}
