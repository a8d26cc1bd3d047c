package expr

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/millstream/millstream/operators/value"
)

// Geospatial functions. Geometries are read from GeoJSON records ({"type":
// "Point", "coordinates": [lon, lat]}, as CreatePoint makes) or from WKT
// strings ("POINT(lon lat)", "LINESTRING(...)", "POLYGON((...))"), which
// compatibility level 1.2 accepts. Containment and intersection are
// computed on the plane of longitude and latitude; ST_DISTANCE is the
// great-circle distance in meters between two points.

type geom struct {
	kind  string         // point, linestring, polygon
	rings [][][2]float64 // point: one ring of one vertex; linestring: one ring
}

const earthRadiusM = 6371008.8

// registerGeo adds the geospatial functions to the catalogue.
func registerGeo() {
	funcs["createpoint"] = funcDef{2, 2, fnCreatePoint}
	funcs["createlinestring"] = funcDef{2, -1, fnCreateShape("LineString")}
	funcs["createpolygon"] = funcDef{3, -1, fnCreateShape("Polygon")}
	funcs["st_within"] = funcDef{2, 2, geoPredicate(within)}
	funcs["st_intersects"] = funcDef{2, 2, geoPredicate(intersects)}
	funcs["st_overlaps"] = funcDef{2, 2, geoPredicate(func(a, b *geom) bool {
		return intersects(a, b) && !within(a, b) && !within(b, a)
	})}
	funcs["st_distance"] = funcDef{2, 2, fnDistance}
}

func fnCreatePoint(c *Ctx, a []value.Value) value.Value {
	if anyNull(a) {
		return value.Value{}
	}
	lat, ok1 := a[0].AsFloat()
	lon, ok2 := a[1].AsFloat()
	if !ok1 || !ok2 || math.Abs(lat) > 90 || math.Abs(lon) > 180 {
		return c.failf("CreatePoint needs a latitude and a longitude in degrees")
	}
	return geoRecord("Point", value.ArrayValue(&value.Array{Items: []value.Value{value.FloatValue(lon), value.FloatValue(lat)}}))
}

func fnCreateShape(kind string) func(c *Ctx, a []value.Value) value.Value {
	return func(c *Ctx, a []value.Value) value.Value {
		var coords []value.Value
		for _, p := range a {
			g, err := readGeom(p)
			if err != nil || g.kind != "point" {
				return c.failf("Create%s takes points (CreatePoint)", kind)
			}
			v := g.rings[0][0]
			coords = append(coords, value.ArrayValue(&value.Array{Items: []value.Value{value.FloatValue(v[0]), value.FloatValue(v[1])}}))
		}
		line := value.ArrayValue(&value.Array{Items: coords})
		if kind == "Polygon" {
			return geoRecord(kind, value.ArrayValue(&value.Array{Items: []value.Value{line}}))
		}
		return geoRecord(kind, line)
	}
}

func geoRecord(kind string, coords value.Value) value.Value {
	return value.RecordValue(&value.Record{Names: []string{"type", "coordinates"}, Vals: []value.Value{value.Str(kind), coords}})
}

func geoPredicate(test func(a, b *geom) bool) func(c *Ctx, a []value.Value) value.Value {
	return func(c *Ctx, a []value.Value) value.Value {
		if anyNull(a) {
			return value.Value{}
		}
		g1, err := readGeom(a[0])
		if err != nil {
			return c.failf("%v", err)
		}
		g2, err := readGeom(a[1])
		if err != nil {
			return c.failf("%v", err)
		}
		if test(g1, g2) {
			return value.Int(1)
		}
		return value.Int(0)
	}
}

func fnDistance(c *Ctx, a []value.Value) value.Value {
	if anyNull(a) {
		return value.Value{}
	}
	g1, err1 := readGeom(a[0])
	g2, err2 := readGeom(a[1])
	if err1 != nil || err2 != nil || g1.kind != "point" || g2.kind != "point" {
		return c.failf("ST_DISTANCE takes two points")
	}
	p, q := g1.rings[0][0], g2.rings[0][0]
	rad := math.Pi / 180
	dLat, dLon := (q[1]-p[1])*rad, (q[0]-p[0])*rad
	h := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(p[1]*rad)*math.Cos(q[1]*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return value.FloatValue(2 * earthRadiusM * math.Asin(math.Min(1, math.Sqrt(h))))
}

// readGeom reads a GeoJSON record or a WKT string.
func readGeom(v value.Value) (*geom, error) {
	if r := v.Record(); r != nil {
		t, _ := r.Get("type")
		cv, _ := r.Get("coordinates")
		kind := strings.ToLower(t.Str())
		g := &geom{kind: kind}
		switch kind {
		case "point":
			p, ok := coordPair(cv)
			if !ok {
				return nil, fmt.Errorf("%w: bad Point coordinates", ErrType)
			}
			g.rings = [][][2]float64{{p}}
		case "linestring":
			ring, ok := coordList(cv)
			if !ok {
				return nil, fmt.Errorf("%w: bad LineString coordinates", ErrType)
			}
			g.rings = [][][2]float64{ring}
		case "polygon":
			arr := cv.Array()
			if arr == nil {
				return nil, fmt.Errorf("%w: bad Polygon coordinates", ErrType)
			}
			for _, r := range arr.Items {
				ring, ok := coordList(r)
				if !ok {
					return nil, fmt.Errorf("%w: bad Polygon coordinates", ErrType)
				}
				g.rings = append(g.rings, ring)
			}
		default:
			return nil, fmt.Errorf("%w: unsupported geometry type %q", ErrType, t.Str())
		}
		return g, nil
	}
	if v.Kind() == value.String {
		return parseWKT(v.Str())
	}
	return nil, fmt.Errorf("%w: %s is not a geometry", ErrType, v.Kind())
}

func coordPair(v value.Value) ([2]float64, bool) {
	a := v.Array()
	if a == nil || len(a.Items) < 2 {
		return [2]float64{}, false
	}
	x, ok1 := a.Items[0].AsFloat()
	y, ok2 := a.Items[1].AsFloat()
	return [2]float64{x, y}, ok1 && ok2
}

func coordList(v value.Value) ([][2]float64, bool) {
	a := v.Array()
	if a == nil {
		return nil, false
	}
	out := make([][2]float64, 0, len(a.Items))
	for _, it := range a.Items {
		p, ok := coordPair(it)
		if !ok {
			return nil, false
		}
		out = append(out, p)
	}
	return out, len(out) > 0
}

func parseWKT(s string) (*geom, error) {
	s = strings.TrimSpace(s)
	open := strings.IndexByte(s, '(')
	if open < 0 || !strings.HasSuffix(s, ")") {
		return nil, fmt.Errorf("%w: %q is not WKT", ErrType, truncate(s))
	}
	kind := strings.ToLower(strings.TrimSpace(s[:open]))
	body := s[open+1 : len(s)-1]
	g := &geom{kind: kind}
	switch kind {
	case "point", "linestring":
		ring, err := wktPoints(body)
		if err != nil || (kind == "point" && len(ring) != 1) {
			return nil, fmt.Errorf("%w: bad %s %q", ErrType, strings.ToUpper(kind), truncate(s))
		}
		g.rings = [][][2]float64{ring}
	case "polygon":
		for _, part := range strings.Split(body, "),") {
			part = strings.Trim(strings.TrimSpace(part), "()")
			ring, err := wktPoints(part)
			if err != nil || len(ring) < 3 {
				return nil, fmt.Errorf("%w: bad POLYGON %q", ErrType, truncate(s))
			}
			g.rings = append(g.rings, ring)
		}
	default:
		return nil, fmt.Errorf("%w: unsupported WKT type %q", ErrType, kind)
	}
	return g, nil
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

func wktPoints(s string) ([][2]float64, error) {
	var out [][2]float64
	for _, p := range strings.Split(s, ",") {
		f := strings.Fields(p)
		if len(f) < 2 {
			return nil, fmt.Errorf("bad point %q", p)
		}
		x, err1 := strconv.ParseFloat(f[0], 64)
		y, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad point %q", p)
		}
		out = append(out, [2]float64{x, y})
	}
	return out, nil
}

// inPolygon is the even-odd rule over all rings (holes subtract).
func inPolygon(p [2]float64, g *geom) bool {
	in := false
	for _, ring := range g.rings {
		n := len(ring)
		for i, j := 0, n-1; i < n; j, i = i, i+1 {
			a, b := ring[i], ring[j]
			if (a[1] > p[1]) != (b[1] > p[1]) && p[0] < (b[0]-a[0])*(p[1]-a[1])/(b[1]-a[1])+a[0] {
				in = !in
			}
		}
	}
	return in
}

func vertices(g *geom) [][2]float64 {
	var out [][2]float64
	for _, r := range g.rings {
		out = append(out, r...)
	}
	return out
}

// within: every vertex of a lies inside polygon b (or a equals point b).
func within(a, b *geom) bool {
	if b.kind != "polygon" {
		return b.kind == "point" && a.kind == "point" && a.rings[0][0] == b.rings[0][0]
	}
	for _, v := range vertices(a) {
		if !inPolygon(v, b) {
			return false
		}
	}
	return true
}

func segments(g *geom) [][2][2]float64 {
	var out [][2][2]float64
	for _, r := range g.rings {
		for i := 1; i < len(r); i++ {
			out = append(out, [2][2]float64{r[i-1], r[i]})
		}
		if g.kind == "polygon" && len(r) > 1 && r[0] != r[len(r)-1] {
			out = append(out, [2][2]float64{r[len(r)-1], r[0]})
		}
	}
	return out
}

func cross(o, a, b [2]float64) float64 {
	return (a[0]-o[0])*(b[1]-o[1]) - (a[1]-o[1])*(b[0]-o[0])
}

func segmentsCross(p, q [2][2]float64) bool {
	d1, d2 := cross(q[0], q[1], p[0]), cross(q[0], q[1], p[1])
	d3, d4 := cross(p[0], p[1], q[0]), cross(p[0], p[1], q[1])
	return ((d1 > 0) != (d2 > 0) || d1 == 0 || d2 == 0) && ((d3 > 0) != (d4 > 0) || d3 == 0 || d4 == 0) &&
		math.Min(p[0][0], p[1][0]) <= math.Max(q[0][0], q[1][0]) && math.Min(q[0][0], q[1][0]) <= math.Max(p[0][0], p[1][0]) &&
		math.Min(p[0][1], p[1][1]) <= math.Max(q[0][1], q[1][1]) && math.Min(q[0][1], q[1][1]) <= math.Max(p[0][1], p[1][1])
}

func intersects(a, b *geom) bool {
	if a.kind == "polygon" && inPolygon(vertices(b)[0], a) || b.kind == "polygon" && inPolygon(vertices(a)[0], b) {
		return true
	}
	if a.kind == "point" && b.kind == "point" {
		return a.rings[0][0] == b.rings[0][0]
	}
	for _, s := range segments(a) {
		for _, t := range segments(b) {
			if segmentsCross(s, t) {
				return true
			}
		}
	}
	return false
}
