package value

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseTimeForms(t *testing.T) {
	want := FromTime(time.Date(2021, 10, 26, 10, 15, 1, 250_000_000, time.UTC))
	for _, s := range []string{
		"2021-10-26T10:15:01.25Z", "2021-10-26T10:15:01.2500000Z", "2021-10-26T10:15:01.25",
		"2021-10-26 10:15:01.25", "2021-10-26T12:15:01.25+02:00", "2021-10-26T05:15:01.25-0500",
	} {
		got, err := ParseTime(s)
		require.NoError(t, err, s)
		require.Equal(t, want, got, s)
	}
	day, err := ParseTime("1900-01-01")
	require.NoError(t, err)
	require.Equal(t, "1900-01-01T00:00:00.0000000Z", FormatTicks(day))
	for _, s := range []string{"", "2021", "2021-13-01", "2021-02-30T00:00:00Z", "2021-01-01T25:00:00Z", "2021-01-01T00:00:00.Z", "2021-01-01T00:00:00Zjunk", "yesterday"} {
		_, err := ParseTime(s)
		require.ErrorIs(t, err, ErrBadTime, s)
	}
}

func TestTicksRoundTrip(t *testing.T) {
	for _, s := range []string{"0001-01-01T00:00:00.0000000Z", "1969-12-31T23:59:59.9999999Z", "2024-02-29T12:34:56.7890123Z", "9999-12-31T23:59:59.9999999Z"} {
		ticks, err := ParseTime(s)
		require.NoError(t, err)
		require.Equal(t, s, FormatTicks(ticks))
	}
	require.Equal(t, UnixEpochTicks, FromTime(time.Unix(0, 0)))
}

func TestDecodeTypesAndErrors(t *testing.T) {
	var d Decoder
	r, err := d.Decode([]byte(` {"i": -12, "f": 1.5e2, "big": 1e400, "s": "a\"\u00e9\n", "b": true, "n": null, "o": {"x": [1, "2", false]}} `))
	require.Error(t, err, "1e400 is out of range")
	r, err = d.Decode([]byte(`{"i": -12, "f": 1.5e2, "huge": 123456789012345678901234567890, "s": "a\"\u00e9\n\ud83d\ude00", "b": true, "n": null, "o": {"x": [1, "2", false]}}`))
	require.NoError(t, err)
	get := func(n string) Value { v, ok := r.Get(n); require.True(t, ok, n); return v }
	require.Equal(t, Int(-12), get("i"))
	require.Equal(t, FloatValue(150), get("F"), "case-insensitive lookup")
	require.Equal(t, Float, get("huge").Kind())
	require.Equal(t, "a\"é\n😀", get("s").Str())
	require.True(t, get("b").Bool())
	require.True(t, get("n").IsNull())
	x, _ := get("o").Record().Get("x")
	require.Len(t, x.Array().Items, 3)
	for _, bad := range []string{``, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":01}`, `{"a":"\x"}`, `{"a":tru}`, `{"a":1} x`, `{"a":"` + "\x01" + `"}`, `"str"`} {
		_, err := d.Decode([]byte(bad))
		require.ErrorIs(t, err, ErrBadJSON, bad)
	}
	deep := ""
	for i := 0; i < 100; i++ {
		deep += `{"a":`
	}
	_, err = d.Decode([]byte(deep))
	require.ErrorIs(t, err, ErrBadJSON)
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	r := &Record{Names: []string{"s", "f", "i", "whole", "nan", "t", "b"}, Vals: []Value{
		Str("q\"\\\n\t\x01é"), FloatValue(0.1), Int(-3), FloatValue(70), FloatValue(math.NaN()), Time(UnixEpochTicks), BitValue(false),
	}}
	out := AppendRecordJSON(nil, r)
	var back map[string]any
	require.NoError(t, json.Unmarshal(out, &back), string(out))
	require.Equal(t, "q\"\\\n\t\x01é", back["s"])
	require.Equal(t, 0.1, back["f"])
	require.Equal(t, "70.0", string(AppendFloat(nil, 70)))
	require.Nil(t, back["nan"])
	require.Equal(t, "1970-01-01T00:00:00.0000000Z", back["t"])
	require.Equal(t, false, back["b"])
}

func TestCompareAndKeys(t *testing.T) {
	c, err := Compare(Int(1), FloatValue(1.5))
	require.NoError(t, err)
	require.Equal(t, -1, c)
	ts, _ := ParseTime("2020-01-01T00:00:00Z")
	c, err = Compare(Time(ts), Str("2020-01-01T00:00:01Z"))
	require.NoError(t, err)
	require.Equal(t, -1, c)
	_, err = Compare(Str("a"), Int(1))
	var inc *ErrIncomparable
	require.True(t, errors.As(err, &inc))
	require.Equal(t, string(AppendKey(nil, Int(1))), string(AppendKey(nil, FloatValue(1))), "1 and 1.0 group together")
	require.NotEqual(t, string(AppendKey(nil, Str("1"))), string(AppendKey(nil, Int(1))))
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"deviceId":"d1","temperature":71.5,"t":"2026-01-01T00:00:00Z"}`, `{"o":{"a":[1,{"b":null}]},"s":"\u00e9\\"}`, `{}`, `{"a":-0.0e-0}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d Decoder
		r, err := d.Decode(data)
		valid := json.Valid(data)
		// Skipping fields checks the same syntax as decoding them.
		filtered := Decoder{Fields: []string{"a"}}
		if _, ferr := filtered.Decode(data); (ferr == nil) != (err == nil) {
			t.Fatalf("filtered decode disagrees on %q: %v vs %v", data, ferr, err)
		}
		if err != nil {
			if !errors.Is(err, ErrBadJSON) {
				t.Fatalf("error does not wrap ErrBadJSON: %v", err)
			}
			return
		}
		if !valid {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		// What we decode, we encode to valid JSON that decodes to the same record.
		out := AppendRecordJSON(nil, r.Clone())
		if !json.Valid(out) {
			t.Fatalf("encoded invalid JSON %q from %q", out, data)
		}
		var d2 Decoder
		r2, err := d2.Decode(out)
		if err != nil {
			t.Fatalf("re-decode %q: %v", out, err)
		}
		if !Equal(RecordValue(r.Clone()), RecordValue(r2)) {
			t.Fatalf("round trip changed %q into %q", data, out)
		}
	})
}

func TestNumberFastPathMatchesStrconv(t *testing.T) {
	rng := newRand()
	for i := 0; i < 200000; i++ {
		s := randomDecimal(rng)
		want, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err)
		got, err := ParseJSON(s)
		require.NoError(t, err)
		require.Equal(t, math.Float64bits(want), math.Float64bits(got.Float()), s)
	}
}

func newRand() *rand.Rand { return rand.New(rand.NewSource(42)) }

func randomDecimal(rng *rand.Rand) string {
	var b []byte
	if rng.Intn(2) == 0 {
		b = append(b, '-')
	}
	b = strconv.AppendInt(b, rng.Int63n(1_000_000_000), 10)
	b = append(b, '.')
	m := 1 + rng.Intn(9)
	for i := 0; i < m; i++ {
		b = append(b, byte('0'+rng.Intn(10)))
	}
	return string(b)
}
