package resty_test

import (
	"testing"

	"github.com/spotflow-go/spotflowhttp/examples/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }
