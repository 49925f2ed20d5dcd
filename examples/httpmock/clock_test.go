package httpmock_test

import (
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// fakeClock is the simulator package's fake clock: Sleep returns at once and
// moves time on, so tests never wait and can check what the transport
// waited for.
type fakeClock = spotflowtest.Clock

func newFakeClock() *fakeClock { return spotflowtest.NewClock(time.Now()) }
