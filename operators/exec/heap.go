package exec

import "container/heap"

// timed is an element of a timeHeap: it sorts by time, then by sequence
// number, which keeps equal times in arrival order (deterministic output).
type timed interface {
	order() (t int64, seq uint64)
}

// timeHeap is a min-heap of timed elements: reorder buffers release rows
// from it and session and sliding windows close from it.
type timeHeap[T timed] []T

func (h timeHeap[T]) Len() int { return len(h) }
func (h timeHeap[T]) Less(i, j int) bool {
	ti, si := h[i].order()
	tj, sj := h[j].order()
	if ti != tj {
		return ti < tj
	}
	return si < sj
}
func (h timeHeap[T]) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timeHeap[T]) Push(x any)   { *h = append(*h, x.(T)) }
func (h *timeHeap[T]) Pop() any {
	old := *h
	var zero T
	x := old[len(old)-1]
	old[len(old)-1] = zero // let the GC have what the element points to
	*h = old[:len(old)-1]
	return x
}

func (h *timeHeap[T]) push(x T) { heap.Push(h, x) }
func (h *timeHeap[T]) pop() T   { return heap.Pop(h).(T) }

// minTime returns the smallest time; the heap must not be empty.
func (h timeHeap[T]) minTime() int64 {
	t, _ := h[0].order()
	return t
}

func (b bufferedRow) order() (int64, uint64)  { return b.ts, b.seq }
func (e sessionEntry) order() (int64, uint64) { return e.closeAt, e.seq }
func (e slEntry) order() (int64, uint64)      { return e.x, e.seq }
