package webhook

// Waiting returns how many Claims on d wait for another delivery, so that
// a test can start a delivery's function only once its duplicates wait.
func Waiting(d *MemoryDedup) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiting
}
