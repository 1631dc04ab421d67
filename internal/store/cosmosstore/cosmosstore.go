// Package cosmosstore is store.Store over the official Azure Cosmos DB SDK for Go (azcosmos).
//
// Reads are point reads (1 RU for a small document in Azure, against about 2–3 RU for a query by id). Writes
// return the session token of their response, and reads pass it on, so under Session consistency a read after
// our own write is never answered from a replica that has not applied it.
package cosmosstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"
	"github.com/Azure/azure-sdk-for-go/sdk/tracing/azotel"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosmoslease/cosmoslease/internal/store"
)

// Config says where the container is and how to authenticate.
type Config struct {
	// ConnectionString ("AccountEndpoint=…;AccountKey=…") selects key auth. Otherwise Endpoint is used with
	// Credential, or with DefaultAzureCredential when Credential is nil.
	ConnectionString string
	Endpoint         string
	Credential       azcore.TokenCredential
	Database         string
	Container        string
	// Transport carries every HTTP request, the account read included; nil uses the platform's default
	// (defaultTransport): net/http, or the host's fetch under js/wasm.
	Transport policy.Transporter
	// TracerProvider, when set, receives the SDK's spans (one per Cosmos DB operation, and its HTTP requests),
	// bridged by azotel; they become children of the span in each request's context.
	TracerProvider trace.TracerProvider
}

// Store is a lease container.
type Store struct {
	client    *azcosmos.Client
	container *azcosmos.ContainerClient
	db        *azcosmos.DatabaseClient
	cfg       Config
	account   *accountWatch
}

var _ store.Store = (*Store)(nil)

// ParseConnectionString splits a Cosmos connection string. Its errors never contain the key.
func ParseConnectionString(cs string) (endpoint, key string, err error) {
	for _, part := range strings.Split(cs, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return "", "", errors.New("the connection string is not a list of Name=Value pairs separated by ';'")
		}
		switch {
		case strings.EqualFold(name, "AccountEndpoint"):
			endpoint = value
		case strings.EqualFold(name, "AccountKey"):
			key = value
		}
	}
	if endpoint == "" || key == "" {
		return "", "", errors.New("the connection string needs both AccountEndpoint=… and AccountKey=…; copy it from Azure Portal → Cosmos DB → Keys")
	}
	return endpoint, key, nil
}

// CheckEndpoint explains what is wrong with an endpoint that is not an absolute http(s) URL.
func CheckEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("the account endpoint %q is not a URL such as https://myaccount.documents.azure.com:443/", endpoint)
	}
	return nil
}

// Open builds the SDK client. It sends no request; Check does.
func Open(cfg Config) (*Store, error) {
	watch := &accountWatch{next: cfg.Transport}
	if watch.next == nil {
		tr, err := defaultTransport()
		if err != nil {
			return nil, err
		}
		watch.next = tr
	}
	opts := &azcosmos.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: watch}}
	if cfg.TracerProvider != nil {
		opts.TracingProvider = azotel.NewTracingProvider(cfg.TracerProvider, nil)
	}
	var client *azcosmos.Client
	switch {
	case cfg.ConnectionString != "":
		endpoint, key, err := ParseConnectionString(cfg.ConnectionString)
		if err != nil {
			return nil, err
		}
		if err := CheckEndpoint(endpoint); err != nil {
			return nil, err
		}
		cred, err := azcosmos.NewKeyCredential(key)
		if err != nil {
			return nil, errors.New("the AccountKey in the connection string is not valid base64; copy the key again from Azure Portal → Cosmos DB → Keys")
		}
		if client, err = azcosmos.NewClientWithKey(endpoint, cred, opts); err != nil {
			return nil, fmt.Errorf("cosmos client: %w", err)
		}
	case cfg.Endpoint != "":
		if err := CheckEndpoint(cfg.Endpoint); err != nil {
			return nil, err
		}
		cred := cfg.Credential
		if cred == nil {
			dac, err := azidentity.NewDefaultAzureCredential(nil)
			if err != nil {
				return nil, fmt.Errorf("DefaultAzureCredential: %w", err)
			}
			cred = dac
		}
		var err error
		if client, err = azcosmos.NewClient(cfg.Endpoint, cred, opts); err != nil {
			return nil, fmt.Errorf("cosmos client: %w", err)
		}
	default:
		return nil, errors.New("no Cosmos DB account configured: set an account endpoint or a connection string")
	}
	db, err := client.NewDatabase(cfg.Database)
	if err != nil {
		return nil, err
	}
	container, err := db.NewContainer(cfg.Container)
	if err != nil {
		return nil, err
	}
	return &Store{client: client, container: container, db: db, cfg: cfg, account: watch}, nil
}

// Close releases the SDK's caches.
func (s *Store) Close() { s.client.Close() }

// Database returns the SDK's database client, for callers that provision (the emulator mode of the CLI).
func (s *Store) Database() *azcosmos.DatabaseClient { return s.db }

// Client returns the SDK client.
func (s *Store) Client() *azcosmos.Client { return s.client }

// Container returns the SDK's client of the lease container.
func (s *Store) Container() *azcosmos.ContainerClient { return s.container }

func (s *Store) Read(ctx context.Context, pk, id, session string) (store.Item, error) {
	var opts *azcosmos.ItemOptions
	if session != "" {
		opts = &azcosmos.ItemOptions{SessionToken: &session}
	}
	resp, err := s.container.ReadItem(ctx, azcosmos.NewPartitionKeyString(pk), id, opts)
	if err != nil {
		return store.Item{}, classify("read", err, 0)
	}
	return store.Item{Body: resp.Value, ETag: string(resp.ETag), ServerTime: dateOf(resp.RawResponse),
		Charge: float64(resp.RequestCharge), Session: sessionOf(resp)}, nil
}

func (s *Store) Create(ctx context.Context, pk string, body []byte) (store.Item, error) {
	resp, err := s.container.CreateItem(ctx, azcosmos.NewPartitionKeyString(pk), body, nil)
	if err != nil {
		if KindOf(err) == store.NotFound {
			// A create cannot miss a document: the container (or its database) is gone.
			e := classify("create", err, 0).(*store.Error)
			e.Err = s.missing(ctx, "")
			return store.Item{}, e
		}
		return store.Item{}, classify("create", err, 0)
	}
	return store.Item{ETag: string(resp.ETag), ServerTime: dateOf(resp.RawResponse), Charge: float64(resp.RequestCharge),
		Session: sessionOf(resp)}, nil
}

func (s *Store) Replace(ctx context.Context, pk, id string, body []byte, etag string) (store.Item, error) {
	if etag == "" {
		// An empty If-Match would be no condition at all.
		return store.Item{}, &store.Error{Op: "replace", Kind: store.Invalid, Err: errors.New("no ETag to replace on")}
	}
	tag := azcore.ETag(etag)
	resp, err := s.container.ReplaceItem(ctx, azcosmos.NewPartitionKeyString(pk), id, body, &azcosmos.ItemOptions{IfMatchEtag: &tag})
	if err != nil {
		return store.Item{}, classify("replace", err, 0)
	}
	return store.Item{ETag: string(resp.ETag), ServerTime: dateOf(resp.RawResponse), Charge: float64(resp.RequestCharge),
		Session: sessionOf(resp)}, nil
}

func sessionOf(resp azcosmos.ItemResponse) string {
	if resp.SessionToken == nil {
		return ""
	}
	return *resp.SessionToken
}

func (s *Store) List(ctx context.Context, prefix string) ([]store.Item, float64, error) {
	pager := s.container.NewQueryItemsPager("SELECT * FROM c WHERE STARTSWITH(c.id, @prefix)", azcosmos.NewPartitionKey(),
		&azcosmos.QueryOptions{QueryParameters: []azcosmos.QueryParameter{{Name: "@prefix", Value: prefix}}})
	var items []store.Item
	var charge float64
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, charge, classify("list", err, charge)
		}
		charge += float64(page.RequestCharge)
		for _, body := range page.Items {
			items = append(items, store.Item{Body: body, ETag: store.ETagOf(body), ServerTime: dateOf(page.RawResponse)})
		}
	}
	return items, charge, nil
}

func (s *Store) Recent(ctx context.Context, pk, prefix string, limit int, session string) ([]store.Item, float64, error) {
	opts := &azcosmos.QueryOptions{PageSizeHint: int32(min(limit, 1000)),
		QueryParameters: []azcosmos.QueryParameter{{Name: "@limit", Value: limit}, {Name: "@type", Value: store.TypeRun},
			{Name: "@prefix", Value: prefix}}}
	if session != "" {
		opts.SessionToken = &session
	}
	pager := s.container.NewQueryItemsPager(store.RecentQuery, azcosmos.NewPartitionKeyString(pk), opts)
	var items []store.Item
	var charge float64
	for pager.More() && len(items) < limit {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, charge, classify("query", err, charge)
		}
		charge += float64(page.RequestCharge)
		for _, body := range page.Items {
			items = append(items, store.Item{Body: body, ETag: store.ETagOf(body), ServerTime: dateOf(page.RawResponse)})
		}
	}
	return items[:min(len(items), limit)], charge, nil
}

// Regions are the account's regions as its properties list them: the write region first, then the other
// readable regions in the order the account gives (Azure's SDKs treat it as the failover order). Empty until
// the SDK has read the account (Check makes it).
func (s *Store) Regions() []string { return s.account.regionList() }

// Check reads the container (which makes the SDK read the account first) and explains each way it can be
// unusable.
func (s *Store) Check(ctx context.Context, partitionKeyPath string, allowMultiWrite bool) error {
	resp, err := s.container.Read(ctx, nil)
	if err != nil {
		switch KindOf(err) {
		case store.NotFound:
			return s.missing(ctx, partitionKeyPath)
		case store.Unauthorized:
			return errors.New("the account rejected our credentials (401): check the AccountKey in the connection string, or run 'az login' for DefaultAzureCredential")
		case store.Forbidden:
			return errors.New("the identity may not use this container (403): assign it the 'Cosmos DB Built-in Data Contributor' role (00000000-0000-0000-0000-000000000002) on the account, or use a connection string for development")
		}
		return classify("check", err, 0)
	}
	if p := resp.ContainerProperties; p != nil {
		paths := p.PartitionKeyDefinition.Paths
		if len(paths) != 1 || paths[0] != partitionKeyPath {
			return fmt.Errorf("container %q is partitioned on %s, but the lease documents need %s: set the partition key path to %s, or use a container partitioned on %s",
				s.cfg.Container, strings.Join(paths, ","), partitionKeyPath, strings.Join(paths, ","), partitionKeyPath)
		}
		if ttl := p.DefaultTimeToLive; ttl != nil && *ttl > 0 {
			return fmt.Errorf("container %q expires items after %d s (default time-to-live), which would delete lease documents and reset their epoch: set its default time-to-live to off, or to -1 (on only for items that carry a ttl)",
				s.cfg.Container, *ttl)
		}
	}
	if multi, seen := s.account.multiWrite(); !seen {
		return errors.New("the SDK did not read the account properties, so cannot tell whether the account has multiple write regions")
	} else if multi && !allowMultiWrite {
		return errors.New("the account accepts writes in multiple regions: an ETag check in one region does not stop a write in another, so two instances could both hold the lease. Use an account with a single write region, or allow it explicitly if you accept that risk")
	}
	return nil
}

// Exists reads the container. A 404 is explained with the words a create's 404 gets.
func (s *Store) Exists(ctx context.Context, op string) error {
	if _, err := s.container.Read(ctx, nil); err != nil {
		e := classify(op, err, 0).(*store.Error)
		if e.Kind == store.NotFound {
			e.Err = s.missing(ctx, "")
		}
		return e
	}
	return nil
}

// missing explains a container that does not exist, or whose database does not.
func (s *Store) missing(ctx context.Context, partitionKeyPath string) error {
	if _, dbErr := s.db.Read(ctx, nil); dbErr != nil && KindOf(dbErr) == store.NotFound {
		return fmt.Errorf("database %q does not exist in the account: create it (cosmoslease setup does), or set DatabaseName to an existing one", s.cfg.Database)
	}
	pk := ""
	if partitionKeyPath != "" {
		pk = " with partition key " + partitionKeyPath
	}
	return fmt.Errorf("container %q does not exist in database %q: create it%s (cosmoslease setup does), or set ContainerName to an existing one", s.cfg.Container, s.cfg.Database, pk)
}

// KindOf classifies an SDK error.
func KindOf(err error) store.Kind {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return store.KindForStatus(re.StatusCode)
	}
	return store.Unknown
}

func classify(op string, err error, charge float64) error {
	e := &store.Error{Op: op, Kind: store.Unknown, Err: err, Charge: charge}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		e.Status = re.StatusCode
		e.Kind = store.KindForStatus(re.StatusCode)
		e.Err = errors.New(re.ErrorCode)
		if re.RawResponse != nil {
			h := re.RawResponse.Header
			if re.StatusCode == http.StatusNotFound && h.Get("x-ms-substatus") == "1002" {
				// ReadSessionNotAvailable: the replica has not caught up with our session token yet. The document
				// is not missing; the outcome is unknown, and a retry goes to a replica that has.
				e.Kind = store.Unknown
			}
			if ms, perr := strconv.ParseFloat(h.Get("x-ms-retry-after-ms"), 64); perr == nil {
				e.RetryAfter = time.Duration(ms * float64(time.Millisecond))
			} else if s, perr := strconv.Atoi(h.Get("Retry-After")); perr == nil {
				e.RetryAfter = time.Duration(s) * time.Second
			}
			if c, perr := strconv.ParseFloat(h.Get("x-ms-request-charge"), 64); perr == nil {
				e.Charge += c
			}
		}
	}
	return e
}

func dateOf(resp *http.Response) time.Time {
	if resp == nil {
		return time.Time{}
	}
	t, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return time.Time{}
	}
	return t
}

// accountWatch is the HTTP transport under the SDK. It notes the account properties when the SDK reads them
// (GET on the account root), so Check can refuse accounts with several write regions.
type accountWatch struct {
	next policy.Transporter

	mu      sync.Mutex
	seen    bool
	multi   bool
	regions []string
}

func (a *accountWatch) Do(req *http.Request) (*http.Response, error) {
	resp, err := a.next.Do(req)
	if err != nil || req.Method != http.MethodGet || (req.URL.Path != "/" && req.URL.Path != "") || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr != nil {
		return resp, nil
	}
	type location struct {
		Name string `json:"name"`
	}
	var acct struct {
		EnableMultipleWriteLocations bool       `json:"enableMultipleWriteLocations"`
		WritableLocations            []location `json:"writableLocations"`
		ReadableLocations            []location `json:"readableLocations"`
	}
	if json.Unmarshal(body, &acct) == nil {
		var regions []string
		for _, l := range append(acct.WritableLocations, acct.ReadableLocations...) {
			if l.Name != "" && !slices.Contains(regions, l.Name) {
				regions = append(regions, l.Name)
			}
		}
		a.mu.Lock()
		a.seen = true
		a.multi = acct.EnableMultipleWriteLocations
		a.regions = regions
		a.mu.Unlock()
	}
	return resp, nil
}

func (a *accountWatch) regionList() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.regions)
}

func (a *accountWatch) multiWrite() (multi, seen bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.multi, a.seen
}
