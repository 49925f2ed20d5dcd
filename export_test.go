package spotflowhttp

// ScopeCount is the number of host-and-credential scopes t keeps, for the
// tests of the bound on them.
func ScopeCount(t *Transport) int64 { return t.cfg.scopes.n.Load() }
