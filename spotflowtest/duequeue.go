package spotflowtest

import "time"

// scheduled is what a pending checkout and a webhook delivery have in
// common: a due time, a sequence number that keeps ties in creation order,
// and their place in a [dueHeap].
type scheduled struct {
	due  time.Time
	seq  uint64
	slot int // index in the heap, kept up to date by it
}

func (s *scheduled) sched() *scheduled { return s }

// dueHeap is a container/heap of items ordered by due time, then by seq.
type dueHeap[T interface{ sched() *scheduled }] []T

func (h dueHeap[T]) Len() int { return len(h) }

func (h dueHeap[T]) Less(i, j int) bool {
	a, b := h[i].sched(), h[j].sched()
	if !a.due.Equal(b.due) {
		return a.due.Before(b.due)
	}
	return a.seq < b.seq
}

func (h dueHeap[T]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].sched().slot, h[j].sched().slot = i, j
}

func (h *dueHeap[T]) Push(x any) {
	item := x.(T)
	item.sched().slot = len(*h)
	*h = append(*h, item)
}

func (h *dueHeap[T]) Pop() any {
	old := *h
	item := old[len(old)-1]
	var zero T
	old[len(old)-1] = zero
	*h = old[:len(old)-1]
	return item
}
