package udf

// SetMaxAlloc lowers a function's allocation bound (U5) for a test.
func (f *Func) SetMaxAlloc(n uint64) { f.maxAlloc.Store(n) }
