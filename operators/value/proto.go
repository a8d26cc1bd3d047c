package value

import (
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// ToProto converts v to its protobuf form.
func ToProto(v Value) *pb.Value {
	switch v.k {
	case Bit:
		return &pb.Value{Kind: &pb.Value_Bit{Bit: v.n != 0}}
	case BigInt:
		return &pb.Value{Kind: &pb.Value_Bigint{Bigint: int64(v.n)}}
	case Float:
		return &pb.Value{Kind: &pb.Value_Float{Float: v.Float()}}
	case String:
		return &pb.Value{Kind: &pb.Value_Nvarchar{Nvarchar: v.s}}
	case DateTime:
		return &pb.Value{Kind: &pb.Value_DatetimeTicks{DatetimeTicks: int64(v.n)}}
	case RecordKind:
		return &pb.Value{Kind: &pb.Value_Record{Record: RecordToProto(v.rec)}}
	case ArrayKind:
		a := &pb.Array{Values: make([]*pb.Value, len(v.arr.Items))}
		for i, it := range v.arr.Items {
			a.Values[i] = ToProto(it)
		}
		return &pb.Value{Kind: &pb.Value_Array{Array: a}}
	}
	return &pb.Value{}
}

// FromProto converts a protobuf value; nil is NULL.
func FromProto(p *pb.Value) Value {
	if p == nil {
		return Value{}
	}
	switch k := p.Kind.(type) {
	case *pb.Value_Bit:
		return BitValue(k.Bit)
	case *pb.Value_Bigint:
		return Int(k.Bigint)
	case *pb.Value_Float:
		return FloatValue(k.Float)
	case *pb.Value_Nvarchar:
		return Str(k.Nvarchar)
	case *pb.Value_DatetimeTicks:
		return Time(k.DatetimeTicks)
	case *pb.Value_Record:
		return RecordValue(RecordFromProto(k.Record))
	case *pb.Value_Array:
		a := &Array{Items: make([]Value, len(k.Array.GetValues()))}
		for i, it := range k.Array.GetValues() {
			a.Items[i] = FromProto(it)
		}
		return ArrayValue(a)
	}
	return Value{}
}

// RecordToProto converts a record.
func RecordToProto(r *Record) *pb.Record {
	out := &pb.Record{Fields: make([]*pb.Field, len(r.Names))}
	for i, n := range r.Names {
		out.Fields[i] = &pb.Field{Name: n, Value: ToProto(r.Vals[i])}
	}
	return out
}

// RecordFromProto converts a protobuf record; nil gives an empty record.
func RecordFromProto(p *pb.Record) *Record {
	r := &Record{Names: make([]string, len(p.GetFields())), Vals: make([]Value, len(p.GetFields()))}
	for i, f := range p.GetFields() {
		r.Names[i] = f.GetName()
		r.Vals[i] = FromProto(f.GetValue())
	}
	return r
}

// ValuesToProto converts a slice of values.
func ValuesToProto(vs []Value) []*pb.Value {
	out := make([]*pb.Value, len(vs))
	for i, v := range vs {
		out[i] = ToProto(v)
	}
	return out
}

// ValuesFromProto converts a slice of protobuf values.
func ValuesFromProto(ps []*pb.Value) []Value {
	out := make([]Value, len(ps))
	for i, p := range ps {
		out[i] = FromProto(p)
	}
	return out
}
