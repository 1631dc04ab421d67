package cosmoslease

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// ErrLeaseLost is the cause of a lease's context when the lease was taken over, deleted, or not renewed by
// RenewDeadline. Test with errors.Is(context.Cause(lease.Context()), ErrLeaseLost).
var ErrLeaseLost = errors.New("lease lost")

// ErrReleased is the cause of a lease's context after Release.
var ErrReleased = errors.New("lease released")

// State is a lease document as one observer sees it.
type State struct {
	Key     string
	ID      string
	LeaseID string
	Owner   string
	// InstanceID is metadata.instanceId: this library writes the OwnerID there; the reference sample, its
	// instance's name (which it also writes as ownerId).
	InstanceID string
	Region     string
	Hostname   string
	// Epoch is the fencing token: greater for every new holder (one above the document it replaced; numbers can
	// be skipped), unchanged by renewals.
	Epoch    int64
	Renewals int64
	Released bool
	// Duration is the lease duration the holder promised (0 for a sample document, which promises none).
	Duration time.Duration
	ETag     string
	// AcquiredAt, RenewedAt, ExpiresAt and ReleasedAt are the holder's wall-clock times, for people. The
	// protocol does not compare them with other clocks.
	AcquiredAt, RenewedAt, ExpiresAt, ReleasedAt time.Time
	Metadata                                     map[string]string

	// Control is the operator's word on the job (control.go): paused, a stop order, a manual run waiting. Zero
	// when there is none, or when the document's control cannot be read (Problem says so then).
	Control Control

	// Held and ExpiresIn are this observer's judgement: the longest the holder may still hold the lease,
	// counted on clocks that need no synchronisation (see the package comment).
	Held      bool
	ExpiresIn time.Duration
	// Problem is set when the document is not a valid lease; the protocol will not overwrite it.
	Problem string
	// Sample is true for a document the reference sample wrote: it has no epoch (Epoch is 0), and its holder
	// trusts its own clock against ExpiresAt. Taking it over writes a full document at epoch 1.
	Sample bool
}

// Status is one word for people: held, expired, released, free (never acquired) or invalid.
func (s State) Status() string {
	switch {
	case s.Problem != "":
		return "invalid"
	case s.LeaseID == "" && !s.Released:
		return "free"
	case s.Released:
		return "released"
	case s.Held:
		return "held"
	}
	return "expired"
}

// HeldError reports that another instance holds the lease.
type HeldError struct {
	Holder State
	// Race is true when this caller saw the lease free but another contender wrote first.
	Race bool
}

func (e *HeldError) Error() string {
	h := e.Holder
	who := h.Owner
	if h.Region != "" {
		who += " (region " + h.Region + ")"
	}
	msg := fmt.Sprintf("lease %q is held by %s at epoch %d", h.Key, who, h.Epoch)
	if h.Sample {
		msg = fmt.Sprintf("lease %q is held by %s, an instance of the reference sample (its document has no epoch)", h.Key, who)
	}
	if h.ExpiresIn > 0 {
		msg += fmt.Sprintf(", for at most %s more unless renewed", h.ExpiresIn.Round(time.Second))
	}
	return msg
}

func sortStates(s []State) {
	sort.Slice(s, func(i, j int) bool { return s[i].Key < s[j].Key })
}
