package expr

import (
	"errors"
	"fmt"
	"strings"

	"github.com/millstream/millstream/operators/value"
	pb "github.com/millstream/millstream/proto/millstreampb"
)

// Sentinel errors.
var (
	// ErrType is wrapped by runtime type errors.
	ErrType = errors.New("expr: type error")
	// ErrUDF is wrapped by the errors of user-defined functions (a
	// thrown exception, a time or size limit).
	ErrUDF = errors.New("expr: user-defined function failed")
)

// Env is what compiled expressions may call besides the built-in
// functions. The zero Env has no user-defined functions.
type Env struct {
	// UDF returns the scalar user-defined function a call names (its
	// name in the plan: "udf.x", lower case), or false.
	UDF func(name string) (UDF, bool)
}

// UDF is a user-defined scalar function. args are borrowed. Its error is
// wrapped with ErrUDF and the function's name.
type UDF func(args []value.Value) (value.Value, error)

// Ctx is what an expression is evaluated against.
type Ctx struct {
	// Rec is the current row (row expressions).
	Rec *value.Record
	// TS is System.Timestamp(): the event time, or the window end.
	TS int64
	// Keys and Aggs are the current group's key values and aggregate
	// results (group expressions).
	Keys []value.Value
	Aggs []value.Value
	// Analytics are the current row's analytic function results.
	Analytics []value.Value
	// JoinTS are the event times of the left and right rows of a stream join.
	JoinTS [2]int64
	// Meta is the event's metadata, for the expressions of the stage
	// that reads the input (GetMetadataPropertyValue); nil elsewhere.
	Meta *Meta
	// Err is the first runtime error of the evaluation, if any.
	Err error
}

// Fail records err (if it is the first) and returns NULL.
func (c *Ctx) Fail(err error) value.Value {
	if c.Err == nil {
		c.Err = err
	}
	return value.Value{}
}

func (c *Ctx) failf(format string, args ...any) value.Value {
	if c.Err == nil {
		c.Err = fmt.Errorf("%w: %s", ErrType, fmt.Sprintf(format, args...))
	}
	return value.Value{}
}

// Eval is a compiled expression.
type Eval func(c *Ctx) value.Value

// Compile compiles an expression that calls no user-defined function.
func Compile(e *pb.Expr) (Eval, error) { return CompileEnv(e, nil) }

// CompileEnv compiles an expression with the functions of env (nil: none).
func CompileEnv(e *pb.Expr, env *Env) (Eval, error) {
	if e == nil {
		return nil, errors.New("expr: empty expression")
	}
	switch k := e.Kind.(type) {
	case *pb.Expr_Literal:
		v := value.FromProto(k.Literal)
		return func(*Ctx) value.Value { return v }, nil
	case *pb.Expr_Field:
		return compileField(k.Field)
	case *pb.Expr_Row:
		return func(c *Ctx) value.Value {
			if c.Rec == nil {
				return value.Value{}
			}
			return value.RecordValue(c.Rec.Clone())
		}, nil
	case *pb.Expr_SystemTimestamp:
		return func(c *Ctx) value.Value { return value.Time(c.TS) }, nil
	case *pb.Expr_Aggregate:
		i := int(k.Aggregate)
		return func(c *Ctx) value.Value {
			if i < len(c.Aggs) {
				return c.Aggs[i]
			}
			return c.failf("aggregate %d is not available here", i)
		}, nil
	case *pb.Expr_GroupKey:
		i := int(k.GroupKey)
		return func(c *Ctx) value.Value {
			if i < len(c.Keys) {
				return c.Keys[i]
			}
			return c.failf("group key %d is not available here", i)
		}, nil
	case *pb.Expr_Analytic:
		i := int(k.Analytic)
		return func(c *Ctx) value.Value {
			if i < len(c.Analytics) {
				return c.Analytics[i]
			}
			return c.failf("analytic function %d is not available here", i)
		}, nil
	case *pb.Expr_JoinSideTime:
		side := k.JoinSideTime
		if side != 0 && side != 1 {
			return nil, fmt.Errorf("expr: join side %d", side)
		}
		return func(c *Ctx) value.Value { return value.Time(c.JoinTS[side]) }, nil
	case *pb.Expr_Case:
		return compileCase(k.Case, env)
	case *pb.Expr_Call:
		return compileCall(k.Call, env)
	}
	return nil, fmt.Errorf("expr: unknown expression kind %T", e.Kind)
}

func compileField(f *pb.FieldRef) (Eval, error) {
	if len(f.Path) == 0 {
		return nil, errors.New("expr: field reference without a name")
	}
	first := f.Path[0]
	rest := f.Path[1:]
	hint := 0
	if f.Quoted {
		lit := value.Str(first)
		return func(c *Ctx) value.Value {
			if c.Rec != nil {
				if i := c.Rec.Index(first); i >= 0 {
					return c.Rec.Vals[i]
				}
			}
			return lit
		}, nil
	}
	if len(rest) == 0 {
		return func(c *Ctx) value.Value {
			if c.Rec == nil {
				return value.Value{}
			}
			return c.Rec.GetHint(first, &hint)
		}, nil
	}
	return func(c *Ctx) value.Value {
		if c.Rec == nil {
			return value.Value{}
		}
		v := c.Rec.GetHint(first, &hint)
		for _, p := range rest {
			r := v.Record()
			if r == nil {
				return value.Value{}
			}
			v, _ = r.Get(p)
		}
		return v
	}, nil
}

func compileCase(ce *pb.Case, env *Env) (Eval, error) {
	var operand Eval
	var err error
	if ce.Operand != nil {
		if operand, err = CompileEnv(ce.Operand, env); err != nil {
			return nil, err
		}
	}
	conds := make([]Eval, len(ce.Whens))
	thens := make([]Eval, len(ce.Whens))
	for i, w := range ce.Whens {
		if conds[i], err = CompileEnv(w.When, env); err != nil {
			return nil, err
		}
		if thens[i], err = CompileEnv(w.Then, env); err != nil {
			return nil, err
		}
	}
	var elseE Eval
	if ce.Else != nil {
		if elseE, err = CompileEnv(ce.Else, env); err != nil {
			return nil, err
		}
	}
	return func(c *Ctx) value.Value {
		var op value.Value
		if operand != nil {
			op = operand(c)
		}
		for i, cond := range conds {
			w := cond(c)
			if operand != nil {
				if op.IsNull() || w.IsNull() {
					continue
				}
				cmp, err := value.Compare(op, w)
				if err != nil {
					return c.Fail(fmt.Errorf("%w: CASE: %w", ErrType, err))
				}
				if cmp == 0 {
					return thens[i](c)
				}
				continue
			}
			if w.Bool() {
				return thens[i](c)
			}
		}
		if elseE != nil {
			return elseE(c)
		}
		return value.Value{}
	}, nil
}

// Truth reports whether a predicate result keeps a row: only a true bit does.
func Truth(v value.Value) bool {
	switch v.Kind() {
	case value.Bit:
		return v.Bool()
	case value.BigInt:
		return v.Int() != 0
	}
	return false
}

func compileCall(call *pb.Call, env *Env) (Eval, error) {
	args := make([]Eval, len(call.Args))
	for i, a := range call.Args {
		var err error
		if args[i], err = CompileEnv(a, env); err != nil {
			return nil, err
		}
	}
	if strings.HasPrefix(call.Func, "udf.") {
		return compileUDF(call.Func, args, env)
	}
	switch call.Func {
	case "and":
		if len(args) != 2 {
			return nil, errors.New("expr: and takes 2 arguments")
		}
		l, r := args[0], args[1]
		return func(c *Ctx) value.Value {
			a := l(c)
			if a.Kind() == value.Bit && !a.Bool() {
				return a
			}
			b := r(c)
			if b.Kind() == value.Bit && !b.Bool() {
				return b
			}
			if a.IsNull() || b.IsNull() {
				return value.Value{}
			}
			return value.BitValue(Truth(a) && Truth(b))
		}, nil
	case "or":
		if len(args) != 2 {
			return nil, errors.New("expr: or takes 2 arguments")
		}
		l, r := args[0], args[1]
		return func(c *Ctx) value.Value {
			a := l(c)
			if Truth(a) {
				return value.BitValue(true)
			}
			b := r(c)
			if Truth(b) {
				return value.BitValue(true)
			}
			if a.IsNull() || b.IsNull() {
				return value.Value{}
			}
			return value.BitValue(false)
		}, nil
	case "like":
		return compileLike(call, args)
	case "regexmatch":
		return compileRegexMatch(call, args)
	}
	f, ok := funcs[call.Func]
	if !ok {
		return nil, fmt.Errorf("expr: unknown function %q", call.Func)
	}
	if len(args) < f.min || (f.max >= 0 && len(args) > f.max) {
		return nil, fmt.Errorf("expr: %s takes %d..%d arguments, got %d", call.Func, f.min, f.max, len(args))
	}
	fn := f.fn
	switch len(args) {
	case 1:
		a0 := args[0]
		var buf [1]value.Value
		return func(c *Ctx) value.Value {
			buf[0] = a0(c)
			return fn(c, buf[:])
		}, nil
	case 2:
		a0, a1 := args[0], args[1]
		var buf [2]value.Value
		return func(c *Ctx) value.Value {
			buf[0], buf[1] = a0(c), a1(c)
			return fn(c, buf[:])
		}, nil
	}
	buf := make([]value.Value, len(args))
	return func(c *Ctx) value.Value {
		for i, a := range args {
			buf[i] = a(c)
		}
		return fn(c, buf)
	}, nil
}

// Walk calls f on e and every expression inside it, parents first.
func Walk(e *pb.Expr, f func(*pb.Expr)) {
	if e == nil {
		return
	}
	f(e)
	switch k := e.Kind.(type) {
	case *pb.Expr_Call:
		for _, a := range k.Call.Args {
			Walk(a, f)
		}
	case *pb.Expr_Case:
		Walk(k.Case.Operand, f)
		for _, w := range k.Case.Whens {
			Walk(w.When, f)
			Walk(w.Then, f)
		}
		Walk(k.Case.Else, f)
	}
}

// compileUDF calls a user-defined function. A failed call is a runtime
// error (ErrUDF): the stage dead-letters the event with the reason.
func compileUDF(name string, args []Eval, env *Env) (Eval, error) {
	var f UDF
	ok := false
	if env != nil && env.UDF != nil {
		f, ok = env.UDF(name)
	}
	if !ok {
		return nil, fmt.Errorf("expr: unknown function %s (declare it in the job's functions)", name)
	}
	buf := make([]value.Value, len(args))
	return func(c *Ctx) value.Value {
		for i, a := range args {
			buf[i] = a(c)
		}
		v, err := f(buf)
		if err != nil {
			return c.Fail(fmt.Errorf("%w: %s: %w", ErrUDF, name, err))
		}
		return v
	}, nil
}
