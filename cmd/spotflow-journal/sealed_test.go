package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

var (
	sealKey  = bytes.Repeat([]byte{7}, 32)
	otherKey = bytes.Repeat([]byte{9}, 32)
)

func TestASealedJournalIsListedWithoutItsKeyAndReadWithIt(t *testing.T) {
	path := fillBolt(t, sealKey, testEntries(time.Now()))
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte(secret)) {
		t.Fatal("the sealed journal file holds the body in clear")
	}
	id := spotflowhttp.SealKeyID(sealKey)

	r := sj(t, nil, "list", "-file", path)
	r.want(t, 0)
	if !strings.Contains(r.stdout, "sealed("+id+")") || !strings.Contains(r.stdout, "order-1") {
		t.Errorf("list of a sealed journal:\n%s", r.stdout)
	}
	sj(t, nil, "show", "-body", "-file", path, "key-old").want(t, 2, `entry "key-old" is sealed with key id `+id, "SPOTFLOW_JOURNAL_KEY")

	for name, env := range map[string][]string{
		"hex":    {"SPOTFLOW_JOURNAL_KEY=" + hex.EncodeToString(sealKey)},
		"base64": {"SPOTFLOW_JOURNAL_KEY=" + base64.StdEncoding.EncodeToString(sealKey)},
		"rotated": {"SPOTFLOW_JOURNAL_KEY=" + hex.EncodeToString(otherKey),
			"SPOTFLOW_JOURNAL_OLD_KEYS=" + hex.EncodeToString(bytes.Repeat([]byte{1}, 32)) + "," + hex.EncodeToString(sealKey)},
	} {
		r := sj(t, env, "show", "-body", "-file", path, "key-old")
		r.want(t, 0)
		if !strings.Contains(r.stdout, secret) || !strings.Contains(r.stdout, "key id "+id) {
			t.Errorf("%s: show -body with the key:\n%s", name, r.stdout)
		}
	}
	keyFile := filepath.Join(t.TempDir(), "journal.key")
	os.WriteFile(keyFile, []byte(hex.EncodeToString(sealKey)+"\n"), 0o600)
	if r := sj(t, nil, "show", "-body", "-key-file", keyFile, "-file", path, "key-old"); !strings.Contains(r.stdout, secret) {
		t.Errorf("show -body -key-file:\n%s%s", r.stdout, r.stderr)
	}

	wrong := hex.EncodeToString(otherKey)
	r = sj(t, []string{"SPOTFLOW_JOURNAL_KEY=" + wrong}, "show", "-body", "-file", path, "key-old")
	r.want(t, 2, `entry "key-old" is sealed with key id `+id, spotflowhttp.SealKeyID(otherKey))
	if strings.Contains(r.stderr, wrong) || strings.Contains(r.stdout, secret) {
		t.Errorf("a wrong key: stderr shows the key or stdout the body:\n%s\n%s", r.stderr, r.stdout)
	}
	r = sj(t, []string{"SPOTFLOW_JOURNAL_KEY=" + wrong[:40]}, "list", "-file", path)
	r.want(t, 2, "SPOTFLOW_JOURNAL_KEY: not a key of 32 bytes")
	if strings.Contains(r.stderr, wrong[:40]) {
		t.Errorf("a malformed key is printed:\n%s", r.stderr)
	}
}

func TestResolveOnASealedJournalNeedsNoKey(t *testing.T) {
	path := fillBolt(t, sealKey, testEntries(time.Now()))
	r := sj(t, nil, "resolve", "-file", path, "-outcome", "created", "key-old")
	r.want(t, 0)
	for _, e := range pendingIn(t, path) {
		if e.Key == "key-old" {
			t.Error("key-old is still pending")
		}
	}
}
