package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cosmoslease/cosmoslease/internal/az"
)

// After deploy uploads a region's package, it asks the app's LeaseStatus function (functions/LeaseStatus, auth
// level function) whether the lease handler runs there and reaches Cosmos DB: GET https://HOST/api/LeaseStatus
// with the function's key in the x-functions-key header. The key comes from az and is never printed, logged or
// put in a URL.

// leaseStatusFunction is the HTTP function deploy calls.
const leaseStatusFunction = "LeaseStatus"

func functionKeyArgs(t target, app app) []string {
	return append([]string{"functionapp", "function", "keys", "list", "--resource-group", t.group, "--name", app.name,
		"--function-name", leaseStatusFunction}, append(t.subscriptionArgs(), "--output", "json")...)
}

// hostNameArgs reads an app's host name when the deployment's outputs lack it (a deployment made by an older
// setup). az functionapp show also fetches the publishing profile, which needs
// Microsoft.Web/sites/publishxml/action; functionAppHostNames spares that.
func hostNameArgs(t target, app app) []string {
	return append([]string{"functionapp", "show", "--resource-group", t.group, "--name", app.name},
		append(t.subscriptionArgs(), "--query", "defaultHostName", "--output", "json")...)
}

// leaseStatus is the part of LeaseStatus's answer deploy shows (pkg/leasehandler: statusBody, its top level the
// first job that can run, its recentRuns newest first; jobs every job). Fields it does not know are ignored.
type leaseStatus struct {
	Lease      string `json:"lease"`
	State      string `json:"state"`
	Owner      string `json:"owner"`
	Region     string `json:"region"`
	Epoch      int64  `json:"epoch"`
	RecentRuns []struct {
		Occurrence time.Time `json:"occurrence"`
		Region     string    `json:"region"`
		Status     string    `json:"status"`
	} `json:"recentRuns"`
	Jobs []struct {
		Name  string `json:"name"`
		Error string `json:"error"`
	} `json:"jobs"`
}

// summary is one line: the lease, its state and holder, the newest run.
func (s leaseStatus) summary() string {
	out := "no job can run"
	if s.Lease != "" {
		out = s.leaseSummary()
	}
	for _, j := range s.Jobs {
		if j.Error != "" {
			out += fmt.Sprintf("; job %s cannot run: %s", j.Name, j.Error)
		}
	}
	return out
}

// leaseSummary is the first job's lease, its state and holder, its newest run.
func (s leaseStatus) leaseSummary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lease %s %s", s.Lease, s.State)
	if s.Region != "" && (s.State == "held" || s.State == "expired") {
		if s.State == "expired" {
			b.WriteString(", last held")
		}
		fmt.Fprintf(&b, " by %s", s.Region)
		if s.Owner != "" {
			fmt.Fprintf(&b, " (%s)", s.Owner)
		}
	}
	if s.Epoch > 0 {
		fmt.Fprintf(&b, ", epoch %d", s.Epoch)
	}
	newest := -1
	for i, r := range s.RecentRuns {
		if newest < 0 || r.Occurrence.After(s.RecentRuns[newest].Occurrence) {
			newest = i
		}
	}
	if newest < 0 {
		b.WriteString("; no run yet")
	} else {
		r := s.RecentRuns[newest]
		fmt.Fprintf(&b, "; newest run %s in %s: %s", r.Occurrence.UTC().Format(time.RFC3339), r.Region, r.Status)
	}
	return b.String()
}

// verifyRegion calls app's LeaseStatus until it answers, waiting up to verifyWait in all between attempts: just
// after a deployment the function key, the functions or the app's Cosmos DB data role may not be there yet.
func (a *App) verifyRegion(ctx context.Context, t target, app app, step string) (string, error) {
	// Each attempt is bounded by az's and the HTTP client's timeouts; this bounds them all.
	vctx, cancel := context.WithTimeout(ctx, verifyWait+2*time.Minute)
	defer cancel()
	host, key := app.host, ""
	var waited time.Duration
	delay := 10 * time.Second
	for {
		summary, err := a.askLeaseStatus(vctx, t, app, &host, &key)
		if err == nil {
			return summary, nil
		}
		if errors.Is(err, az.ErrNotLoggedIn) || errors.Is(err, az.ErrNotInstalled) || ctx.Err() != nil {
			return "", err
		}
		if waited >= verifyWait || vctx.Err() != nil {
			return "", fmt.Errorf("LeaseStatus did not answer within %s: %v", verifyWait, err)
		}
		delay = min(delay, verifyWait-waited)
		fmt.Fprintf(a.Stderr, "%s: %s: waiting for LeaseStatus to answer (%v); trying again in %s\n", step, app.name, err, delay)
		if err := a.sleep(vctx, delay); err != nil {
			if ctx.Err() != nil {
				return "", err
			}
			return "", fmt.Errorf("LeaseStatus did not answer within %s", verifyWait)
		}
		waited += delay
		delay = min(2*delay, 30*time.Second)
	}
}

// askLeaseStatus makes one attempt; host and key keep what earlier attempts learnt. It returns the summary.
func (a *App) askLeaseStatus(ctx context.Context, t target, app app, host, key *string) (string, error) {
	azMessage := func(err error) error {
		var azErr *az.Error
		if errors.As(err, &azErr) {
			return errors.New(azErr.Message)
		}
		return err
	}
	if *host == "" {
		out, err := a.Az.Run(ctx, hostNameArgs(t, app)...)
		if err != nil {
			return "", fmt.Errorf("cannot read the app's host name: %w", azMessage(err))
		}
		if json.Unmarshal(out, host) != nil || *host == "" {
			return "", errors.New("az functionapp show gave no defaultHostName")
		}
	}
	if *key == "" {
		out, err := a.Az.Run(ctx, functionKeyArgs(t, app)...)
		if err != nil {
			return "", fmt.Errorf("cannot read the key of %s: %w", leaseStatusFunction, azMessage(err))
		}
		// {"default": "…"}; some versions of az wrap the keys in "properties". Never echo this output.
		var keys struct {
			Default    string `json:"default"`
			Properties struct {
				Default string `json:"default"`
			} `json:"properties"`
		}
		if json.Unmarshal(out, &keys) != nil {
			return "", fmt.Errorf("az functionapp function keys list: unexpected output")
		}
		*key = orDefault(keys.Default, keys.Properties.Default)
		if *key == "" {
			return "", fmt.Errorf("%s has no default key yet", leaseStatusFunction)
		}
	}
	base := "https://" + *host
	if a.leaseStatusURL != nil {
		base = a.leaseStatusURL(*host)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/"+leaseStatusFunction, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("x-functions-key", *key)
	client := a.httpClient
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		*key = "" // read it again: it may have been rotated
		return "", fmt.Errorf("HTTP %d: the function key is not accepted (yet)", resp.StatusCode)
	case http.StatusNotFound:
		return "", fmt.Errorf("HTTP 404: the app has not loaded its functions yet")
	case http.StatusInternalServerError:
		return "", fmt.Errorf("HTTP 500: the handler could not read the lease (the app's Cosmos DB data role may not be in effect yet; the app's logs in Application Insights say why)")
	default:
		return "", fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var s leaseStatus
	if err := json.Unmarshal(body, &s); err != nil || (s.Lease == "" || s.State == "") && len(s.Jobs) == 0 {
		return "", errors.New("the answer is not LeaseStatus's JSON (lease, state, recentRuns)")
	}
	return s.summary(), nil
}
