package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBadUsageExitsTwoInOneLine(t *testing.T) {
	path := fillBolt(t, nil, testEntries(time.Now()))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "Usage"},
		{"unknown command", []string{"lsit"}, `unknown command "lsit"`},
		{"unknown flag", []string{"list", "-fiel", path}, "flag provided but not defined: -fiel"},
		{"no journal", []string{"list"}, "no journal"},
		{"two journals", []string{"list", "-file", path, "-admin", "http://127.0.0.1:1/x"}, "give one journal"},
		{"redis without name", []string{"list", "-redis", "redis://127.0.0.1:1/0"}, "-redis needs -name"},
		{"show without key", []string{"show", "-file", path}, "want one KEY"},
		{"flag after key", []string{"show", "-file", path, "key-old", "-body"}, "want one KEY"},
		{"resolve without outcome", []string{"resolve", "-file", path, "key-old"}, "-outcome"},
		{"resolve needs_human", []string{"resolve", "-file", path, "-outcome", "needs_human", "key-old"}, "want created or not_created"},
		{"bad base url", []string{"reconcile", "-file", path, "-base-url", "ftp://x"}, "-base-url"},
		{"reconcile through admin", []string{"reconcile", "-admin", "http://127.0.0.1:1/x"}, "flag provided but not defined: -admin"},
		{"salvage without file", []string{"salvage"}, "-file is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sj(t, nil, tc.args...).want(t, 2, tc.want)
		})
	}
}

func TestHelpExplainsEveryFlag(t *testing.T) {
	r := sj(t, nil, "-h")
	r.want(t, 0)
	for _, c := range []string{"list", "show", "resolve", "reconcile", "salvage"} {
		if !strings.Contains(r.stdout, "  "+c+" ") {
			t.Errorf("-h does not list %s:\n%s", c, r.stdout)
		}
	}
	for cmd, flags := range map[string][]string{
		"list":      {"-file", "-redis", "-name", "-admin", "-json", "-key-file", "-old-key-file"},
		"show":      {"-body", "-json", "-admin"},
		"resolve":   {"-outcome", "-note", "-audit", "-json", "-admin"},
		"reconcile": {"-base-url", "-audit", "-json", "SPOTFLOW_SECRET_KEY_<LABEL>"},
		"salvage":   {"-file", "-out", "-json"},
	} {
		r := sj(t, nil, cmd, "-h")
		r.want(t, 0)
		for _, f := range flags {
			if !strings.Contains(r.stderr, f) {
				t.Errorf("%s -h does not explain %s:\n%s", cmd, f, r.stderr)
			}
		}
	}
}

func TestBadInputExitsTwoNamingWhatWasWrong(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such.db")
	for _, cmd := range [][]string{{"list"}, {"show", "-file", missing, "k"}, {"resolve", "-outcome", "created", "-file", missing, "k"}, {"reconcile"}} {
		args := cmd
		if len(cmd) == 1 {
			args = append(cmd, "-file", missing)
		}
		sj(t, []string{"SPOTFLOW_SECRET_KEY=sk"}, args...).want(t, 2, "journal file "+missing+": no such file or directory")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a missing journal file was created: %v", err)
	}
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte(strings.Repeat("not a journal\n", 1000)), 0o600)
	r := sj(t, nil, "list", "-file", text)
	r.want(t, 2, text)
	if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("more than one line:\n%s", r.stderr)
	}
	sj(t, nil, "list", "-file", dir).want(t, 2, "is a directory")
}
