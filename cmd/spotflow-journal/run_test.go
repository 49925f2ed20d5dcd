package main

import (
	"bytes"
	"strings"
	"testing"
)

// A library's panic becomes one line and exit status 1, never a stack
// trace: run is called in process with a command that panics, since no
// input makes the real ones panic.
func TestAPanicIsOneLine(t *testing.T) {
	saved := commands
	defer func() { commands = saved }()
	commands = append(commands, command{name: "boom", run: func(*env, []string) error { panic("bbolt: invalid page\nsecond line") }})
	var out, errb bytes.Buffer
	code := run([]string{"boom"}, newEnv(&out, &errb))
	if code != exitProblem || errb.String() != "spotflow-journal: internal error: bbolt: invalid page second line\n" || out.Len() != 0 {
		t.Errorf("exit %d, stderr %q, stdout %q", code, errb.String(), out.String())
	}
	if strings.Contains(errb.String(), "goroutine") {
		t.Error("a stack trace")
	}
}
