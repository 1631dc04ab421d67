package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/cosmoslease/cosmoslease/internal/az"
)

// The read-only checks setup makes before it creates anything: each turns a failure that Azure would report
// minutes into a deployment into one message before it starts.

// flexRegions lists the regions that offer Flex Consumption, the plan of every Function App.
func (a *App) flexRegions(ctx context.Context, subscription string) (map[string]bool, error) {
	out, err := a.Az.Run(ctx, "functionapp", "list-flexconsumption-locations", "--subscription", subscription, "--output", "json")
	if err != nil {
		var azErr *az.Error
		if errors.As(err, &azErr) {
			return nil, fmt.Errorf("cannot list the regions that offer Flex Consumption (%s): update the Azure CLI ('az upgrade'), or deploy Cosmos DB only with --no-functions", azErr.Message)
		}
		return nil, err
	}
	var list []struct{ Name string }
	if err := json.Unmarshal(out, &list); err != nil || len(list) == 0 {
		return nil, fmt.Errorf("az functionapp list-flexconsumption-locations: unexpected output")
	}
	regions := map[string]bool{}
	for _, r := range list {
		regions[strings.ToLower(r.Name)] = true
	}
	return regions, nil
}

// strongLimitKm is the distance beyond which Azure blocks Strong consistency between two regions of an account
// ("5000 miles (8000 kilometers)", unless support lifts the limit for the subscription).
const strongLimitKm = 8000

// place is a region of the subscription as az account list-locations describes it.
type place struct {
	lat, lon float64
	// recommended: a physical region in Azure's "Recommended" category (not a canary or a restricted region).
	recommended bool
}

// places reads the subscription's regions that have coordinates, once.
func (a *App) places(ctx context.Context, p *plan) (map[string]place, error) {
	if p.places != nil {
		return p.places, nil
	}
	out, err := a.Az.Run(ctx, "account", "list-locations", "--subscription", p.subscription, "--output", "json")
	if err != nil {
		return nil, err
	}
	var list []struct {
		Name     string
		Metadata struct{ Latitude, Longitude, RegionType, RegionCategory string }
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("az account list-locations: unexpected output: %v", err)
	}
	at := map[string]place{}
	for _, l := range list {
		lat, err1 := strconv.ParseFloat(l.Metadata.Latitude, 64)
		lon, err2 := strconv.ParseFloat(l.Metadata.Longitude, 64)
		if err1 == nil && err2 == nil {
			at[l.Name] = place{lat: lat, lon: lon, recommended: l.Metadata.RegionType == "Physical" && l.Metadata.RegionCategory == "Recommended"}
		}
	}
	p.places = at
	return at, nil
}

func distanceKm(x, y place) float64 { return greatCircleKm(x.lat, x.lon, y.lat, y.lon) }

// farPairs names the pairs of regions farther apart than Azure allows Strong consistency by default.
func farPairs(at map[string]place, regions []string) []string {
	var far []string
	for i := range regions {
		for j := i + 1; j < len(regions); j++ {
			if d := distanceKm(at[regions[i]], at[regions[j]]); d > strongLimitKm {
				far = append(far, fmt.Sprintf("%s and %s (about %s km)", regions[i], regions[j], thousands(int(math.Round(d/100)*100))))
			}
		}
	}
	return far
}

// strongBlocked names the pairs of the plan's regions farther apart than Azure allows Strong consistency by
// default, measuring great-circle distances between the coordinates az reports for each region.
func (a *App) strongBlocked(ctx context.Context, p *plan) ([]string, error) {
	at, err := a.places(ctx, p)
	if err != nil {
		return nil, err
	}
	regions := p.allRegions()
	for _, r := range regions {
		if _, ok := at[r]; !ok {
			return nil, usagef("region %s is not one Azure lists with a location for subscription %s ('az account list-locations -o table')", r, p.subscriptionName)
		}
	}
	return farPairs(at, regions), nil
}

// chooseWitness gives Strong consistency with exactly two regions a third Cosmos DB region, a read region with
// no Function App, last in failover priority. With Strong, Cosmos DB needs a majority of the account's regions
// to accept a write; with two regions, losing either stops every write, so no region could renew or take a
// lease until it returns ("Resiliency recommendations for Azure Cosmos DB for NoSQL": Strong needs at least
// three regions to keep writes available through one region's failure). flag is --witness-region: a region,
// "none", or "" for the nearest region Azure recommends that keeps every pair within Strong's distance limit
// (nearest: the smallest of the larger of its distances to the two, then the smallest sum).
func (a *App) chooseWitness(ctx context.Context, p *plan, flag string) error {
	if p.consistency != "Strong" || len(p.regions) != 1 {
		if flag != "" && flag != "none" {
			return usagef("--witness-region %s: a witness region is for Strong consistency with exactly two regions; this plan has %s consistency and %d region(s): drop --witness-region",
				flag, p.consistency, len(p.allRegions()))
		}
		return nil
	}
	pair := p.allRegions()
	if flag == "none" {
		fmt.Fprintf(a.Stderr, "warning: no witness region (--witness-region none): with Strong consistency and two regions, Cosmos DB stops accepting writes while either region is down, "+
			"so no region can renew or take the lease until it returns. A third region keeps writes available (docs/provisioning.md).\n")
		return nil
	}
	at, err := a.places(ctx, p)
	if err != nil {
		return err
	}
	if flag != "" {
		switch {
		case slices.Contains(pair, flag):
			return usagef("--witness-region %s is already one of the regions (%s): choose a third region, or none", flag, strings.Join(pair, ", "))
		case at[flag] == (place{}):
			return usagef("--witness-region %s: not a region Azure lists with a location for subscription %s ('az account list-locations -o table')", flag, p.subscriptionName)
		}
		if far := farPairs(at, append(slices.Clone(pair), flag)); len(far) > 0 {
			return usagef("--witness-region %s: Azure blocks Strong consistency across regions more than 8,000 km (5,000 miles) apart: %s. Choose a region nearer both %s and %s",
				flag, strings.Join(far, ", "), pair[0], pair[1])
		}
		p.witness = []string{flag}
		return nil
	}
	best, bestMax, bestSum := "", math.Inf(1), math.Inf(1)
	for name, pl := range at {
		if !pl.recommended || slices.Contains(pair, name) {
			continue
		}
		d0, d1 := distanceKm(pl, at[pair[0]]), distanceKm(pl, at[pair[1]])
		far, sum := max(d0, d1), d0+d1
		if far > strongLimitKm {
			continue
		}
		if far < bestMax || far == bestMax && (sum < bestSum || sum == bestSum && name < best) {
			best, bestMax, bestSum = name, far, sum
		}
	}
	if best == "" {
		fmt.Fprintf(a.Stderr, "warning: no region Azure recommends lies within 8,000 km of both %s and %s to be a witness region: with Strong consistency and two regions, "+
			"Cosmos DB stops accepting writes while either region is down. Pass --witness-region REGION, or choose a third region with --regions.\n", pair[0], pair[1])
		return nil
	}
	p.witness = []string{best}
	return nil
}

// chooseConsistency settles the account's default consistency. A lease needs Strong to stay exclusive across a
// regional failover (a Session failover can lose the last writes and give two holders), and its few small
// writes barely feel Strong's cross-region latency, so with several regions Strong is the default wherever Azure
// allows it. An explicit Strong across regions Azure blocks is refused; a weaker level with several regions is
// accepted with a warning.
func (a *App) chooseConsistency(ctx context.Context, p *plan) error {
	if len(p.regions) == 0 {
		if p.consistency == "" {
			p.consistency = "Session" // one region: no regional failover to survive
		}
		return nil
	}
	if p.consistency != "" && p.consistency != "Strong" {
		fmt.Fprintf(a.Stderr, "warning: with %s consistency a regional failover can lose the last writes, and then two instances may both hold a lease for a while; Strong prevents that (docs/reliability.md)\n", p.consistency)
		return nil
	}
	far, err := a.strongBlocked(ctx, p)
	if err != nil {
		return err
	}
	switch {
	case len(far) == 0:
		p.consistency = "Strong"
	case p.consistency == "Strong":
		return usagef("Azure blocks Strong consistency across regions more than 8,000 km (5,000 miles) apart unless its support lifts the limit for the subscription: %s. "+
			"Choose closer regions, or --consistency BoundedStaleness or Session (docs/provisioning.md)", strings.Join(far, ", "))
	case p.witnessAsked:
		return usagef("--witness-region: Azure blocks Strong consistency for %s, so the account would use Session, which needs no witness region: choose regions within 8,000 km of each other, or drop --witness-region",
			strings.Join(far, ", "))
	default:
		p.consistency = "Session"
		fmt.Fprintf(a.Stderr, "warning: Azure blocks Strong consistency for %s, so the account uses Session: a regional failover can then lose the last writes, and two instances may both hold a lease for a while (docs/reliability.md). Choose regions within 8,000 km of each other for Strong, or pass --consistency Session to accept this.\n", strings.Join(far, ", "))
	}
	return nil
}

// greatCircleKm is the haversine distance on a sphere of the Earth's mean radius.
func greatCircleKm(lat1, lon1, lat2, lon2 float64) float64 {
	rad := math.Pi / 180
	dLat, dLon := (lat2-lat1)*rad, (lon2-lon1)*rad
	h := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * 6371 * math.Asin(math.Sqrt(h))
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// assigningRoles are the built-in roles that may create role assignments (Microsoft.Authorization/
// roleAssignments/write), by role definition id.
var assigningRoles = map[string]string{
	"8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
	"18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
	"f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
}

// cannotAssignRoles are the built-in roles most often held that may not create role assignments. A role outside
// both lists may be a custom role that can: then Azure's validation of the deployment decides.
var cannotAssignRoles = map[string]string{
	"b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
	"acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
}

// identity is whoever az is signed in as.
type identity struct {
	// who names it for people: a user's name, or "service principal <application id>".
	who string
	// objectID is its object id in Microsoft Entra ID; "" when it could not be told.
	objectID         string
	servicePrincipal bool
}

// signedIn tells who az is signed in as. The object id is the oid claim of an access token for Azure Resource
// Manager (az account get-access-token; azure-cli profile/custom.py get_access_token prints accessToken,
// expiresOn, expires_on, subscription, tenant and tokenType), which needs no Microsoft Graph permission: a
// service principal usually cannot read Graph, and then az role assignment list --assignee APPID takes the
// application id for an object id and finds nothing (azure-cli role/custom.py _resolve_object_id_and_type,
// fallback_to_object_id). A user whose token cannot be read is looked up in Graph (az ad signed-in-user show).
// The token is never printed or kept.
func (a *App) signedIn(ctx context.Context, subscription, name, typ string) (identity, error) {
	me := identity{who: name, servicePrincipal: typ == "servicePrincipal"}
	if me.servicePrincipal {
		me.who = "service principal " + name
	}
	out, err := a.Az.Run(ctx, "account", "get-access-token", "--subscription", subscription, "--output", "json")
	if errors.Is(err, az.ErrNotLoggedIn) {
		return me, err
	}
	if err == nil {
		me.objectID = tokenObjectID(out)
	}
	if me.objectID == "" && !me.servicePrincipal {
		var user struct {
			ID                string `json:"id"`
			UserPrincipalName string `json:"userPrincipalName"`
		}
		if out, err := a.Az.Run(ctx, "ad", "signed-in-user", "show", "--output", "json"); err == nil && json.Unmarshal(out, &user) == nil {
			me.objectID, me.who = user.ID, orDefault(user.UserPrincipalName, me.who)
		}
	}
	return me, nil
}

// tokenObjectID reads the oid claim from az account get-access-token's output; "" when it cannot.
func tokenObjectID(out []byte) string {
	var tok struct {
		AccessToken string `json:"accessToken"`
	}
	if json.Unmarshal(out, &tok) != nil {
		return ""
	}
	parts := strings.Split(tok.AccessToken, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var claims struct {
		OID string `json:"oid"`
	}
	if json.Unmarshal(payload, &claims) != nil || !guid.MatchString(claims.OID) {
		return ""
	}
	return strings.ToLower(claims.OID)
}

var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// checkRoleRights makes sure the signed-in identity holds a role that may create role assignments on the
// resource group, directly or through a group, at the group, the subscription or a management group: main.bicep
// gives each Function App's identity roles on its storage and its Application Insights.
func (a *App) checkRoleRights(ctx context.Context, p *plan, me identity) error {
	who, assignee := me.who, me.objectID
	if assignee == "" {
		fmt.Fprintf(a.Stderr, "note: cannot tell who is signed in, so the right to create role assignments is not checked here; Azure checks it when it validates the deployment.\n")
		return nil
	}
	out, err := a.Az.Run(ctx, "role", "assignment", "list", "--all", "--assignee", assignee, "--include-groups",
		"--subscription", p.subscription, "--output", "json")
	var list []struct{ RoleDefinitionID, RoleDefinitionName, Scope string }
	if err == nil {
		err = json.Unmarshal(out, &list)
	}
	if errors.Is(err, az.ErrNotLoggedIn) {
		return err
	}
	if err != nil {
		fmt.Fprintf(a.Stderr, "note: could not list the role assignments of %s (%v); Azure checks the right to create role assignments when it validates the deployment.\n", who, err)
		return nil
	}
	if len(list) == 0 && me.servicePrincipal {
		// A service principal may hold roles it cannot list (or list only through groups az cannot resolve).
		fmt.Fprintf(a.Stderr, "note: no role assignment of %s (object id %s) is visible on subscription %s; it may not be allowed to read them. "+
			"Azure's validation of the deployment decides whether it may create role assignments.\n", who, assignee, p.subscriptionName)
		return nil
	}
	sub := "/subscriptions/" + p.subscription
	group := sub + "/resourceGroups/" + p.group
	covers := func(scope string) bool {
		s := strings.ToLower(strings.TrimRight(scope, "/"))
		return s == "" || strings.HasPrefix(s, "/providers/microsoft.management/managementgroups/") ||
			s == strings.ToLower(sub) || s == strings.ToLower(group)
	}
	var held, unknown []string
	for _, r := range list {
		if !covers(r.Scope) {
			continue
		}
		id := strings.ToLower(path.Base(r.RoleDefinitionID))
		if _, ok := assigningRoles[id]; ok {
			return nil
		}
		if _, ok := cannotAssignRoles[id]; !ok {
			unknown = append(unknown, r.RoleDefinitionName)
		}
		held = append(held, r.RoleDefinitionName)
	}
	sort.Strings(held)
	if len(unknown) > 0 {
		sort.Strings(unknown)
		fmt.Fprintf(a.Stderr, "note: %s holds none of Owner, User Access Administrator or Role Based Access Control Administrator on resource group %s, "+
			"but holds %s, which may allow creating role assignments; Azure's validation of the deployment will tell.\n", who, p.group, strings.Join(unknown, ", "))
		return nil
	}
	have := "no role there"
	if len(held) > 0 {
		have = "only " + strings.Join(held, ", ")
	}
	return fmt.Errorf("%s holds none of Owner, User Access Administrator or Role Based Access Control Administrator on resource group %s or above (%s), "+
		"and the template creates role assignments: each Function App's access to its storage and Application Insights. "+
		"Ask an owner of the subscription to grant one (an eligible PIM assignment counts once activated), for example: "+
		"az role assignment create --assignee %s --role \"Role Based Access Control Administrator\" --scope %s — or deploy Cosmos DB only with --no-functions",
		who, p.group, have, assignee, group)
}
