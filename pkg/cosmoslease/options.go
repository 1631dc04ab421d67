package cosmoslease

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosmoslease/cosmoslease/internal/leasedoc"
)

// Defaults. They follow the reference sample: a 60 s lease renewed every 40 s.
const (
	DefaultLeaseDuration    = 60 * time.Second
	DefaultRenewInterval    = 40 * time.Second
	DefaultDatabase         = "DistributedLeasing"
	DefaultContainer        = "Leases"
	DefaultPartitionKeyPath = "/leaseKey"
	// minMargin is the least LeaseDuration − RenewDeadline we accept for short leases. The margin must cover
	// the difference between the clocks that stamp the server's Date and _ts, and the rate error of every
	// clock involved, which grows with the lease (see the package comment); so it is also at least a tenth of
	// LeaseDuration.
	minMargin = time.Second
)

// minSafetyMargin is the least LeaseDuration − RenewDeadline accepted for a lease of duration d.
func minSafetyMargin(d time.Duration) time.Duration { return max(minMargin, d/10) }

// Options configures a Client. Zero values take the documented defaults.
type Options struct {
	// ConnectionString ("AccountEndpoint=…;AccountKey=…") selects key auth.
	ConnectionString string
	// Endpoint, when ConnectionString is empty, is used with Credential
	// (DefaultAzureCredential when Credential is nil).
	Endpoint   string
	Credential azcore.TokenCredential
	// Database defaults to DistributedLeasing, Container to Leases.
	Database  string
	Container string
	// PartitionKeyPath is the container's partition key path, a top-level property; default /leaseKey. It may be
	// /leaseKey, /id or a property of the caller's own (such as /pk, which then holds the lease key), but not
	// another property of the lease document (/leaseId, /epoch, /metadata, …, in any case) or a system property.
	PartitionKeyPath string
	// AllowMultipleWriteRegions accepts an account that takes writes in several regions. ETag checks do not
	// hold across write regions, so two holders become possible; Open refuses such accounts unless this is set.
	AllowMultipleWriteRegions bool
	// Transport carries every HTTP request the SDK makes (a proxy, a request counter). nil uses net/http, and
	// under GOOS=js GOARCH=wasm the host's fetch (Node.js, Deno, browsers, edge runtimes). GOOS=wasip1 has no
	// sockets: there the host must pass one, or Open fails saying so.
	Transport policy.Transporter

	// OwnerID names this instance in the lease document (ownerId, metadata.instanceId). Required.
	OwnerID string
	// Region is written to metadata.region.
	Region string
	// Hostname defaults to os.Hostname().
	Hostname string
	// Metadata adds caller-supplied pairs to the document's metadata.
	Metadata map[string]string
	// TakeOverSameOwner lets TryAcquire and Acquire take a lease that is still held, at once and at the next
	// epoch, when its document names this OwnerID (whatever its leaseId): the holder is taken to be an earlier
	// incarnation of this owner, killed before it released, rather than a rival. Without it such a lease is
	// waited out like any other (up to LeaseDuration).
	//
	// Set it only when at most one live process uses an OwnerID at a time, or when the work is fenced some
	// other way (the Epoch checked downstream, an at-most-once record per unit of work). A live process that
	// still holds the lease under the same OwnerID is not stopped by the takeover: it learns of the loss only
	// from its next write (the renewal gets 412 and finds another leaseId), so until then both believe they
	// hold the lease. The same goes for a Lease this Client itself still holds on the key. Off by default.
	TakeOverSameOwner bool

	// LeaseDuration is how long a lease lasts after its last renewal; default 60 s. A contender takes over only
	// after it has seen the same document version unchanged for this long.
	LeaseDuration time.Duration
	// RenewInterval is how often a holder renews; default 40 s.
	RenewInterval time.Duration
	// RenewDeadline is how long after the last confirmed renewal was sent a holder keeps believing it holds the
	// lease; when it passes, the lease's context is cancelled. Default: halfway between RenewInterval and
	// LeaseDuration (50 s with the defaults). LeaseDuration − RenewDeadline is the margin for clock error (rate,
	// and the skew between the server clocks that stamp Date and _ts); it must be at least a tenth of
	// LeaseDuration, and at least 1 s.
	RenewDeadline time.Duration
	// RetryPeriod is how often a standby polls, and the longest wait between renewal retries; default
	// LeaseDuration/12 (5 s with the defaults). Polls are jittered by ±10 %.
	RetryPeriod time.Duration
	// RequestTimeout bounds each request; default 10 s, or half of RenewDeadline if that is less. A renewal never
	// outlives the lease's deadline.
	RequestTimeout time.Duration
	// ManualRenew turns automatic renewal off: the holder calls Lease.Renew itself, and the lease is lost when
	// RenewDeadline passes without a confirmed renewal.
	ManualRenew bool

	// Logger receives the package's logs; nil discards them. The package never writes to stdout or slog.Default.
	Logger *slog.Logger
	// OnOperation, when set, is called after every request with its outcome, latency and request charge.
	OnOperation func(Operation)

	// MeterProvider and TracerProvider receive the library's OpenTelemetry metrics and spans (docs/operating.md,
	// "Metrics"); nil uses the global ones (otel.GetMeterProvider, otel.GetTracerProvider). The library records
	// through the API only: nothing is exported unless the program installs an SDK. The Cosmos DB SDK's own
	// spans, children of the library's, are passed on when the TracerProvider records at Open: install the SDK
	// before Open.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
}

// Operation describes one request to Cosmos DB.
type Operation struct {
	Name    string // read, create, replace, list, check
	Key     string
	Outcome string // ok, not found, conflict, precondition failed, throttled, unavailable, unknown, …
	Status  int    // HTTP status, 0 when none arrived
	Latency time.Duration
	Charge  float64 // request units
	Err     error
}

// ErrInvalid is wrapped by every error about options or lease keys that cannot work; fix the input.
var ErrInvalid = errors.New("invalid configuration")

// ErrSetup is wrapped by errors about the account or container: missing, wrongly partitioned, not permitted.
var ErrSetup = errors.New("cosmos db is not set up for leases")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// withDefaults fills zero fields and checks the combination. Its errors name the fields.
func (o Options) withDefaults() (Options, error) {
	if o.Database == "" {
		o.Database = DefaultDatabase
	}
	if o.Container == "" {
		o.Container = DefaultContainer
	}
	if o.PartitionKeyPath == "" {
		o.PartitionKeyPath = DefaultPartitionKeyPath
	}
	if !strings.HasPrefix(o.PartitionKeyPath, "/") || strings.Count(o.PartitionKeyPath, "/") != 1 || len(o.PartitionKeyPath) < 2 {
		return o, invalid("PartitionKeyPath %q must name one top-level property, such as /leaseKey", o.PartitionKeyPath)
	}
	if prop := o.PartitionKeyPath[1:]; prop != "leaseKey" && prop != "id" && leasedoc.OwnProperty(prop) {
		// The lease key would be written into that property too, as a second value of the same field.
		return o, invalid("PartitionKeyPath %q names a property of the lease document itself (in any case): partition the container on /leaseKey (the default), on /id, or on a property of your own such as /pk", o.PartitionKeyPath)
	}
	if strings.TrimSpace(o.OwnerID) == "" {
		return o, invalid("OwnerID is empty: every holder needs a name, such as us-east-1")
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	// The caller keeps its map; editing it later must not race with renewals, which encode the metadata.
	o.Metadata = maps.Clone(o.Metadata)
	for name, d := range map[string]time.Duration{"LeaseDuration": o.LeaseDuration, "RenewInterval": o.RenewInterval,
		"RenewDeadline": o.RenewDeadline, "RetryPeriod": o.RetryPeriod, "RequestTimeout": o.RequestTimeout} {
		if d < 0 {
			return o, invalid("%s is negative (%s)", name, d)
		}
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.RenewInterval == 0 {
		o.RenewInterval = DefaultRenewInterval
		if o.RenewInterval >= o.LeaseDuration {
			o.RenewInterval = o.LeaseDuration * 2 / 3
		}
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = o.RenewInterval + (o.LeaseDuration-o.RenewInterval)/2
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = o.LeaseDuration / 12
	}
	if o.RequestTimeout == 0 {
		// A claim's request is bounded by this alone: one that outlives RenewDeadline would win a lease already
		// past its deadline.
		o.RequestTimeout = min(10*time.Second, o.RenewDeadline/2)
	}
	if o.RenewInterval >= o.RenewDeadline {
		return o, invalid("RenewInterval (%s) must be shorter than RenewDeadline (%s), so a failed renewal can be retried before the holder gives up", o.RenewInterval, o.RenewDeadline)
	}
	if m := minSafetyMargin(o.LeaseDuration); o.LeaseDuration-o.RenewDeadline < m {
		return o, invalid("LeaseDuration (%s) must exceed RenewDeadline (%s) by at least %s (a tenth of LeaseDuration, and at least 1s), so a holder always stops before a contender may take over", o.LeaseDuration, o.RenewDeadline, m)
	}
	if o.RetryPeriod >= o.LeaseDuration {
		return o, invalid("RetryPeriod (%s) must be shorter than LeaseDuration (%s)", o.RetryPeriod, o.LeaseDuration)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	return o, nil
}
